"""`tpv plan` against real runs: on a store holding part of a smoke run it lists exactly the records that are missing, and
running the profile then computes exactly those."""
import shutil, subprocess, sys
from pathlib import Path

from conftest import smoke_argv
from tpv.cluster import journal
from tpv.plan import Lookup, plan
from tpv.profiles import get_profile
from tpv.store import RunStore

BIN = Path(sys.executable).parent


def reproduce(out, store):
    r = subprocess.run(smoke_argv(out, store), capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def knowable_to_do(p) -> dict:
    "Records to do whose keys the plan knows, by experiment and kind."
    u = p["units"].assign(known=lambda d: d["to do"] - d["not known"])
    return {k: int(v) for k, v in u.groupby(["experiment", "kind"]).known.sum().items() if v}


def test_plan_lists_exactly_the_missing_records_and_the_run_computes_them(tmp_path):
    reproduce(tmp_path/"out", tmp_path/"store")
    st, P = RunStore(tmp_path/"store"), get_profile("smoke")
    full = plan("smoke", st)
    assert knowable_to_do(full) == {}, knowable_to_do(full)  # every record whose key it can know, it finds
    # take away every few-shot run and one evaluation the similarity experiment rests on
    fs = st.records("few_shot")
    for p in fs.path: shutil.rmtree(p)
    look = Lookup(P, st)
    t = P.tasks[0]
    gate = look.ex.eval_key(look.prompt(("tuned", t, 0, P.tune.hash())), t, "test", P.n_test, P.tune.reading)
    shutil.rmtree(st.path("eval", gate))
    part = plan("smoke", RunStore(tmp_path/"store"), workers=2)
    k = knowable_to_do(part)
    assert k.pop(("few_shot", "few_shot")) == len(fs), k
    assert list(k.values()) == [1] and list(k)[0][1] == "eval", k  # where it is first needed (regime or similarity)
    assert 0 < part["critical_s"] <= part["makespan_s"] <= part["compute_s"]
    before = len(journal(st))
    reproduce(tmp_path/"out", tmp_path/"store")
    done = journal(RunStore(tmp_path/"store"))[before:]
    assert sum(e["computed"] for e in done) == len(fs) + 1, done


def test_plan_command_and_its_bad_inputs(tmp_path):
    r = subprocess.run([str(BIN/"tpv"), "plan", "--profile", "paper", "--workers", "64", "--store", str(tmp_path/"s")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "makespan on 64 worker(s)" in r.stdout and "A100" in r.stdout and "assumptions:" in r.stdout
    for bad, said in ((["--workers", "0"], "workers is a whole number"), (["--only", "simlarity"], "No experiment"),
                      (["--profile", "cpus"], "did you mean 'cpu'")):
        r = subprocess.run([str(BIN/"tpv"), "plan", "--store", str(tmp_path/"s"), *bad], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and said in r.stderr, r.stderr
