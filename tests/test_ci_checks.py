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


def test_a_test_that_needs_the_registry_is_skipped_with_its_reason_when_it_cannot_fetch():
    from conftest import needs_registry
    with pytest.raises(pytest.skip.Exception, match="no package registry: tpv-no-such-package-4f1c cannot be fetched"):
        needs_registry("tpv-no-such-package-4f1c")


def _nb_with_output(path, text, name="stdout"):
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "a1", "metadata": {}, "source": ["print(1)"],
                     "outputs": [{"name": name, "output_type": "stream", "text": [text]}]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


def outputs(*args):
    return subprocess.run([sys.executable, str(ROOT/".ci"/"check_outputs.py"), *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("text", ["saved to /home/alice/run/p\n", "cache: /root/.cache/tpv/models\n", "wrote /tmp/tmpab12/x.json\n",
                                  "/opt/venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning\n", f"{ROOT}/nbs/x\n"])
def test_output_check_fails_on_a_machine_path(tmp_path, text):
    r = outputs(_nb_with_output(tmp_path/"x.ipynb", text))
    assert r.returncode == 1 and "shows the machine path" in r.stderr, r.stderr


def test_output_check_passes_relative_paths_and_collapses_progress_bars(tmp_path):
    ok = _nb_with_output(tmp_path/"ok.ipynb", "saved to $TPV_CACHE/models/x and nbs/experiments\n")
    assert outputs(ok).returncode == 0
    bar = _nb_with_output(tmp_path/"bar.ipynb", "tune:  10%|#  | 1/10\rtune: 100%|###| 10/10\ndone\n", "stderr")
    r = outputs(bar)
    assert r.returncode == 1 and "progress bar" in r.stderr
    assert outputs("--fix", bar).returncode == 0
    assert json.loads(bar.read_text())["cells"][0]["outputs"][0]["text"] == ["tune: 100%|###| 10/10\n", "done\n"]
    assert outputs(bar).returncode == 0


def lint(*nbs):
    return subprocess.run([sys.executable, str(ROOT/".ci"/"lint.py"), *map(str, nbs)], capture_output=True, text=True, timeout=300)


def test_lint_passes_on_the_notebooks():
    r = lint()
    assert r.returncode == 0 and "pass ruff" in r.stdout, r.stdout + r.stderr


def test_lint_names_the_cell_of_a_long_line_or_a_joined_statement(tmp_path):
    "Only export cells are the library: a long line in a test cell is not the lint's business; one in an export cell is, and so is `a; b`."
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": s} for s in
                    ("#| export\nx = 1; y = 2", "z = '" + "a" * 130 + "'", "#| export\nw = '" + "b" * 130 + "'")],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    p = tmp_path/"scratch.ipynb"
    p.write_text(json.dumps(nb))
    r = lint(p)
    assert r.returncode == 1, r.stdout
    found = r.stdout.splitlines()
    assert len(found) == 2 and "cell 1, line 2: E702" in found[0] and "cell 3, line 2: E501" in found[1], found
