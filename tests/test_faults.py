"""Faults a user meets outside the happy path: two processes on one store, Ctrl-C, a kernel the OOM killer took, a full disk,
a store shared in a group or mounted read-only, and tpv installed from a wheel. Each one ends in one clear line, loses nothing,
and leaves nothing half-written behind."""
import ctypes, errno, json, os, signal, stat, subprocess, sys, textwrap, time, zipfile
from pathlib import Path

import pytest

import tpv.reproduce as E  # the runner (it imports the store and the profiles it uses)
from conftest import smoke_argv
from tpv.io import TpvError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env(**kw):
    return {**os.environ, "PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in kw.items()}}


def _py(code: str, *args, **kw):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


# ---- a store that is safe under concurrent writers ----------------------------------------------------------------------

PUTS = """
    import sys
    from tpv.store import RunStore
    s = RunStore(sys.argv[1])
    for i in range(30): s.put("eval", {"model": "m", "task": "t"}, {"writer": sys.argv[2], "i": i})
"""


def test_two_processes_writing_one_key_leave_one_complete_record(tmp_path):
    "Before: `OSError [Errno 39] Directory not empty`, `FileNotFoundError`, and `.old` folders left behind."
    ps = [_py(PUTS, tmp_path/"s", w) for w in range(4)]
    outs = [p.communicate(timeout=300) for p in ps]
    assert [p.returncode for p in ps] == [0] * 4, [o[1][-2000:] for o in outs]
    left = sorted(p.name for p in (tmp_path/"s"/"eval").iterdir())
    assert len(left) == 1 and not left[0].startswith("."), left  # no .tmp, no .old
    man = json.loads((tmp_path/"s"/"eval"/left[0]/"manifest.json").read_text())
    assert man["result"]["i"] == 29  # one writer's last, complete record


COMPUTE = """
    import sys, time
    from tpv.store import RunStore
    def work():
        with open(sys.argv[2], "a") as f: f.write("computed\\n")
        time.sleep(2); return {"accuracy": 0.5}
    r = RunStore(sys.argv[1]).cached("eval", {"model": "m", "task": "t"}, work)
    print("cached" if r.cached else "computed", r.result["accuracy"])
"""


def test_two_processes_asking_for_one_record_compute_it_once(tmp_path):
    log = tmp_path/"calls.txt"
    ps = [_py(COMPUTE, tmp_path/"s", log) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in ps]
    assert [p.returncode for p in ps] == [0, 0], outs
    assert log.read_text().count("computed") == 1
    said = sorted(o[0].split("\n")[-2] for o in outs)
    assert said == ["cached 0.5", "computed 0.5"], outs
    assert any("waiting for another process" in o[0] for o in outs), outs


def _tuning_lines(text: str) -> int: return sum("tuning" in l and "prompt(s) in one loop" in l for l in text.splitlines())


def test_second_reproduce_on_one_store_waits_and_reuses(tmp_path):
    "Before: two `tpv reproduce` runs on one store each recomputed everything."
    cmd = lambda out: smoke_argv(tmp_path/out, tmp_path/"s", "--only", "similarity")
    a = subprocess.Popen(cmd("a"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    b = subprocess.Popen(cmd("b"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    oa, ob = a.communicate(timeout=900)[0], b.communicate(timeout=900)[0]
    assert a.returncode == 0 and b.returncode == 0, (oa[-3000:], ob[-3000:])
    n_tasks = len(E.PROFILES["smoke"].tasks)
    assert _tuning_lines(oa) + _tuning_lines(ob) == n_tasks, (oa, ob)  # each task's loop ran once, in one of the two
    assert (tmp_path/"a"/"README.md").exists() and (tmp_path/"b"/"README.md").exists()


REPLACING = """
    import sys
    import tpv.io
    if sys.argv[2] == "fallback": tpv.io._RENAMEAT2 = None  # a system without the atomic swap: the old record is moved aside first
    from tpv.store import RunStore
    s, i = RunStore(sys.argv[1]), 0
    print("ready", flush=True)
    while True:
        i += 1; s.put("eval", {"model": "m", "task": "t"}, {"i": i, "pad": "x" * 50000})
"""


@pytest.mark.parametrize("how, kills", [("exchange", 20), ("fallback", 10)])
def test_a_record_replaced_under_kill_9_is_never_lost(tmp_path, how, kills):
    "Before: `put` moved the old record aside, then renamed the new one in; a kill -9 between the two lost the record (17 of 20 kills)."
    import random
    key, rng = {"model": "m", "task": "t"}, random.Random(3)
    E.RunStore(tmp_path/"s").put("eval", key, {"i": 0})
    for n in range(kills):
        p = _py(REPLACING, tmp_path/"s", how)
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        time.sleep(rng.uniform(0.05, 0.6))  # somewhere among hundreds of replacements
        p.kill(); p.wait()
        rec = E.RunStore(tmp_path/"s").get("eval", key)  # opening the store cleans up after the killed writer
        assert rec is not None and isinstance(rec.result["i"], int), f"kill {n}: the record is gone"
        left = sorted(q.name for q in (tmp_path/"s"/"eval").iterdir())
        assert len(left) == 1 and not left[0].startswith("."), f"kill {n}: {left}"  # no temporary folder stays behind


def test_a_relative_store_is_the_folder_the_user_named(tmp_path):
    "Before: a relative --store or TPV_STORE was resolved in the notebooks' folder (the checkout, or site-packages), and the named store stayed empty."
    before = sorted(p.name for p in E.notebooks_dir().iterdir())
    r = subprocess.run([str(BIN/"tpv"), "reproduce", "--profile", "smoke", "--only", "similarity", "--out", "figs"], cwd=tmp_path,
                       env=_env(TPV_STORE="my-store"), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(E.RunStore(tmp_path/"my-store").records("prompt")) > 0 and (tmp_path/"figs"/"README.md").exists()
    assert sorted(p.name for p in E.notebooks_dir().iterdir()) == before  # nothing landed beside the notebooks


# ---- every failure of the command is one line ----------------------------------------------------------------------------

def _start_smoke(tmp_path, *extra):
    p = subprocess.Popen(smoke_argv(tmp_path/"o", tmp_path/"s", *extra),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=_env())
    for line in p.stdout:  # wait until a notebook is running in its kernel
        if line.strip().startswith("[similarity"): return p
    raise AssertionError(f"the run ended before a notebook started: {p.stderr.read()[-3000:]}")


def _kernels(pid: int) -> list[int]:
    "The ipykernel processes started by process `pid`."
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit(): continue
        try:
            st = (d/"stat").read_text(); cmd = (d/"cmdline").read_bytes()
        except OSError: continue
        if int(st.rsplit(")", 1)[1].split()[1]) == pid and b"ipykernel" in cmd: out.append(int(d.name))
    return out


def _no_leftovers(out: Path):
    left = [p.name for p in (out/"notebooks").iterdir() if p.name.startswith(".running-")]
    assert not left, left


@pytest.mark.parametrize("to_group", [True, False], ids=["group", "process"])
def test_ctrl_c_is_one_line_and_exit_130(tmp_path, to_group):
    "Before: about 40 lines of traceback and exit 1."
    p = _start_smoke(tmp_path)
    (os.killpg if to_group else os.kill)(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == "tpv: interrupted; run the same command again to resume (finished work is in the store).", err
    assert "Traceback" not in err
    _no_leftovers(tmp_path/"o")


def test_dead_kernel_is_one_line_that_names_the_notebook(tmp_path):
    "Before: a raw `DeadKernelError`. The kernel is killed as the OOM killer would kill it."
    p = _start_smoke(tmp_path)
    deadline = time.monotonic() + 60  # a hang fails the test instead of stalling it
    while not (ks := _kernels(p.pid)):
        assert time.monotonic() < deadline, "no kernel process found"
        time.sleep(0.1)
    os.kill(ks[0], signal.SIGKILL)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("tpv: The kernel running the similarity notebook died") and "memory" in last and "resumes" in last, err
    _no_leftovers(tmp_path/"o")


def test_full_disk_names_the_path(tmp_path, monkeypatch, capsys):
    "Before: about 80 lines of papermill. The disk fills while the executed notebook is written."
    import papermill
    def full(src, dst, **kw): raise OSError(errno.ENOSPC, "No space left on device", dst)
    monkeypatch.setattr(papermill, "execute_notebook", full)
    with pytest.raises(TpvError, match="No space left on device") as e: E.reproduce("smoke", out=tmp_path/"o", store=tmp_path/"s", only=["similarity"])
    assert "similarity_smoke.ipynb" in str(e.value) and "free space" in str(e.value)
    _no_leftovers(tmp_path/"o")
    import tpv.cli
    def full_store(*a, **kw): raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path/"s"/"eval"))
    monkeypatch.setattr(tpv.cli, "reproduce", full_store)
    assert tpv.cli.main(["reproduce", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path/"s"/"eval") in err and "No space left on device" in err, err


def test_a_failed_notebook_leaves_one_clearly_named_file(tmp_path, monkeypatch):
    "Before: `.running-*` folders and `.failed.ipynb` files accumulated in --out."
    import papermill
    from papermill.exceptions import PapermillExecutionError
    def fail(src, dst, **kw):
        Path(dst).write_text("{}")
        raise PapermillExecutionError(2, 3, "x = 1/0", "ValueError", "boom", [])
    monkeypatch.setattr(papermill, "execute_notebook", fail)
    for _ in range(2):
        with pytest.raises(TpvError, match="failed in cell 3: ValueError: boom"):
            E.reproduce("smoke", out=tmp_path/"o", store=tmp_path/"s", only=["similarity"])
    assert sorted(p.name for p in (tmp_path/"o"/"notebooks").iterdir()) == ["similarity_smoke.failed.ipynb"]
    monkeypatch.setattr(papermill, "execute_notebook", lambda src, dst, **kw: Path(dst).write_text("{}"))
    E.reproduce("smoke", out=tmp_path/"o", store=tmp_path/"s", only=["similarity"])
    assert sorted(p.name for p in (tmp_path/"o"/"notebooks").iterdir()) == ["similarity_smoke.ipynb"]  # the failure is superseded


def test_info_refuses_a_cache_that_is_a_file(tmp_path):
    "Before: `tpv info` passed, and the store was blamed later."
    f = tmp_path/"cache"; f.write_text("x")
    r = subprocess.run([str(BIN/"tpv"), "info"], capture_output=True, text=True, env=_env(TPV_CACHE=f), timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("tpv: ") and "set TPV_CACHE" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_model_mismatch_does_not_suggest_a_missing_option():
    "Before: it suggested `strict_model=False`, which `evaluate` and `tune` do not accept."
    import torch
    from tpv.models import load_lm
    from tpv.prompts import PromptError, SoftPrompt, check_fits
    lm = load_lm("tiny-llama")
    with pytest.raises(PromptError) as e: check_fits(SoftPrompt(torch.zeros(2, lm.width), "gpt2"), lm)
    assert "strict_model" not in str(e.value) and "load the matching model" in str(e.value)


# ---- a store shared in a group, or read-only ------------------------------------------------------------------------------

UMASK = """
    import os, sys, torch
    os.umask(0o002)
    from tpv.store import RunStore
    from tpv.prompts import SoftPrompt
    RunStore(sys.argv[1]).put("origin", {"model": "m", "origin": "origin_0"}, {"ok": 1}, SoftPrompt(torch.zeros(2, 4), "m"))
"""


def test_store_files_follow_the_umask(tmp_path):
    "Before: records were 0700 with 0600 files, unreadable to the rest of a group."
    p = _py(UMASK, tmp_path/"s"); out = p.communicate(timeout=120)
    assert p.returncode == 0, out
    rec = next((tmp_path/"s"/"origin").iterdir())
    modes = {q.relative_to(rec).as_posix() or ".": stat.S_IMODE(q.stat().st_mode) for q in [rec, *rec.rglob("*")]}
    assert all(m == (0o775 if (rec/k).is_dir() else 0o664) for k, m in modes.items()), {k: oct(m) for k, m in modes.items()}


def _drop_dac_override():
    "In the child, before exec: give up root's right to ignore file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)."
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0: raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _as_reader(d: Path):
    "Make `d` read-only, as a read-only mount or another user's store would be; as root, also drop the right to ignore that."
    for q in [d, *d.rglob("*")]: q.chmod(q.stat().st_mode & ~0o222)
    return dict(preexec_fn=_drop_dac_override) if os.geteuid() == 0 else {}


def test_read_only_store_serves_every_result_it_holds(tmp_path):
    "Before: a read-only store that held every result was refused, though only reads were needed."
    base = tmp_path
    try:
        store, out, cache = base/"store", base/"out", base/"cache"
        r = subprocess.run(smoke_argv(base/"first", store, "--only", "similarity"),
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        for d in (out, cache): d.mkdir()
        env = _env(TPV_CACHE=cache, HOME=cache, JUPYTER_RUNTIME_DIR=cache/"rt", MPLCONFIGDIR=cache/"mpl", IPYTHONDIR=cache/"ipy")
        kw = _as_reader(store)
        r = subprocess.run(smoke_argv(out, store, "--only", "similarity"),
                           capture_output=True, text=True, timeout=900, env=env, cwd=out, **kw)
        assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
        assert _tuning_lines(r.stdout) == 0 and (out/"README.md").exists()  # everything read, nothing recomputed
        missing = subprocess.run([sys.executable, "-c", "import sys; from tpv.store import RunStore; "
                                  "RunStore(sys.argv[1]).cached('eval', {'new': 1}, lambda: {'a': 1})", str(store)],
                                 capture_output=True, text=True, timeout=120, env=env, cwd=out, **_as_reader(store))
        assert missing.returncode != 0 and "is read-only and lacks 1 eval record(s)" in missing.stderr, missing.stderr[-2000:]
    finally:
        for q in [base, *base.rglob("*")]:
            if not q.is_symlink(): q.chmod(q.stat().st_mode | 0o200)  # so that pytest can remove it


# ---- the package is complete ---------------------------------------------------------------------------------------------

def test_wheel_ships_notebooks_and_license_and_reproduces_in_an_empty_folder(tmp_path):
    "Before: a wheel had no experiment notebooks (so `tpv reproduce` failed after `pip install`) and no LICENSE."
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "--quiet", "-w", str(tmp_path/"dist")],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    whl = next((tmp_path/"dist").glob("tpv-*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    assert {f"tpv/experiment_notebooks/{n}.ipynb" for n in E.EXPERIMENTS} <= set(names), names
    lic = [n for n in names if n.endswith("LICENSE")]
    assert lic and "Apache License" in zipfile.ZipFile(whl).read(lic[0]).decode()
    site = tmp_path/"site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(whl)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    empty = tmp_path/"empty"; empty.mkdir()
    code = ("import sys, tpv; from tpv.reproduce import notebooks_dir; "
            "assert tpv.__file__.startswith(sys.argv[1]) and str(notebooks_dir()).startswith(sys.argv[1]), (tpv.__file__, notebooks_dir()); "
            "from tpv.cli import main; sys.exit(main(['reproduce', '--profile', 'smoke', '--store', 'store', '--out', 'figs']))")
    r = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, timeout=1200, cwd=empty,
                       env=_env(PYTHONPATH=site, TPV_EXPERIMENTS=""))
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert (empty/"figs"/"README.md").exists() and len(list((empty/"figs"/"notebooks").glob("*_smoke.ipynb"))) == len(E.EXPERIMENTS)
