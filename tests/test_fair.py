"The fair-test machinery on cases whose answer is known: selection by a validation metric, metrics of a collapsed predictor, the sanity gate, and the bootstrap intervals."
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from tpv.engine import ReadSpec
from tpv.evaluation import compute_metrics
from tpv.experiments import Experiment, units
from tpv.profiles import get_profile
from tpv.models import load_lm
from tpv.prompts import make_origins
from tpv.stats import compare, learned, verdict
from tpv.stats import _per_run
from tpv.tasks import load_split
from tpv.tuning import TuneConfig, tune


@pytest.fixture(scope="module")
def tiny():
    return load_lm("tiny-llama")


@pytest.mark.parametrize("select", ["accuracy", "macro_f1"])
def test_selection_keeps_the_best_validation_metric(tiny, select):
    "The kept state is the history's best validation metric, the lowest loss among equals; the paper's rule keeps the lowest loss."
    cfg = TuneConfig(lr=0.3, warmup_steps=0, batch_size=8, max_steps=40, eval_every=5, n_validation=16, reading=ReadSpec(style="t5"))
    train = load_split("rt_polarity", "train").sample(16, random_state=0)
    o = make_origins(tiny, 1, 8)[0]
    r = tune(tiny, "rt_polarity", o, TuneConfig(**{**cfg.__dict__, "select": select}), train=train, progress=False)
    h = pd.DataFrame(r.history)
    h = h[h.step > 0]
    want = h.sort_values([f"val_{select}", "val_loss"], ascending=[False, True]).step.iloc[0]
    assert r.best_step == want
    paper = tune(tiny, "rt_polarity", o, cfg, train=train, progress=False)
    assert paper.best_step == h.sort_values("val_loss").step.iloc[0]
    assert r.best_step != paper.best_step  # on this run the two rules disagree: accuracy peaks early, the loss keeps falling


def test_a_collapsed_predictor_scores_one_class_worth_of_macro_f1():
    y = np.r_[np.ones(69, int), np.zeros(31, int)]
    m = compute_metrics("tweets_polarity", np.ones(100, int), y)
    assert m["f1"] == pytest.approx(0.8166, abs=1e-3) and m["macro_f1"] == pytest.approx(0.4083, abs=1e-3)
    W = np.ones((1, 100), np.float32)
    assert _per_run(np.ones((1, 100), int), y, W, 2, "macro_f1")[0, 0] == pytest.approx(m["macro_f1"], abs=1e-6)
    rng = np.random.default_rng(0)
    p = rng.integers(0, 3, (4, 100))
    y3 = rng.integers(0, 3, 100)
    ours = _per_run(p, y3, W, 3, "macro_f1")[0]
    assert ours == pytest.approx([f1_score(y3, q, average="macro") for q in p], abs=1e-6)


def test_the_sanity_gate_refuses_collapsed_and_untrained_prompts(tmp_path):
    "Experiment.gate: a one-class predictor with majority accuracy does not count as learned; a predictor right 85% of the time does."
    ex = Experiment("t", get_profile("test", {"tune.max_steps": 2, "tune.eval_every": 2, "tune.batch_size": 2, "tune.lr": 0.1}), tmp_path/"s", tmp_path/"o")
    rng = np.random.default_rng(1)
    y = [1] * 140 + [0] * 60
    res = lambda preds: [{"preds": list(p), "labels": y} for p in preds]
    coin = res(rng.integers(0, 2, (5, 200)))
    assert not ex.gate("rt_polarity", res(np.ones((5, 200), int)), coin)["learned"]
    assert not ex.gate("rt_polarity", coin, coin)["learned"]
    good = np.where(rng.random((5, 200)) < 0.85, y, 1 - np.array(y))
    g = ex.gate("rt_polarity", res(good), coin)
    assert g["learned"] and ex.gates["rt_polarity"]["one-class runs"] == "0%"
    assert units(res(good)).shape == (5, 1, 200)


def test_bootstrap_intervals_cover_the_truth_at_about_their_level():
    "Over 200 simulated test sets of a predictor with true accuracy 0.7, the 95% interval holds 0.7 in 88–99% of them."
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    hits = 0
    for k in range(200):
        preds = np.where(rng.random(300) < 0.7, y, 1 - y)[None, None]
        ci = compare({"a": preds}, y, 2, lambda m: m["a"], metric="accuracy", n_boot=400, seed=k)
        hits += ci["lo"] <= 0.7 <= ci["hi"]
    assert 0.88 <= hits / 200 <= 0.99, hits


def test_a_paired_difference_is_narrower_than_the_scores_it_compares():
    "Two conditions that share their errors: the interval of their difference is far narrower than either score's."
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    base = np.where(rng.random((5, 1, 200)) < 0.75, y, 1 - y)
    better = base.copy()
    better[..., :20] = y[:20]  # right on 20 more examples at most
    d = compare({"a": better, "b": base}, y, 2, lambda m: m["a"] - m["b"], metric="accuracy")
    a = compare({"a": better}, y, 2, lambda m: m["a"], metric="accuracy")
    assert d["hi"] - d["lo"] < 0.5 * (a["hi"] - a["lo"]) and d["lo"] > 0
    assert verdict(d, 0.0) == "supported"
