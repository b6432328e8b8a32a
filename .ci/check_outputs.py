"""Fail when a notebook's stored outputs show a machine path (a home, temp or cache folder, an installed environment, this
checkout's absolute path) or an uncollapsed progress bar. Readers see stored outputs without running anything; `/home/alice/...`
tells them nothing, and a progress bar stored as a hundred `\\r` fragments is noise.

Usage: python .ci/check_outputs.py [--fix] [NOTEBOOK_OR_FOLDER ...]   (default: nbs and paper_figures/notebooks, the
executed experiment notebooks that `tpv reproduce` writes with its placeholders <store>, <out>, <tpv notebooks>)
--fix collapses each progress bar to its final line; machine paths are fixed by re-running the cell, never by editing outputs."""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE = re.compile(r"(?<![\w.~])(?:/home/[^/\s'\"]+|/root(?=[/\s'\"]|$)|/Users/[^/\s'\"]+|/tmp/|/var/tmp/|/var/folders/|/private/var/|"
                     r"[A-Za-z]:\\\\Users\\\\|/[^\s'\"]*/(?:\.cache|site-packages|dist-packages)/)" + "|" + re.escape(str(ROOT)))


def _texts(cell):
    "Every piece of text a code cell's stored outputs show."
    for o in cell.get("outputs", []):
        if "text" in o: yield "".join(o["text"])
        for mime, v in o.get("data", {}).items():
            if mime.startswith("text/") or mime == "application/json": yield "".join(v) if isinstance(v, list) else str(v)
        if "traceback" in o: yield "\n".join(o["traceback"])


def collapse(text: str) -> str:
    "What a terminal shows for `text`: each line only after its last carriage return."
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def problems(path: Path, fix: bool = False) -> list:
    "(notebook, cell index, what is wrong) for `path`; with `fix`, progress bars are collapsed in place first."
    nb = json.loads(path.read_text(encoding="utf-8"))
    out, changed = [], False
    for i, c in enumerate(nb.get("cells", [])):
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream" and "\r" in "".join(o["text"]):
                if not fix: out.append((path, i, "a progress bar stored as \\r fragments (run with --fix)")); continue
                o["text"] = collapse("".join(o["text"])).splitlines(keepends=True); changed = True
        if fix and "outputs" in c:  # a bar that cleared itself (tqdm's leave=False) leaves nothing to show
            kept = [o for o in c["outputs"] if not (o.get("output_type") == "stream" and not "".join(o["text"]).strip())]
            changed |= len(kept) != len(c["outputs"]); c["outputs"] = kept
        for t in _texts(c):
            out += [(path, i, f"the machine path {m.group(0)!r}") for m in MACHINE.finditer(t)]
    if changed: path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def main(args: list) -> int:
    fix = "--fix" in args
    roots = [Path(a) for a in args if a != "--fix"] or [ROOT/"nbs", ROOT/"paper_figures"/"notebooks"]
    nbs = sorted(p for r in roots for p in ([r] if r.suffix == ".ipynb" else r.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts)
    found = [x for p in nbs for x in problems(p, fix)]
    for p, i, what in found: print(f"check_outputs: {p} cell {i} shows {what}", file=sys.stderr)
    if found:
        print("Re-run those cells so that they show paths relative to a named root (the cache, the store, the repository): "
              "scripts/refresh_outputs.py re-runs a notebook's fast cells.", file=sys.stderr)
        return 1
    print(f"check_outputs: {len(nbs)} notebooks, no machine paths or progress fragments in their stored outputs")
    return 0


if __name__ == "__main__": sys.exit(main(sys.argv[1:]))
