"""The README's troubleshooting table, row by row: each bad input gets one clear error naming the problem and the fix,
raised before any expensive work. The ids here are the table's first column; `test_readme_table_matches` keeps them in step."""
import json, os, re, shutil, subprocess, sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

import tpv.tasks
from tpv.arithmetic import add_tasks, combine, search_lambda
from tpv.evaluation import evaluate
from tpv.store import RunStore, StoreWarning
from tpv.reproduce import check_parameters, notebooks_dir, reproduce, rerun
from tpv.profiles import check_profile, get_profile
from tpv.initialization import Sources, few_shot_run, init_prompt
from tpv.io import cache_dir
from tpv.models import load_lm
from tpv.prompts import SoftPrompt, check_fits, load_prompt, make_origins, save_prompt
from tpv.tasks import Task, check_frame, few_shot, get_task
from tpv.engine import ReadSpec, encode
from tpv.tuning import TuneConfig, tune
from tpv.vectors import TaskPromptVector, cosine, load_vector, save_vector, similarity_matrix

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def lm(): return load_lm("tiny-llama")


@pytest.fixture(scope="module")
def parts(lm):
    o0, o1 = make_origins(lm, n=2, n_tokens=4)
    tuned = SoftPrompt(o0.tensor + 0.1, lm.name, lm.kind, "tuned", {"origin": "origin_0", "init_hash": o0.hash})
    return o0, o1, tuned, TaskPromptVector.from_prompts(tuned, o0, ["rt_polarity"])


def other_model(v: TaskPromptVector, name="other-model"):
    return TaskPromptVector(v.tensor.clone(), v.tasks, name, v.kind, v.origin, v.origin_hash)


def adapter(tmp, prompt, lm, mutate=None):
    d = save_prompt(prompt, tmp/"adapter", lm)
    if mutate: mutate(d)
    return d


def rows(n): return tpv.tasks.load_split("rt_polarity", "train").head(n)


def user_dir(tmp, name):
    "A folder of someone's own work."
    d = tmp/"mine"; d.mkdir(exist_ok=True); (d/name).write_text("years of work")
    return d


def user_file(tmp):
    f = tmp/"results.csv"; f.write_text("a,b\n1,2\n")
    return f


def damaged_vector(tmp, v, which):
    d = save_vector(v, tmp/"vec")
    f = d/which
    f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2])
    return d


def record_with(tmp, manifest):
    d = tmp/"store"/"eval"/"m_rt_polarity-0123456789ab"; d.mkdir(parents=True)
    (d/"manifest.json").write_text(manifest)
    return d


def with_env(name, value, fn):
    old = os.environ.get(name); os.environ[name] = value
    try: return fn()
    finally:
        if old is None: del os.environ[name]
        else: os.environ[name] = old


def read_only_store(tmp):
    s = RunStore(tmp/"ro"); s.writable = False  # as a store on a read-only mount is seen (tests/test_faults.py runs a real one)
    return s


def damaged_record(tmp, what):
    "A store record damaged by hand, then asked for: it is set aside (with a warning) and recomputed."
    s = RunStore(tmp/"s")
    o = SoftPrompt(torch.zeros(2, 4), "m")
    key = {"model": "m", "origin": "origin_0"}
    r = s.put("origin", key, {"hash": o.hash}, o)
    if what == "manifest": (r.path/"manifest.json").write_text('{"kind": "ori')
    else: shutil.rmtree(r.path/"prompt")
    got = s.cached("origin", key, lambda: ({"hash": o.hash}, o))
    assert got.prompt.hash == o.hash and not got.cached  # recomputed
    assert len(list((tmp/"s"/".corrupt").glob("*/*"))) == 1  # the damaged copy, kept aside


def tune_from_planted_checkpoint(lm, p, tmp):
    "Tune with a pickle planted at the checkpoint path: reading it the old way (weights_only=False) ran its code, which creates `pwned`."
    marker = tmp/"pwned"
    class Evil:
        def __reduce__(self): return (exec, (f"open({str(marker)!r}, 'w')",))
    f = tmp/"planted.ckpt"; torch.save({"ident": Evil()}, f)
    try: tune(lm, 'rt_polarity', p[0], TuneConfig(max_steps=1), train=rows(8), validation=rows(8), progress=False, checkpoint=f)
    finally: assert not marker.exists() and f.exists()  # no code ran, and the file is left where it was


def store_with(tmp, damage):
    "A record of a shared store damaged on purpose, then asked for: set aside with a warning, never served."
    s = RunStore(tmp/"s"); a, b = {"model": "m", "task": "A"}, {"model": "m", "task": "B"}
    s.put("eval", a, {"accuracy": 0.1}); s.put("eval", b, {"accuracy": 0.9})
    o = SoftPrompt(torch.ones(2, 4), "m"); ok = {"model": "m", "origin": "origin_0"}; s.put("origin", ok, {"hash": o.hash}, o)
    if damage == "other-key": shutil.copy(s.path("eval", b)/"manifest.json", s.path("eval", a)/"manifest.json")
    if damage == "wrong-type": (s.path("eval", a)/"manifest.json").write_text('{"kind": "eval", "key": [1], "result": "x"}')
    if damage == "edited": save_prompt(SoftPrompt(o.tensor * 2, "m"), s.path("origin", ok)/"prompt", overwrite=True)
    assert (s.get("origin", ok) if damage == "edited" else s.get("eval", a)) is None


def users_vector_folder(tmp):
    "A folder of the user's own that holds files named like a saved vector's (vector.json, README.md)."
    user_dir(tmp, "vector.json")
    return user_dir(tmp, "README.md")


def linked_store(tmp):
    s = RunStore(tmp/"s"); (tmp/"elsewhere").mkdir(); os.symlink(tmp/"elsewhere", s.root/"eval")
    return s


def marked_out(tmp, readme):
    "An output folder an earlier `tpv reproduce` wrote, where someone has since put a README of their own."
    d = tmp/"figs"; d.mkdir(); (d/".tpv-reproduce").write_text("tpv"); (d/"README.md").write_text(readme)
    return d


def inconsistent_adapter(tmp, prompt, lm, field, value):
    def edit(d):
        f = d/"adapter_config.json"; f.write_text(json.dumps({**json.loads(f.read_text()), field: value}))
    return adapter(tmp, prompt, lm, edit)


def edited_adapter(tmp, prompt, lm):
    def edit(d):
        from safetensors import safe_open
        from safetensors.torch import save_file
        w = d/"adapter_model.safetensors"
        with safe_open(str(w), "pt") as f: md = f.metadata()
        save_file({"prompt_embeddings": prompt.tensor + 1}, str(w), metadata=md)
    return adapter(tmp, prompt, lm, edit)


CASES = {  # id: (what is done, the exception's type, what its message must say)
    "unknown-task": (lambda lm, p, tmp: get_task("rt_polarty"), "UnknownTaskError", "did you mean 'rt_polarity'"),
    "unknown-model": (lambda lm, p, tmp: load_lm("smollm2-135m-instrct"), "ModelNotFoundError", "did you mean 'smollm2-135m-instruct'"),
    "unknown-profile": (lambda lm, p, tmp: check_profile("cpus"), "ProfileError", "did you mean 'cpu'"),
    "unknown-init": (lambda lm, p, tmp: init_prompt("tpv_summ", Sources(p[0], {"rt_polarity": p[2]})), "InitError", "use one of random"),
    "unknown-merge": (lambda lm, p, tmp: combine([p[3]], "tie"), "TpvError", "Unknown merge method 'tie'"),
    "unknown-similarity": (lambda lm, p, tmp: cosine(p[3], p[3], "avg"), "TpvError", "use 'flat' or 'mean'"),
    "prompt-other-width": (lambda lm, p, tmp: check_fits(SoftPrompt(torch.zeros(4, lm.width + 1), lm.name), lm), "PromptError", "Use a prompt made for this model"),
    "prompt-other-model": (lambda lm, p, tmp: check_fits(SoftPrompt(torch.zeros(4, lm.width), "gpt2"), lm), "PromptError", "load the matching model"),
    "vector-other-rows": (lambda lm, p, tmp: p[3] + TaskPromptVector.from_prompts(SoftPrompt(torch.ones(5, lm.width), lm.name), SoftPrompt(torch.zeros(5, lm.width), lm.name)),
                          "VectorError", "cannot be combined"),
    "vectors-other-models": (lambda lm, p, tmp: p[3] + other_model(p[3]), "VectorError", "different models"),
    "vector-to-other-model-origin": (lambda lm, p, tmp: other_model(p[3]).apply_to(p[0]), "VectorError", "the origin for"),
    "strict-origin-mismatch": (lambda lm, p, tmp: p[3].apply_to(p[1], strict=True), "VectorError", "pass strict=False for cross-origin use"),
    "tuned-not-from-origin": (lambda lm, p, tmp: TaskPromptVector.from_prompts(p[2], p[1]), "VectorError", "not from this origin"),
    "nan-prompt": (lambda lm, p, tmp: SoftPrompt(torch.full((4, lm.width), float("nan")), lm.name), "PromptError", "lower the learning rate"),
    "inf-vector": (lambda lm, p, tmp: TaskPromptVector(torch.full((4, lm.width), float("inf")), ("t",), lm.name), "VectorError", "NaN or inf"),
    "adapter-missing-config": (lambda lm, p, tmp: load_prompt(adapter(tmp, p[2], lm, lambda d: (d/"adapter_config.json").unlink())), "PromptError", "it is not a PEFT adapter"),
    "adapter-missing-weights": (lambda lm, p, tmp: load_prompt(adapter(tmp, p[2], lm, lambda d: (d/"adapter_model.safetensors").unlink())), "PromptError", "has no weights"),
    "adapter-corrupt-weights": (lambda lm, p, tmp: load_prompt(adapter(tmp, p[2], lm, lambda d: (d/"adapter_model.safetensors").write_bytes(b"\0garbage"))), "PromptError", "re-save the prompt"),
    "adapter-is-lora": (lambda lm, p, tmp: load_prompt(adapter(tmp, p[2], lm, lambda d: (d/"adapter_config.json").write_text(json.dumps({"peft_type": "LORA"})))),
                        "PromptError", "LORA adapter, not a prompt-tuning one"),
    "not-a-vector-dir": (lambda lm, p, tmp: load_vector(tmp), "VectorError", "is not a saved task prompt vector"),
    "empty-train-split": (lambda lm, p, tmp: tune(lm, "rt_polarity", p[0], TuneConfig(max_steps=1), train=tpv.tasks.load_split("rt_polarity", "train").head(0)),
                          "TpvError", "has no training examples"),
    "more-shots-than-data": (lambda lm, p, tmp: few_shot("rt_polarity", 10**7), "TpvError", "cannot draw 10000000 shots"),
    "negative-shots": (lambda lm, p, tmp: few_shot_run(lm, "rt_polarity", p[0], -1), "InitError", "shots cannot be negative"),
    "label-word-tokenises-to-nothing": (lambda lm, p, tmp: encode(lm, replace(get_task("rt_polarity"), labels=("", "positive")), tpv.tasks.load_split("rt_polarity", "train").head(4)),
                                        "TaskError", "needs at least two non-empty label words"),
    "unknown-notebook-parameter": (lambda lm, p, tmp: check_parameters(notebooks_dir()/"few_shot.ipynb", {"override": {}}), "ParameterError", "did you mean 'overrides'"),
    "unknown-profile-setting": (lambda lm, p, tmp: get_profile("cpu", {"few_shot.shot": [0, 10]}), "ProfileError", "did you mean 'few_shot.shots'"),
    "profile-setting-wrong-type": (lambda lm, p, tmp: get_profile("cpu", {"n_test": "all"}), "ProfileError", "n_test is None or int, not 'all'"),
    "origin-evaluated-without-spec": (lambda lm, p, tmp: evaluate(lm, p[0], "rt_polarity", n=4), "TpvError", "does not record how it reads inputs"),
    "unknown-merge-setting": (lambda lm, p, tmp: combine([p[3], p[3]], "ties", densty=0.3), "VectorError", "did you mean 'density'"),
    "negative-learning-rate": (lambda lm, p, tmp: TuneConfig(lr=-0.3).validate(), "ConfigError", "lr must be positive"),
    "zero-steps": (lambda lm, p, tmp: TuneConfig(max_steps=0).validate(), "ConfigError", "max_steps must be at least 1"),
    "zero-batch-size": (lambda lm, p, tmp: tune(lm, "rt_polarity", p[0], TuneConfig(batch_size=0)), "ConfigError", "batch_size must be at least 1"),
    "cache-not-writable": (lambda lm, p, tmp: (os.environ.__setitem__("TPV_CACHE", "/proc/tpv-cache"), cache_dir())[1], "CacheError", "set TPV_CACHE to a writable directory"),
    "store-not-writable": (lambda lm, p, tmp: RunStore("/proc/tpv-store"), "StoreError", "pass a writable folder"),
    "save-prompt-over-other-files": (lambda lm, p, tmp: save_prompt(p[0], user_dir(tmp, 'thesis.tex')), "OverwriteError", 'thesis.tex'),
    "save-prompt-over-a-file": (lambda lm, p, tmp: save_prompt(p[0], user_file(tmp)), "OverwriteError", 'is a file'),
    "save-vector-over-other-files": (lambda lm, p, tmp: save_vector(p[3], user_dir(tmp, 'draft.md')), "OverwriteError", 'draft.md'),
    "empty-validation-frame": (lambda lm, p, tmp: tune(lm, 'rt_polarity', p[0], TuneConfig(max_steps=1), train=rows(8), validation=rows(0), progress=False), "TpvError", 'no validation examples'),
    "zero-validation-examples": (lambda lm, p, tmp: TuneConfig(n_validation=0), "ConfigError", 'n_validation must be at least 1'),
    "negative-grad-norm": (lambda lm, p, tmp: TuneConfig(max_grad_norm=-1), "ConfigError", 'max_grad_norm must be positive'),
    "origin-zero-tokens": (lambda lm, p, tmp: make_origins(lm, 1, 0), "PromptError", 'n_tokens to be a whole number of at least 1'),
    "origin-negative-tokens": (lambda lm, p, tmp: make_origins(lm, 1, -3), "PromptError", 'not -3'),
    "origin-negative-count": (lambda lm, p, tmp: make_origins(lm, -2, 4), "PromptError", 'n to be a whole number'),
    "label-negative": (lambda lm, p, tmp: tune(lm, 'rt_polarity', p[0], TuneConfig(max_steps=1), train=rows(8).assign(label=-1), progress=False), "FrameError", 'label -1 in row 0'),
    "label-fraction": (lambda lm, p, tmp: encode(lm, 'rt_polarity', rows(4).assign(label=1.7)), "FrameError", 'label 1.7'),
    "label-strings": (lambda lm, p, tmp: encode(lm, 'rt_polarity', rows(4).assign(label='positive')), "FrameError", '0=negative, 1=positive'),
    "frame-missing-label": (lambda lm, p, tmp: encode(lm, 'rt_polarity', rows(4).drop(columns='label')), "FrameError", "lacks column(s) 'label'"),
    "frame-missing-text": (lambda lm, p, tmp: encode(lm, 'rt_polarity', rows(4).rename(columns={'sentence': 'text'})), "FrameError", "lacks column(s) 'sentence'"),
    "frame-not-a-dataframe": (lambda lm, p, tmp: encode(lm, 'rt_polarity', 'the movie was good'), "FrameError", 'must be a pandas DataFrame'),
    "text-none": (lambda lm, p, tmp: encode(lm, 'rt_polarity', rows(4).assign(sentence=None)), "FrameError", "has None in column 'sentence'"),
    "text-bytes": (lambda lm, p, tmp: encode(lm, 'rt_polarity', rows(4).assign(sentence=b'caf\xe9')), "FrameError", 'decode bytes to str'),
    "text-lone-surrogate": (lambda lm, p, tmp: encode(lm, 'rt_polarity', rows(4).pipe(lambda d: d.assign(sentence=pd.Series(['bad \ud800'] * len(d), index=d.index, dtype=object)))), "FrameError", 'lone surrogates'),
    "empty-lambda-grid": (lambda lm, p, tmp: add_tasks(lm, p[0], [p[3]], lambdas=[]), "VectorError", 'grid is empty'),
    "lambda-not-finite": (lambda lm, p, tmp: add_tasks(lm, p[0], [p[3]], lambdas=[0.5, float('nan')]), "VectorError", 'finite number'),
    "add-tasks-no-vectors": (lambda lm, p, tmp: add_tasks(lm, p[0], []), "VectorError", 'at least one task prompt vector'),
    "negative-early-stopping": (lambda lm, p, tmp: TuneConfig(early_stopping=-1), "ConfigError", 'early_stopping must be at least 1'),
    "merge-density-zero": (lambda lm, p, tmp: combine([p[3], p[3]], 'ties', density=0), "VectorError", 'would keep nothing'),
    "merge-density-over-one": (lambda lm, p, tmp: combine([p[3], p[3]], 'dare_linear', density=1.5), "VectorError", 'more than everything'),
    "merge-density-negative": (lambda lm, p, tmp: combine([p[3], p[3]], 'ties', density=-1), "VectorError", 'in (0, 1]'),
    "merge-weight-not-a-number": (lambda lm, p, tmp: combine([p[3], p[3]], weights=['a', 1]), "VectorError", "a weight is 'a'"),
    "only-names-nothing": (lambda lm, p, tmp: reproduce('smoke', out=tmp/'o', store=tmp/'s', only=[]), "TpvError", '--only names no experiment'),
    "unknown-experiment": (lambda lm, p, tmp: reproduce('smoke', out=tmp/'o', store=tmp/'s', only=['addtion']), "TpvError", "did you mean 'addition'"),
    "timeout-zero": (lambda lm, p, tmp: reproduce('smoke', out=tmp/'o', store=tmp/'s', timeout=0), "TpvError", '--timeout is the seconds'),
    "timeout-negative": (lambda lm, p, tmp: reproduce('smoke', out=tmp/'o', store=tmp/'s', timeout=-5), "TpvError", 'not -5'),
    "out-is-a-file": (lambda lm, p, tmp: reproduce('smoke', out=user_file(tmp), store=tmp/'s'), "TpvError", 'is a file; give a folder'),
    "out-not-writable": (lambda lm, p, tmp: reproduce('smoke', out='/proc/tpv-out', store=tmp/'s'), "TpvError", 'Cannot write to --out'),
    "notebooks-missing": (lambda lm, p, tmp: with_env('TPV_EXPERIMENTS', str(tmp), notebooks_dir), "TpvError", 'set TPV_EXPERIMENTS to their folder'),
    "lr-as-text": (lambda lm, p, tmp: TuneConfig(lr='0.3'), "ConfigError", 'lr must be'),
    "fractional-steps": (lambda lm, p, tmp: TuneConfig(max_steps=2.5), "ConfigError", 'max_steps'),
    "weight-decay-nan": (lambda lm, p, tmp: TuneConfig(weight_decay=float('nan')), "ConfigError", 'weight_decay'),
    "evaluate-zero-examples": (lambda lm, p, tmp: evaluate(lm, p[0], 'rt_polarity', n=0), "TpvError", 'at least 1 (or None for all)'),
    "checkpoint-every-zero": (lambda lm, p, tmp: tune(lm, 'rt_polarity', p[0], TuneConfig(max_steps=1), train=rows(8), validation=rows(8), progress=False, checkpoint=tmp/'c.ckpt', checkpoint_every=0), "TpvError", 'checkpoint_every'),
    "checkpoint-is-a-user-file": (lambda lm, p, tmp: tune(lm, 'rt_polarity', p[0], TuneConfig(max_steps=1), train=rows(8), validation=rows(8), progress=False, checkpoint=user_file(tmp)), "TpvError", 'not a tpv checkpoint; tpv leaves it alone'),
    "vector-truncated-weights": (lambda lm, p, tmp: load_vector(damaged_vector(tmp, p[3], 'vector.safetensors')), "VectorError", 'is corrupt'),
    "vector-corrupt-json": (lambda lm, p, tmp: load_vector(damaged_vector(tmp, p[3], 'vector.json')), "VectorError", 'JSONDecodeError'),
    "apply-coef-text": (lambda lm, p, tmp: p[3].apply_to(p[0], '0.5'), "VectorError", "coef is '0.5'"),
    "apply-coef-nan": (lambda lm, p, tmp: p[3].apply_to(p[0], float('nan')), "VectorError", 'coef is nan'),
    "fractional-shots": (lambda lm, p, tmp: few_shot_run(lm, 'rt_polarity', p[0], 2.5), "InitError", 'whole number of examples'),
    "fractional-shot-sample": (lambda lm, p, tmp: few_shot('rt_polarity', 2.5), "TpvError", 'whole number of 0 or more'),
    "similarity-of-nothing": (lambda lm, p, tmp: similarity_matrix({}), "VectorError", 'No vectors or prompts were given'),
    "similarity-unknown-origin": (lambda lm, p, tmp: similarity_matrix({('rt_polarity', 'origin_0'): p[3]}, 'origin_9'), "VectorError", 'No vectors of origin'),
    "model-empty-name": (lambda lm, p, tmp: load_lm(''), "ModelNotFoundError", 'No model named'),
    "model-empty-folder": (lambda lm, p, tmp: load_lm(str(tmp)), "ModelNotFoundError", 'holds no model'),
    "verify-manifest-without-kind": (lambda lm, p, tmp: rerun(record_with(tmp, '{}')), "StoreError", "lacks 'kind'"),
    "verify-manifest-not-json": (lambda lm, p, tmp: rerun(record_with(tmp, '{')), "StoreError", 'is not JSON'),
    "cache-is-a-file": (lambda lm, p, tmp: with_env('TPV_CACHE', str(user_file(tmp)), cache_dir), "CacheError", 'set TPV_CACHE to a writable directory'),
    "read-only-store-lacks-result": (lambda lm, p, tmp: read_only_store(tmp).cached('eval', {'k': 1}, lambda: {'a': 1}), "StoreError", 'is read-only and lacks'),
    "corrupt-store-record": (lambda lm, p, tmp: damaged_record(tmp, 'manifest'), "StoreWarning", 'Moved it to'),
    "record-missing-prompt": (lambda lm, p, tmp: damaged_record(tmp, 'prompt'), "StoreWarning", 'is computed again'),
    "checkpoint-planted-pickle": (tune_from_planted_checkpoint, "CheckpointError", 'not a tpv checkpoint; tpv leaves it alone'),
    "store-kind-climbs-out": (lambda lm, p, tmp: RunStore(tmp/'s').put('..', {'k': 1}, {}), "StoreError", 'A record kind is a name'),
    "store-kind-is-a-link": (lambda lm, p, tmp: linked_store(tmp).put('eval', {'k': 1}, {}), "StoreError", 'is a link'),
    "store-manifest-of-another-key": (lambda lm, p, tmp: store_with(tmp, 'other-key'), "StoreWarning", 'holds the result of another key'),
    "store-manifest-wrong-type": (lambda lm, p, tmp: store_with(tmp, 'wrong-type'), "StoreWarning", 'of the wrong type'),
    "store-prompt-edited": (lambda lm, p, tmp: store_with(tmp, 'edited'), "StoreWarning", 'changed after it was stored'),
    "out-holds-user-files": (lambda lm, p, tmp: reproduce('smoke', out=user_dir(tmp, 'README.md'), store=tmp/'s'), "TpvError", 'holds files tpv did not write (README.md)'),
    "out-empty": (lambda lm, p, tmp: reproduce('smoke', out='', store=tmp/'s'), "TpvError", '--out names no folder'),
    "out-readme-not-tpvs": (lambda lm, p, tmp: reproduce('smoke', out=marked_out(tmp, '# My notes'), store=tmp/'s'), "TpvError", 'is not a README tpv wrote'),
    "save-vector-over-user-vector-json": (lambda lm, p, tmp: save_vector(p[3], users_vector_folder(tmp)), "OverwriteError", '(README.md)'),
    "lambda-score-not-a-number": (lambda lm, p, tmp: search_lambda(lambda l: None), "VectorError", 'must be a finite number'),
    "add-tasks-other-origin": (lambda lm, p, tmp: add_tasks(lm, p[1], [p[3]]), "VectorError", 'pass cross_origin=True'),
    "add-tasks-unknown-metric": (lambda lm, p, tmp: add_tasks(lm, p[0], [p[3]], metric='acc'), "TpvError", "has no metric 'acc'"),
    "adapter-tokens-disagree": (lambda lm, p, tmp: load_prompt(inconsistent_adapter(tmp, p[0], lm, 'num_virtual_tokens', 9)), "PromptError", '9 virtual tokens'),
    "adapter-width-disagrees": (lambda lm, p, tmp: load_prompt(inconsistent_adapter(tmp, p[0], lm, 'token_dim', 7)), "PromptError", 'token_dim 7'),
    "adapter-edited": (lambda lm, p, tmp: load_prompt(edited_adapter(tmp, p[0], lm)), "PromptError", 'changed after tpv saved it'),
    "cosine-of-zero": (lambda lm, p, tmp: cosine(p[3], p[3] * 0), "VectorError", 'undefined for a zero vector'),
    "vector-tasks-not-names": (lambda lm, p, tmp: TaskPromptVector(p[3].tensor, None, 'm'), "VectorError", 'tasks are task names'),
    "flag-as-text": (lambda lm, p, tmp: TuneConfig(keep_init='false'), "ConfigError", "keep_init must be True or False, not 'false'"),
    "seed-negative": (lambda lm, p, tmp: few_shot('rt_polarity', 4, seed=-1), "TpvError", 'A seed is a whole number'),
    "label-words-repeat": (lambda lm, p, tmp: Task('mine', ('text',), 'mine text: {text}', ('yes', 'yes')), "TaskError", 'to more than one class'),
    "frame-duplicate-columns": (lambda lm, p, tmp: check_frame('rt_polarity', pd.concat([rows(2), rows(2)[['sentence']]], axis=1)), "FrameError", 'more than one column'),
    "reading-spec-unknown-field": (lambda lm, p, tmp: ReadSpec.of({'styl': 't5'}), "SpecError", "has no field 'styl'"),
    "prompt-not-a-tensor": (lambda lm, p, tmp: SoftPrompt(None, 'm'), "PromptError", 'a tensor of real numbers'),
    "verify-old-layout": (lambda lm, p, tmp: rerun(record_with(tmp, '{"kind": "prompt", "key": {"model": "tiny-llama"}, "result": {}}')), "StoreError", 'older or unknown layout'),
    "verify-manifest-wrong-type": (lambda lm, p, tmp: rerun(record_with(tmp, '{"kind": "eval", "key": [], "result": 1}')), "StoreError", 'of the wrong type'),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, lm, parts, tmp_path, monkeypatch):
    monkeypatch.setenv("TPV_CACHE", os.environ.get("TPV_CACHE", str(cache_dir(create=False))))
    fn, exc, msg = CASES[case]
    if exc.endswith("Warning"):  # recovered from, with a message that names what happened
        with pytest.warns(StoreWarning, match=re.escape(msg)): fn(lm, parts, tmp_path)
        return
    with pytest.raises(Exception) as e: fn(lm, parts, tmp_path)
    names = [c.__name__ for c in type(e.value).__mro__]
    assert exc in names and "TpvError" in names, f"{case}: {type(e.value).__name__}: {e.value}"
    assert msg in str(e.value), f"{case}: {e.value}"


def test_readme_table_matches():
    "The README's troubleshooting table lists exactly these cases (and has at least 60 rows)."
    text = (ROOT/"README.md").read_text()
    section = text[text.index("## Troubleshooting"):]
    ids = re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.M)
    assert len(ids) >= 60 and sorted(ids) == sorted(CASES)


def test_cli_errors_are_one_line(tmp_path):
    "From the command line a bad input is one line on stderr and exit status 2, no traceback."
    for args in (["reproduce", "--profile", "papr"], ["reproduce", "--profile", "smoke", "--only", "addtion"],
                 ["reproduce", "--profile", "smoke", "--store", "/proc/x"]):
        r = subprocess.run([str(BIN/"tpv"), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.startswith("tpv: ") and "Traceback" not in r.stderr, (args, r.stderr)
