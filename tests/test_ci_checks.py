"The sync/clean checks of .ci/run really fail when notebooks and library disagree (on a scratch copy)."
import shutil, subprocess, sys, json
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def scratch(tmp_path):
    d = tmp_path/"repo"
    d.mkdir()
    for f in ("settings.ini", "setup.py", "README.md"): shutil.copy(ROOT/f, d/f)
    for f in ("nbs", "tpv", ".ci"): shutil.copytree(ROOT/f, d/f, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    return d


def check(d):
    return subprocess.run(["bash", ".ci/check_sync", str(BIN)], cwd=d, capture_output=True, text=True, timeout=300)


def test_clean_copy_passes(scratch):
    r = check(scratch)
    assert r.returncode == 0, r.stderr


def test_library_edited_by_hand_fails(scratch):
    p = scratch/"tpv"/"models.py"
    p.write_text(p.read_text() + "\nHAND_EDIT = 1\n")
    r = check(scratch)
    assert r.returncode == 1 and "not in sync" in r.stderr and "models.py" in r.stderr


def test_notebook_changed_without_export_fails(scratch):
    p = scratch/"nbs"/"00_models.ipynb"
    nb = json.loads(p.read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith("#| export"))
    cell["source"] = "".join(cell["source"]) + "\nNEW_NAME = 1"
    p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    r = check(scratch)
    assert r.returncode == 1 and "not in sync" in r.stderr


def test_unclean_notebook_fails(scratch):
    p = scratch/"nbs"/"00_io.ipynb"
    nb = json.loads(p.read_text())
    nb["cells"][1]["execution_count"] = 7
    nb["cells"][1]["metadata"]["collapsed"] = True
    p.write_text(json.dumps(nb, indent=1))
    r = check(scratch)
    assert r.returncode == 1 and "not clean" in r.stderr and "00_io.ipynb" in r.stderr
