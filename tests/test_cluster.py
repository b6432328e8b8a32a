"""`tpv reproduce --cluster`: the smoke profile on Dask workers gives the in-process run's tables byte for byte, and no
unit is computed twice, whether a worker is killed mid-run or two clients submit the same run to one scheduler; bad
addresses and workers that must not compute are one line each."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest

from conftest import smoke_argv
from tpv.cluster import journal
from tpv.store import RunStore


def _env(**kw):
    return {**os.environ, "PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in kw.items()}}


def reproduce(out, store, *extra, **kw):
    return subprocess.run(smoke_argv(out, store, *extra), capture_output=True, text=True, timeout=1200, env=_env(), **kw)


def csvs(out) -> dict:
    "Every CSV table a run wrote, as bytes, by name, but the cost table (seconds measured on this machine, new each run)."
    return {p.name: p.read_bytes() for p in sorted(Path(out).glob("*.csv")) if "_cost_" not in p.name}


def computed_once(store) -> list:
    "The journal of `store`, after checking that it names every unit at most once."
    es = journal(RunStore(store))
    units = [e["unit"] for e in es]
    assert es and len(units) == len(set(units)), sorted(u for u in units if units.count(u) > 1)
    return es


def session(sid: int) -> list[int]:
    "The processes still running in session `sid` (a run started with `start_new_session`)."
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit(): continue
        try: fields = (d/"stat").read_text().rsplit(")", 1)[1].split()
        except OSError: continue
        if int(fields[3]) == sid and fields[0] != "Z": out.append(int(d.name))
    return out


def children(pid: int, marker: bytes) -> list[int]:
    "The child processes of `pid` whose command line contains `marker`."
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit(): continue
        try: st, cmd = (d/"stat").read_text(), (d/"cmdline").read_bytes()
        except OSError: continue
        if int(st.rsplit(")", 1)[1].split()[1]) == pid and marker in cmd: out.append(int(d.name))
    return out


def wait_for(p, text: str, lines: list, limit: float = 600):
    "Read `p`'s output into `lines` until a line contains `text`."
    deadline = time.monotonic() + limit
    for line in p.stdout:
        lines.append(line)
        if text in line: return
        assert time.monotonic() < deadline, f"no {text!r} in {limit} s"
    raise AssertionError(f"the run ended before {text!r}: {''.join(lines)[-3000:]}")


@pytest.fixture(scope="module")
def inproc(tmp_path_factory):
    "One smoke run in this process, as every run was before clusters."
    d = tmp_path_factory.mktemp("inproc")
    r = reproduce(d/"out", d/"store")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return d


@pytest.fixture
def scheduler(tmp_path):
    "A Dask scheduler and two single-threaded workers started as a user would (`dask scheduler`, `dask worker`)."
    f, procs = tmp_path/"scheduler.json", []
    def start(*args, cwd=None, **env):
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", *map(str, args)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, env=_env(**env), start_new_session=True, cwd=cwd))
        return procs[-1]
    start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", f)
    deadline = time.monotonic() + 60
    while not f.exists(): assert time.monotonic() < deadline, "the scheduler did not start"; time.sleep(0.2)
    addr = json.loads(f.read_text())["address"]
    yield addr, start, procs[0]
    for p in procs:
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def workers(start, addr, n=2, cwd=None, **env):
    start("worker", addr, "--nworkers", n, "--nthreads", 1, "--no-dashboard", cwd=cwd, TPV_THREADS=1, **env)


def test_local_cluster_matches_in_process_byte_for_byte(inproc, tmp_path):
    p = subprocess.Popen(smoke_argv(tmp_path/"out", tmp_path/"store", "--cluster", "local:2"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
    out, err = p.communicate(timeout=1200)
    assert p.returncode == 0, out[-3000:] + err[-3000:]
    assert "cluster local:2 at tcp://127.0.0.1:" in out and "2 worker(s)" in out
    assert csvs(tmp_path/"out") == csvs(inproc/"out")
    es = computed_once(tmp_path/"store")
    assert {e["where"].split(":")[0] for e in es} == {"tcp"}  # every unit computed by a worker
    assert len({e["where"] for e in es}) == 2  # by both
    assert len(RunStore(tmp_path/"store").records()) == len(RunStore(inproc/"store").records())
    time.sleep(1)
    assert session(p.pid) == []  # no worker outlives the run


def test_worker_killed_mid_run_loses_nothing_and_computes_nothing_twice(inproc, tmp_path):
    p = subprocess.Popen(smoke_argv(tmp_path/"out", tmp_path/"store", "--cluster", "local:2"), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=_env(), start_new_session=True)
    lines = []
    wait_for(p, "[few_shot", lines)  # the last notebook: its cells are the longest units
    wait_for(p, "to compute on the cluster", lines)
    victims = children(p.pid, b"spawn_main")
    assert len(victims) == 2, victims
    os.kill(victims[0], signal.SIGKILL)
    rest, _ = p.communicate(timeout=1200)
    assert p.returncode == 0, ("".join(lines) + rest)[-4000:]
    assert csvs(tmp_path/"out") == csvs(inproc/"out")
    computed_once(tmp_path/"store")
    for rec in RunStore(tmp_path/"store").records().path: assert (Path(rec)/"manifest.json").exists()


def test_two_clients_on_one_scheduler_compute_each_unit_once(inproc, tmp_path, scheduler):
    addr, start, _ = scheduler
    workers(start, addr)
    runs = [subprocess.Popen(smoke_argv(tmp_path/f"out{k}", tmp_path/"store", "--cluster", addr), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=_env()) for k in (1, 2)]
    for r in runs:
        out, err = r.communicate(timeout=1200)
        assert r.returncode == 0, out[-3000:] + err[-3000:]
    assert csvs(tmp_path/"out1") == csvs(tmp_path/"out2") == csvs(inproc/"out")
    computed_once(tmp_path/"store")


def test_lost_scheduler_is_one_line_and_the_same_command_resumes(inproc, tmp_path, scheduler):
    addr, start, sched = scheduler
    workers(start, addr)
    argv = smoke_argv(tmp_path/"out", tmp_path/"store", "--cluster", addr)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    wait_for(p, "to compute on the cluster", [])
    os.kill(sched.pid, signal.SIGKILL)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2 and "Traceback" not in err, err
    assert "resumes" in err.strip().splitlines()[-1], err
    r = reproduce(tmp_path/"out", tmp_path/"store")  # the same run in-process: what the cluster stored is reused
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert csvs(tmp_path/"out") == csvs(inproc/"out")
    computed_once(tmp_path/"store")


def test_a_worker_with_other_tpv_code_is_refused_by_name(tmp_path, scheduler):
    import tpv
    other = tmp_path/"other"
    shutil.copytree(Path(tpv.__file__).parent, other/"tpv")
    with open(other/"tpv"/"stats.py", "a") as f: f.write("\n# an edit this run does not have\n")
    addr, start, _ = scheduler
    # started outside the checkout: `python -m` puts the working folder first on sys.path, and the checkout's own
    # tpv/ would be imported before the edited copy
    workers(start, addr, n=1, cwd=other, PYTHONPATH=os.pathsep.join([str(other), *filter(None, [os.environ.get("PYTHONPATH")])]))
    r = reproduce(tmp_path/"out", tmp_path/"store", "--cluster", addr)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "A worker cannot compute this run: tcp://127.0.0.1:" in line and "install the same tpv" in line, line
    assert not (tmp_path/"store"/"prompt").exists()  # refused before anything was computed


@pytest.mark.parametrize("spec,said", [("local:0", "needs one worker or more"), ("slurm", "is not one of"),
                                       ("tcp://127.0.0.1:9", "Cannot reach the Dask scheduler at tcp://127.0.0.1:9")])
def test_bad_cluster_is_one_line(tmp_path, spec, said):
    r = reproduce(tmp_path/"out", tmp_path/"store", "--cluster", spec)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and said in r.stderr, r.stderr
    assert not (tmp_path/"store"/"prompt").exists()


def test_ctrl_c_stops_the_local_cluster(tmp_path):
    p = subprocess.Popen(smoke_argv(tmp_path/"out", tmp_path/"store", "--cluster", "local:2"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
    wait_for(p, "to compute on the cluster", [])
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    deadline = time.monotonic() + 30
    while session(p.pid): assert time.monotonic() < deadline, "a process of the run outlived it"; time.sleep(0.5)
