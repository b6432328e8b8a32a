import functools, subprocess, sys

import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def smoke_argv(out, store, *extra) -> list:
    "The command line of `tpv reproduce --profile smoke` into `out` on `store` (the integration tests' run)."
    return [str(BIN/"tpv"), "reproduce", "--profile", "smoke", "--out", str(out), "--store", str(store), *map(str, extra)]

@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    "A fresh, empty TPV_CACHE for one test."
    d = tmp_path/"cache"
    monkeypatch.setenv("TPV_CACHE", str(d))
    return d


@functools.lru_cache(maxsize=None)
def _registry_answers(package: str) -> str:
    "'' if the package registry lists `package`, else pip's reason."
    try:
        r = subprocess.run([sys.executable, "-m", "pip", "index", "versions", package, "--timeout", "15", "--retries", "0",
                            "--disable-pip-version-check"], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired: return "pip timed out"
    return "" if r.returncode == 0 else ((r.stderr or r.stdout).strip().splitlines() or ["pip failed"])[-1]


def needs_registry(*packages: str):
    "Skip the calling test, saying why, when the package registry cannot give it `packages` (an offline machine)."
    for p in packages:
        if why := _registry_answers(p): pytest.skip(f"no package registry: {p} cannot be fetched ({why})")
