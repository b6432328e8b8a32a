"""The cluster path against in-process, on this machine: the overhead a unit pays to go through Dask, the smoke
profile's wall time in-process and on `local:2`, and `tpv plan`'s estimate of a run against the run's measured time.

    python benchmarks/cluster_bench.py                        # -> the cluster section of benchmarks/RESULTS.md
    python benchmarks/cluster_bench.py --units 20 --out /tmp/c.md   # a quick check
    python benchmarks/cluster_bench.py --planned-store STORE --planned-minutes M   # also the planner's error on a run

The overhead is measured on units that do no model work (each squares a number and stores it), so what is timed is the
path itself: pickling the unit, the scheduler, the worker's store write and the client's read-back, against the same
store writes in this process. The smoke runs each start from an empty store.
"""
from __future__ import annotations
import argparse, os, platform, re, statistics, subprocess, sys, tempfile, time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
START, END = "<!-- cluster benchmark: start -->", "<!-- cluster benchmark: end -->"


@dataclass
class Job:
    kind: str
    keys: list
    what: str
    run: object
    gpu: bool = False


def _job(x: int, tag: str) -> Job:
    def run(todo): return [({"y": x * x}, None, 0.0, None) for _ in todo]
    return Job("bench", [{"x": x, "tag": tag}], f"square of {x}", run)


def overhead_ms(n: int) -> dict:
    "Milliseconds per unit: through a one-worker LocalCluster against the same store writes in this process."
    from tpv.cluster import compute_on, connect, open_cluster
    from tpv.store import RunStore
    root = Path(tempfile.mkdtemp())/"store"
    st = RunStore(root)
    t = time.perf_counter()
    for x in range(n): st.many("bench", _job(x, "here").keys, _job(x, "here").run)
    here = time.perf_counter() - t
    with open_cluster("local:1") as addr, connect(addr) as c:
        c.wait_for_workers(1)
        compute_on(c, [_job(-1, "warm")], root, lambda m: None)  # the worker imports tpv once, outside the timing
        t = time.perf_counter()
        compute_on(c, [_job(x, "cluster") for x in range(n)], root, lambda m: None)
        for x in range(n): st.many("bench", _job(x, "cluster").keys, None)  # the client reads what the workers wrote
        there = time.perf_counter() - t
    return {"units": n, "in-process ms": 1e3 * here / n, "cluster ms": 1e3 * there / n}


def smoke_minutes(*extra) -> float:
    d = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    r = subprocess.run([str(BIN/"tpv"), "reproduce", "--profile", "smoke", "--out", str(d/"out"), "--store",
                        str(d/"store"), *extra], capture_output=True, text=True)
    if r.returncode: raise SystemExit(r.stdout[-2000:] + r.stderr[-2000:])
    return (time.perf_counter() - t) / 60


def planned(store: str) -> float:
    "`tpv plan --scratch`'s estimate, in minutes on one worker, of the whole run whose records `store` holds."
    from tpv.plan import plan
    return plan("cpu", store, workers=1, scratch=True)["makespan_s"] / 60


def cpu_name() -> str:
    try: return next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration): return platform.processor() or "unknown"


def section(o: dict, inproc: float, local2: float, plan_row: str) -> str:
    return "\n".join([
        START, "## The cluster path (`benchmarks/cluster_bench.py`)", "",
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()} ({os.cpu_count()} cores), Python {platform.python_version()}.", "",
        "| measurement | in-process | Dask | ratio |", "|---|---|---|---|",
        f"| per unit, {o['units']} units that do no model work (ms) | {o['in-process ms']:.1f} | {o['cluster ms']:.1f} "
        f"(LocalCluster, 1 worker) | {o['cluster ms'] / o['in-process ms']:.1f}× |",
        f"| `tpv reproduce --profile smoke`, empty store (min) | {inproc:.2f} | {local2:.2f} (`--cluster local:2`) | "
        f"{local2 / inproc:.2f}× |", *([plan_row] if plan_row else []), "",
        "The overhead per unit is the Dask path's own cost: the unit pickled to the worker (its experiment by "
        "reference), the scheduler's round trip, and the client reading the records back from the store. On this "
        "machine's two cores, `local:2` cannot be faster than one process that already uses both cores for torch: "
        "each worker gets one thread, each loads its own model, and every unit pays the overhead above; the cluster "
        "path is for more cores or GPUs than one process can use, not for this machine."
        + (" The planner's figure is an upper bound by construction: it prices every input at the profile's maximum "
           "length and every λ search of the addition experiment at its most evaluations, with rates measured from "
           "the run's own records." if plan_row else ""), END])


def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--units", type=int, default=200)
    a.add_argument("--out", default=str(HERE/"RESULTS.md"))
    a.add_argument("--planned-store", default=None, help="the store of a finished cpu run, to check the planner on")
    a.add_argument("--planned-minutes", type=float, default=None, help="that run's measured wall time, in minutes")
    args = a.parse_args(argv)
    o = overhead_ms(args.units)
    inproc, local2 = smoke_minutes(), smoke_minutes("--cluster", "local:2")
    row = ""
    if args.planned_store and args.planned_minutes:
        est = planned(args.planned_store)
        row = (f"| `tpv plan --profile cpu --scratch` against the fresh cpu run it plans (min) | "
               f"{args.planned_minutes:.1f} measured | {est:.1f} planned | error {100 * (est / args.planned_minutes - 1):+.0f}% |")
    text = section(o, inproc, local2, row)
    out = Path(args.out)
    old = out.read_text() if out.exists() else ""
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda m: text, old, flags=re.S) if START in old else \
        old.rstrip("\n") + "\n\n" + text + "\n"
    out.write_text(new)
    print(text)


if __name__ == "__main__":
    main()
