"""Lint the exported code: every `#| export` cell of nbs/*.ipynb, checked by ruff for lines over 120 characters (E501) and
statements joined with `;` (E702, E703). The cells are linted, not tpv/*.py, because they are the source: nbdev's own generated
lines (the module docstring from a notebook's summary, `__all__`) are not ours to wrap. Exit status 1 with one line per finding,
naming the notebook, the cell and the line in it.

Usage: python .ci/lint.py [NOTEBOOK ...]   (default: nbs/*.ipynb)"""
import json, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES, WIDTH = "E501,E702,E703", 120


def export_cells(nb: Path) -> list:
    "(cell number, source) of every export cell of `nb`."
    cells = json.loads(nb.read_text())["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells, 1)
            if c["cell_type"] == "code" and "".join(c["source"]).startswith(("#| export", "#|export"))]


def lint(nbs: list) -> list:
    "One line per finding, e.g. `nbs/07_arithmetic.ipynb, cell 5, line 3: E501 Line too long (131 > 120)`."
    out = []
    with tempfile.TemporaryDirectory() as d:
        where = {}
        for nb in nbs:
            for i, src in export_cells(nb):
                f = Path(d)/f"{nb.stem}__{i}.py"
                f.write_text(src + "\n")
                where[f.name] = (nb, i)
        if not where: return out
        r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", RULES,
                            "--line-length", str(WIDTH), "--output-format", "json", d], capture_output=True, text=True)
        if r.returncode not in (0, 1): raise SystemExit(f"lint: ruff failed: {r.stderr.strip()}")
        for e in sorted(json.loads(r.stdout or "[]"), key=lambda e: (e["filename"], e["location"]["row"])):
            nb, i = where[Path(e["filename"]).name]
            name = nb.relative_to(ROOT) if nb.is_relative_to(ROOT) else nb
            out.append(f"{name}, cell {i}, line {e['location']['row']}: {e['code']} {e['message']}")
    return out


if __name__ == "__main__":
    nbs = [Path(a).resolve() for a in sys.argv[1:]] or sorted((ROOT/"nbs").glob("*.ipynb"))
    found = lint(nbs)
    print("\n".join(found) if found else f"lint: the export cells of {len(nbs)} notebooks pass ruff ({RULES}, {WIDTH} characters)")
    sys.exit(1 if found else 0)
