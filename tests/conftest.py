import os, pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    "A fresh, empty TPV_CACHE for one test."
    d = tmp_path/"cache"
    monkeypatch.setenv("TPV_CACHE", str(d))
    return d
