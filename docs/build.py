"""`make docs`: the notebooks as they are stored (nothing is re-run) and the repository's result pages, built into a
static site by Sphinx with myst-nb, offline. nbdev's own notebook processing (the processors `nbdev_preview` would
run before Quarto) adds the API docs of every exported name beside the prose that defines it.

    python docs/build.py [--out _site]

The build fails on a broken cross-reference, a missing image or a notebook that docs/nav.yml leaves out.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHOW_DOC = re.compile(r"^\s*show_doc\(")
NBDEV_LINK = re.compile(r"https://[\w.-]+\.github\.io/[\w.-]+/([\w-]+)\.html(?:#([\w.\-]+))?")
SOURCE_ATTRS = re.compile(r"\)\{target=\"_blank\"[^}]*\}")
MD_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


class DocsError(Exception):
    "The site cannot be built as asked: one line says why."


def read_nav(root):
    "docs/nav.yml as {section: [page path relative to the repository]}, each page checked to exist."
    nav = yaml.safe_load((root/"docs"/"nav.yml").read_text())
    pages = {"Concepts": [f"nbs/{n}.ipynb" for n in nav.get("Concepts", [])],
             "Experiments": [f"nbs/experiments/{n}.ipynb" for n in nav.get("Experiments", [])],
             "Results": list(nav.get("Results", []))}
    for path in (p for ps in pages.values() for p in ps):
        if not (root/path).is_file():
            raise DocsError(f"docs/nav.yml lists {path}, which does not exist")
    return pages


def check_nav(root, pages):
    "Every notebook under nbs/ is in the navigation (the index is the home page)."
    listed = {p for ps in pages.values() for p in ps} | {"nbs/index.ipynb"}
    for nb in sorted(root.glob("nbs/**/*.ipynb")):
        rel = nb.relative_to(root).as_posix()
        if ".ipynb_checkpoints" not in rel and rel not in listed:
            raise DocsError(f"{rel} is not in the site's navigation: add it to docs/nav.yml")


def shown(nb_path, root):
    "The notebook a page shows: an experiment's executed copy from paper_figures/notebooks when there is one."
    if nb_path.parent.name != "experiments":
        return nb_path
    run = root/"paper_figures"/"notebooks"/f"{nb_path.stem}_cpu.ipynb"
    return run if run.is_file() else nb_path


def process(pairs, root):
    "Run nbdev's doc processors (show_doc for each export, hidden cells removed, backticked names linked) on each."
    script = ("import sys, json\n"
              "from pathlib import Path\n"
              "from nbdev.serve_drv import exec_nb\n"
              "from nbdev_docs import DocFilters\n"
              "for s, d in json.loads(sys.argv[1]): exec_nb(Path(s), Path(d), DocFilters)\n")
    todo = [(str(s), str(d)) for s, d in pairs]
    env = os.environ | {"PYTHONWARNINGS": "ignore", "PYTHONPATH": os.pathsep.join([str(ROOT/"docs"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", script, json.dumps(todo)], cwd=root, env=env, check=True)


def frontmatter(cell):
    "nbdev's raw front matter (title, description) as the page's heading and lead."
    meta = yaml.safe_load("".join(cell["source"]).strip().strip("-")) or {}
    lead = f"\n\n> {meta['description']}" if meta.get("description") else ""
    return {"cell_type": "markdown", "metadata": {}, "source": f"# {meta.get('title', '')}{lead}"}


def api_cell(cell, page):
    "A show_doc cell's rendered Markdown as a Markdown cell with a target per name (None: nothing of its own to say)."
    text = "".join(o["data"]["text/markdown"] if isinstance(o["data"]["text/markdown"], str)
                   else "".join(o["data"]["text/markdown"]) for o in cell.get("outputs", []) if "text/markdown" in o.get("data", {}))
    if not text or "*Call self as a function.*" in text:
        return None
    text = SOURCE_ATTRS.sub(")", text).lstrip()
    text = text[3:].lstrip() if text.startswith("---") else text  # nbdev's rule above each entry: a page may not start with one
    source = re.search(r"^\[source\]\([^)]*\)\n", text, flags=re.MULTILINE)
    text = text.replace(source[0], "") if source else text
    text = re.sub(r"```python\n+", "```python\n", re.sub(r"\n+```", "\n```", text))  # no blank lines around the signature
    def heading(m):  # a target for links to the name, the name as it is spelled (not __add__ as bold), its source
        name = m[1].replace("_", "\\_")
        return f"({label(page, m[1].lower())})=\n### {name}\n\n{source[0] if source else ''}"
    text = re.sub(r"^### (\S+)$", heading, text, flags=re.MULTILINE)
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def label(page, anchor):
    "The cross-reference target of an exported name: nbdev's page and anchor for it, as one Sphinx label."
    return f"api-{page}-{anchor}"


def relink(text, here, pages, known):
    "nbdev's links to its own site (page.html#anchor) as links inside this one (to the page where the name has no"
    " entry of its own); every other link as it is."
    def one(m):
        page, anchor = m[1], m[2]
        if page not in pages:
            return m[0]
        if anchor and label(page, anchor) in known:
            return f"#{label(page, anchor)}"
        return os.path.relpath(pages[page], here.parent).replace(os.sep, "/")
    return NBDEV_LINK.sub(one, text)


def tidy(nb, doc, pages):
    "A processed notebook as the page `doc` shows: front matter as its title, API docs as Markdown cells."
    out = []
    page = next((k for k, v in pages.items() if v == doc), doc.stem)
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "raw" and src.lstrip().startswith("---"):
            cell = frontmatter(cell)
        elif cell["cell_type"] == "markdown" and "THIS FILE WAS AUTOGENERATED" in src:
            continue
        elif cell["cell_type"] == "code" and SHOW_DOC.search(src.split("\n")[-1]):
            cell = api_cell(cell, page)
            if cell is None:
                continue
        out.append(cell)
    nb["cells"] = out
    return nb


def relink_nb(nb, doc, pages, known):
    "Every Markdown cell of a tidied page with its links inside the site."
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = relink("".join(cell["source"]), doc, pages, known)
    return nb


def output_file(nb):
    "The page name nbdev gives a processed notebook (its front matter's output-file, without .html)."
    raw = next((c for c in nb["cells"] if c["cell_type"] == "raw"), None)
    meta = yaml.safe_load("".join(raw["source"]).strip().strip("-")) if raw else {}
    return Path((meta or {}).get("output-file", "")).stem


def copy_page(root, rel, src):
    "A Markdown page of the repository into the site, with the local files it links to (outside links left to fail)."
    dst = src/rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    text = (root/rel).read_text()
    dst.write_text(text)
    for m in MD_LINK.finditer(text):
        target = m[3].split("#")[0]
        if not target or re.match(r"^[a-z]+:", target):
            continue
        path = (root/rel).parent/target
        inside = path.resolve().is_relative_to(root.resolve())
        if inside and path.is_file() and not (dst.parent/target).exists():
            (dst.parent/target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst.parent/target)


def toctree(caption, docs):
    "A hidden toctree: the sidebar's section `caption`."
    lines = "\n".join(Path(d).with_suffix("").as_posix() for d in docs)
    return f"```{{toctree}}\n:caption: {caption}\n:hidden:\n\n{lines}\n```"


def api_page(labels):
    "The API reference: every documented name, by the page that defines it, with its docstring."
    lead = ("Every name tpv exports, with its docstring. Each links to its full documentation "
            "(signature, parameters as docments, docstring) beside the prose of the notebook that defines it.")
    parts = ["# API reference", "", lead, ""]
    for doc, (title, names) in labels.items():
        parts += [f"## {title}", "", f"In [{Path(doc).stem}]({doc}).", "", "| name | what it is |", "|---|---|"]
        parts += [f"| [`{name}`](#{target}) | {cell_text(first)} |" for name, target, first in names]
        parts.append("")
    return "\n".join(parts)


def title_of(nb):
    "A tidied page's title (its first heading)."
    first = next((c for c in nb["cells"] if c["cell_type"] == "markdown"), None)
    found = re.match(r"# (.+)", "".join(first["source"])) if first else None
    return found[1] if found else ""


def cell_text(text):
    "Text safe inside a Markdown table cell."
    return text.replace("|", "\\|")


def labels_of(nb):
    "The (name, label, docstring) of each API entry in a tidied page."
    found = []
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if cell["cell_type"] == "markdown" else ""
        for m in re.finditer(r"^\((api-[^)]+)\)=\n### (\S+)\n(.*?)(?=^\(api-|\Z)", src, flags=re.MULTILINE | re.DOTALL):
            doc = re.search(r"^\*(.+?)\*$", m[3], flags=re.MULTILINE | re.DOTALL)  # the docstring, in italics
            found.append((m[2].replace("\\_", "_"), m[1], " ".join(doc[1].split()) if doc else ""))
    return found


def lay_out(root, src):
    "The site's sources under `src`: tidied notebooks, the result pages, the API reference, the home page's menus."
    nav = read_nav(root)
    check_nav(root, nav)
    docs = {"nbs/index.ipynb": Path("index.ipynb")}
    docs |= {p: Path(Path(p).name) for p in nav["Concepts"]} | {p: Path("experiments")/Path(p).name for p in nav["Experiments"]}
    raw = src.parent/(src.name + "_nbdev")
    pairs = [(shown(root/p, root), raw/d) for p, d in docs.items()]
    for _, d in pairs:
        d.parent.mkdir(parents=True, exist_ok=True)
    process(pairs, root)
    nbs = {d: json.loads((raw/d).read_text()) for d in docs.values()}
    pages = {output_file(nb): d for d, nb in nbs.items()}
    nbs = {d: tidy(nb, d, pages) for d, nb in nbs.items()}
    labels = {d: labels_of(nb) for d, nb in nbs.items()}
    known = {t for v in labels.values() for _, t, _ in v}
    for d, nb in nbs.items():
        nb = relink_nb(nb, d, pages, known)
        if d.name == "index.ipynb":
            menus = [toctree(k, [docs[p] for p in nav[k]]) for k in ("Concepts", "Experiments")]
            menus += [toctree("Results", nav["Results"]), toctree("Reference", ["api.md"])]
            nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "\n\n".join(menus)})
        (src/d).parent.mkdir(parents=True, exist_ok=True)
        (src/d).write_text(json.dumps(nb, indent=1, ensure_ascii=False))
    for rel in nav["Results"]:
        copy_page(root, rel, src)
    titles = {d: title_of(nb) for d, nb in nbs.items()}
    (src/"api.md").write_text(api_page({d.as_posix(): (titles[d], v) for d, v in labels.items() if v}))


def build(root=ROOT, out=None, work=None):
    "Lay out the sources and run Sphinx on them; warnings are errors. Returns the site folder."
    root = Path(root)
    out = Path(out or root/"_site")
    work = Path(work or root/"build"/"docs")
    check_out(out)
    shutil.rmtree(work, ignore_errors=True)
    src = work/"src"
    src.mkdir(parents=True)
    lay_out(root, src)
    html = work/"html"  # myst-nb writes beside Sphinx's output folder: both stay under `work`
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(ROOT/"docs"), "-W", "--keep-going", "-q", "-E",
           str(src), str(html)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise DocsError("the site did not build:\n" + (done.stderr or done.stdout).strip())
    shutil.rmtree(out, ignore_errors=True)
    shutil.move(html, out)
    return out


def check_out(out):
    "The site's folder may be replaced only if it is absent, empty, or a site this build made (Sphinx's .buildinfo)."
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out/".buildinfo").is_file())):
        raise DocsError(f"{out} exists and is not a site `make docs` built: remove it or choose another --out")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT/"_site"), help="the site's folder (default: _site)")
    args = ap.parse_args(argv)
    try:
        site = build(ROOT, args.out)
    except DocsError as e:
        print(f"make docs: {e}", file=sys.stderr)
        return 1
    print(f"make docs: the site is in {site}; open it with `python -m http.server -d {site}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
