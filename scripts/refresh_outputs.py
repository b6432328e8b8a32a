"""Re-execute a notebook's fast cells (those `nbdev_test` runs) and store their fresh outputs; `#| slow` cells keep the outputs
they have (re-run them on purpose: they run the real model). With --all, every cell runs and is stored.

Usage: .venv/bin/python scripts/refresh_outputs.py [--all] NOTEBOOK...   then `nbdev_clean` and `python .ci/check_outputs.py --fix`."""
import copy, re, sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

SKIP = re.compile(r"^#\|\s*(slow|eval:\s*false)", re.M)  # the cells nbdev_test skips


def refresh(path: Path, run_all: bool = False) -> int:
    "Execute `path` in its own folder, as nbdev_test does; write the new outputs of the cells that ran. Returns how many were skipped."
    nb = nbformat.read(path, 4)
    work = copy.deepcopy(nb)
    skipped = {i for i, c in enumerate(work.cells) if c.cell_type == "code" and not run_all and SKIP.search(c.source)}
    for i in skipped: work.cells[i].source = "pass"
    NotebookClient(work, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    for i, (c, w) in enumerate(zip(nb.cells, work.cells)):
        if c.cell_type == "code" and i not in skipped: c.outputs, c.execution_count = w.outputs, None
    nbformat.write(nb, path)
    return len(skipped)


if __name__ == "__main__":
    args = sys.argv[1:]
    for p in [Path(a).resolve() for a in args if a != "--all"]:
        print(f"refreshed {p.name}; {refresh(p, '--all' in args)} slow cell(s) kept their outputs")
