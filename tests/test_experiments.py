"`tpv reproduce --profile smoke` end to end: every output, the store making a second run cheap, and kills mid-sweep losing nothing."
import json, os, random, shutil, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import smoke_argv
from tpv.profiles import EXPERIMENTS, PROFILES
from tpv.reproduce import OUT_MARK, TOLERANCE, ParameterError, check_parameters, notebooks_dir
from tpv.store import RunStore
from tpv.prompts import SoftPrompt, load_prompt

BIN = Path(sys.executable).parent


def reproduce(out, store, *extra, **kw):
    return subprocess.run(smoke_argv(out, store, *extra), capture_output=True, text=True, timeout=1200, **kw)


def tables(out):
    "Every CSV table the run wrote, by name, but the cost table: seconds measured on this machine, new in every run."
    return {p.name: pd.read_csv(p) for p in sorted(Path(out).glob("*.csv")) if "_cost_" not in p.name}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    "One uninterrupted smoke run, and how long it took."
    d = tmp_path_factory.mktemp("clean")
    t0 = time.monotonic(); r = reproduce(d/"out", d/"store")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return d, time.monotonic() - t0, r.stdout  # the kill test kills at random points within this span


def test_smoke_run_writes_every_output(clean):
    d, _, stdout = clean
    out = d/"out"
    for n in EXPERIMENTS:
        assert (out/"notebooks"/f"{n}_smoke.ipynb").exists()
        s = json.loads((out/f"{n}_tiny-llama_smoke.json").read_text())
        assert s["claims"] and s["outputs"]
        for o in s["outputs"]:
            for k in ("csv", "png", "pdf"):
                if k in o: assert (out/o[k]).stat().st_size > 0, o[k]
    readme = (out/"README.md").read_text()
    assert "## The paper's claims against this run" in readme and "cross_origin" in readme and "few-shot" in readme
    assert "mixed / original" in (out/"cross_origin_table1_tiny-llama_smoke.md").read_text()
    assert "[similarity" in stdout and "[regime" in stdout and f"({len(EXPERIMENTS)}/{len(EXPERIMENTS)}) few_shot done" in stdout  # progress from inside the notebooks reaches the terminal
    assert [p.name for p in out.glob(".*")] == [OUT_MARK] and not list((out/"notebooks").glob(".*"))  # nothing temporary left; the folder is marked as tpv's
    for nb in (out/"notebooks").glob("*.ipynb"):  # a shared notebook names no folder of this machine
        text = nb.read_text()
        assert str(d) not in text and str(notebooks_dir().resolve()) not in text and ".running-" not in text, nb.name
        params = json.loads(text)["metadata"]["papermill"]["parameters"]
        assert params["store"] == "<store>" and params["out_dir"] == "<out>" and 'store = \\"<store>\\"' in text, nb.name


def test_second_run_takes_everything_from_the_store(clean):
    d, _, _ = clean
    before, n_records = tables(d/"out"), len(RunStore(d/"store").records())
    r = reproduce(d/"out", d/"store")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "tuning" not in r.stdout and "loaded tiny-llama" not in r.stdout  # nothing trained, the model never loaded
    assert len(RunStore(d/"store").records()) == n_records  # nothing computed: every result came from the store
    after = tables(d/"out")
    assert before.keys() == after.keys()
    for k in before: pd.testing.assert_frame_equal(before[k], after[k])


def test_recompute_renders_the_claims_from_the_evidence_alone(clean, tmp_path):
    "`tpv recompute` reads the run's evidence (per-example predictions, prompts) into an empty store and renders the same claims tables and CSVs, computing nothing."
    d, _, _ = clean
    ev = d/"out"/"evidence"
    man = json.loads((ev/"manifest.json").read_text())
    assert man["experiments"] == list(EXPERIMENTS) and man["records"] > 0 and man["profile"] == "smoke"
    r = subprocess.run([str(BIN/"tpv"), "recompute", str(ev), "--out", str(tmp_path/"re")], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0 and "are identical to" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert "records to compute" not in r.stdout and "loaded tiny-llama" not in r.stdout  # nothing computed, no model
    before, after = tables(d/"out"), tables(tmp_path/"re")
    assert before.keys() == after.keys()
    for k in before: pd.testing.assert_frame_equal(before[k], after[k], obj=k)
    # evidence that lacks a record: the notebook that needs it fails with one line, nothing is recomputed in its place
    lines = (ev/"records.jsonl").read_text().splitlines()
    first_eval = next(i for i, x in enumerate(lines) if json.loads(x)["kind"] == "eval")
    shutil.copytree(ev, tmp_path/"cut")
    (tmp_path/"cut"/"records.jsonl").write_text("\n".join(x for i, x in enumerate(lines) if i != first_eval) + "\n")
    r = subprocess.run([str(BIN/"tpv"), "recompute", str(tmp_path/"cut"), "--out", str(tmp_path/"re2")], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 2 and "TPV_STORE_ONLY is set" in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]


def test_killed_sweep_resumes_and_matches_a_clean_run(clean, tmp_path):
    "Kill `tpv reproduce` (and its kernels) at random points, restart until it completes: the tables equal the clean run's."
    d, first, _ = clean
    rng, kills = random.Random(7), 0
    for attempt in range(12):
        p = subprocess.Popen(smoke_argv(tmp_path/"out", tmp_path/"store"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if kills < 3:
            try:
                p.wait(timeout=rng.uniform(8, 0.4 * first)); break
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL); p.wait(); kills += 1; continue
        assert p.wait(timeout=1200) == 0; break
    assert kills == 3
    clean_t, resumed = tables(d/"out"), tables(tmp_path/"out")
    assert clean_t.keys() == resumed.keys()
    for k in clean_t: pd.testing.assert_frame_equal(clean_t[k], resumed[k], obj=k)
    for rec in RunStore(tmp_path/"store").records().path: assert (Path(rec)/"manifest.json").exists()


def test_every_notebook_takes_a_profile_and_nothing_else():
    "Before: a profile was copied into 16 parameters per notebook. Now each notebook takes the profile's name, the store, the output folder and the overrides."
    full = {"profile": "cpu", "store": "", "out_dir": "", "overrides": {"few_shot.shots": [0, 10]}}
    for n in EXPERIMENTS:
        assert check_parameters(notebooks_dir()/f"{n}.ipynb", full) == full  # accepted whole: no name the notebook lacks
        with pytest.raises(ParameterError, match="did you mean 'n_origins'|has no parameter 'n_origins'"):
            check_parameters(notebooks_dir()/f"{n}.ipynb", {**full, "n_origins": 3})  # the old way of changing a setting is refused
    assert sorted(PROFILES) == ["cpu", "paper", "smoke", "test"]


def test_parameter_typo_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ParameterError, match="did you mean 'overrides'"):
        check_parameters(notebooks_dir()/"few_shot.ipynb", {"override": {}})
    r = subprocess.run(smoke_argv(tmp_path/"o", tmp_path/"s", "--set", "few_shot.shot=[0,10]"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "did you mean 'few_shot.shots'" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(smoke_argv(tmp_path/"o", tmp_path/"s", "--only", "similarty"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "did you mean 'similarity'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path/"o").exists()


def test_verify_reruns_stored_results(clean, tmp_path):
    "`tpv verify` recomputes a stored prompt and an evaluation from their records alone, and flags an altered one."
    d, _, _ = clean
    recs = RunStore(d/"store").records()
    prompt = recs[recs.kind == "prompt"].path.iloc[0]
    ev = recs[(recs.kind == "eval") & recs.prompt.notna()].path.iloc[0]
    r = subprocess.run([str(BIN/"tpv"), "verify", prompt, ev], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.count("IDENTICAL") == 2 and r.stdout.count("recorded on") == 2, r.stdout + r.stderr
    r = subprocess.run([str(BIN/"tpv"), "verify", "."], cwd=prompt, capture_output=True, text=True, timeout=600)  # from inside the record
    assert r.returncode == 0 and r.stdout.startswith("IDENTICAL"), r.stdout + r.stderr
    man = Path(ev)/"manifest.json"; m = json.loads(man.read_text()); m["result"]["accuracy"] += 0.25
    man.write_text(json.dumps(m))
    r = subprocess.run([str(BIN/"tpv"), "verify", ev], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "DIFFERS" in r.stdout


def _made_elsewhere(store, path, scale):
    "The prompt record at `path`, stored again as another machine would have made it: its tensor off by `scale` (relative), another host, CPU and torch."
    man = json.loads((Path(path)/"manifest.json").read_text())
    old = load_prompt(Path(path)/"prompt")
    p = SoftPrompt(old.tensor + scale * old.tensor.abs().max() * torch.sign(old.tensor), old.model, old.kind, old.init, old.meta)
    store.put("prompt", man["key"], man["result"], p, man["config"], man["data"])
    man = json.loads((Path(path)/"manifest.json").read_text())
    man.update(host="another-host", device="Intel Xeon with AMX", versions={**man["versions"], "torch": "2.99.0"},
               precision={"bf16": False, "by": "TPV_PRECISION"})
    (Path(path)/"manifest.json").write_text(json.dumps(man))


@pytest.mark.parametrize("scale, said, status", [(1e-4, "SAME WITHIN TOLERANCE", 0), (0.05, "DIFFERS", 1)])
def test_verify_across_machines_within_or_beyond_tolerance(clean, tmp_path, scale, said, status):
    "A record made on another CPU, precision or torch: 'the same within tolerance' or 'differs', with the record's own machine in the output."
    d, _, _ = clean
    shutil.copytree(d/"store", tmp_path/"store")
    store = RunStore(tmp_path/"store")
    recs = store.records()
    path = recs[recs.kind == "prompt"].path.iloc[0]
    _made_elsewhere(store, path, scale)
    r = subprocess.run([str(BIN/"tpv"), "verify", path], capture_output=True, text=True, timeout=600)
    assert r.returncode == status and r.stdout.startswith(said), r.stdout + r.stderr
    assert "recorded on another-host (Intel Xeon with AMX), fp32, torch 2.99.0" in r.stdout, r.stdout
    assert "re-run on" in r.stdout and f"tolerance {TOLERANCE['prompt']:g}" in r.stdout
