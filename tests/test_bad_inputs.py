"""The README's troubleshooting table, row by row: each bad input gets one clear error naming the problem and the fix,
raised before any expensive work. The ids here are the table's first column; `test_readme_table_matches` keeps them in step."""
import json, os, re, subprocess, sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

import tpv.tasks
from tpv.arithmetic import combine
from tpv.experiments import RunStore, check_parameters, check_profile, notebooks_dir
from tpv.initialization import Sources, few_shot_run, init_prompt
from tpv.io import cache_dir
from tpv.models import load_lm
from tpv.prompts import SoftPrompt, check_fits, load_prompt, make_origins, save_prompt
from tpv.tasks import few_shot, get_task
from tpv.engine import ReadSpec, encode
from tpv.tuning import TuneConfig, tune
from tpv.vectors import TaskPromptVector, cosine, load_vector

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
                                        "TpvError", "check the label words"),
    "unknown-notebook-parameter": (lambda lm, p, tmp: check_parameters(notebooks_dir()/"few_shot.ipynb", {"shotz": [0, 10]}), "ParameterError", "did you mean 'shots'"),
    "negative-learning-rate": (lambda lm, p, tmp: TuneConfig(lr=-0.3).validate(), "ConfigError", "lr must be positive"),
    "zero-steps": (lambda lm, p, tmp: TuneConfig(max_steps=0).validate(), "ConfigError", "max_steps must be at least 1"),
    "zero-batch-size": (lambda lm, p, tmp: tune(lm, "rt_polarity", p[0], TuneConfig(batch_size=0)), "ConfigError", "batch_size must be at least 1"),
    "cache-not-writable": (lambda lm, p, tmp: (os.environ.__setitem__("TPV_CACHE", "/proc/tpv-cache"), cache_dir())[1], "CacheError", "set TPV_CACHE to a writable directory"),
    "store-not-writable": (lambda lm, p, tmp: RunStore("/proc/tpv-store"), "StoreError", "pass a writable folder"),
    "corrupt-store-record": (lambda lm, p, tmp: (lambda s: ((s.path("eval", {"k": 1})).mkdir(parents=True), (s.path("eval", {"k": 1})/"manifest.json").write_text("{"), s.get("eval", {"k": 1})))(RunStore(tmp/"s")),
                             "StoreError", "delete"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, lm, parts, tmp_path, monkeypatch):
    monkeypatch.setenv("TPV_CACHE", os.environ.get("TPV_CACHE", str(cache_dir(create=False))))
    fn, exc, msg = CASES[case]
    with pytest.raises(Exception) as e: fn(lm, parts, tmp_path)
    names = [c.__name__ for c in type(e.value).__mro__]
    assert exc in names and "TpvError" in names, f"{case}: {type(e.value).__name__}: {e.value}"
    assert msg in str(e.value), f"{case}: {e.value}"


def test_readme_table_matches():
    "The README's troubleshooting table lists exactly these cases (and has at least 20 rows)."
    text = (ROOT/"README.md").read_text()
    section = text[text.index("## Troubleshooting"):]
    ids = re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.M)
    assert len(ids) >= 20 and sorted(ids) == sorted(CASES)


def test_cli_errors_are_one_line(tmp_path):
    "From the command line a bad input is one line on stderr and exit status 2, no traceback."
    for args in (["reproduce", "--profile", "papr"], ["reproduce", "--profile", "smoke", "--only", "addtion"],
                 ["reproduce", "--profile", "smoke", "--store", "/proc/x"]):
        r = subprocess.run([str(BIN/"tpv"), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.startswith("tpv: ") and "Traceback" not in r.stderr, (args, r.stderr)
