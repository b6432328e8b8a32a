"Initialization strategies and the few-shot protocol, end to end on tiny models (causal and seq2seq)."
import numpy as np, pandas as pd, pytest, torch
from tpv.initialization import (AttemptPrompt, InitError, MptPrompt, Sources, build_sources, few_shot_config, few_shot_run,
                                init_names, init_prompt, summarize)
from tpv.models import load_lm
from tpv.prompts import SoftPrompt, make_origins
from tpv.tasks import few_shot, load_split
from tpv.engine import ReadSpec
from tpv.tuning import TuneConfig

SRC, TGT = ["rt_polarity", "amazon_polarity"], "tweets_polarity"
DATA = {t: load_split(t, "train").head(12) for t in SRC}
CFG = TuneConfig(lr=0.3, warmup_steps=0, batch_size=4, max_steps=4, eval_every=2, reading=ReadSpec(style="t5"))
FCFG = few_shot_config(4, max_steps=3, warmup_steps=0, eval_every=3, n_validation=8, reading=ReadSpec(style="t5"))


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-t5"])
def setup(request):
    lm = load_lm(request.param)
    origins = make_origins(lm, 2, 6)
    return lm, [build_sources(lm, SRC, o, CFG, train=DATA, validation=DATA, progress=False) for o in origins]


def test_every_init_runs_the_protocol(setup):
    lm, sources = setup
    rows = []
    for s in sources:
        for name in init_names(s):
            for shots in (0, 4):
                r = few_shot_run(lm, TGT, name, shots, FCFG, s, n_test=12, progress=False)
                assert r.row["n"] == 12 and r.row["init"] == name and len(r.row["preds"]) == 12
                assert r.row["accuracy"] == pytest.approx(np.mean(np.array(r.row["preds"]) == np.array(r.row["labels"])))
                assert r.row["origin"] == s.origin.meta["origin"] and r.row["config"]["max_steps"] == 3
                if name == "attempt": assert r.prompt is None and isinstance(r.module, AttemptPrompt)
                else: assert isinstance(r.prompt, SoftPrompt) and r.prompt.tensor.shape == s.origin.tensor.shape
                if shots == 0 and name not in ("attempt", "mpt"):  # 0 shots: the init itself, untouched
                    assert torch.equal(r.prompt.tensor, init_prompt(name, s).tensor)
                rows.append(r.row)
    df = pd.DataFrame(rows)
    assert df.loc[df.shots > 0, "train_fingerprint"].nunique() == 1  # one n-shot sample for every init and origin
    table = summarize(rows, "accuracy")
    assert list(table.index) == init_names(sources[0]) and list(table.columns) == [0, 4]


def test_spot_multi_is_multi_task_and_mpt_starts_there(setup):
    lm, sources = setup
    s = sources[0]
    assert s.multi.meta["tasks"] == SRC and s.multi.meta["init_hash"] == s.origin.hash
    m = init_prompt("mpt", s)
    assert isinstance(m, MptPrompt) and torch.equal(m.prompt().detach(), s.multi.tensor)


def test_tpv_weighted_uses_the_searched_lambdas(setup):
    lm, sources = setup
    s = sources[1]
    ta, tb = s.vectors
    la, lb = s.lambdas
    assert {la, lb} <= {0.0, 0.25, 0.5, 0.75, 1.0}
    w = init_prompt("tpv_weighted", s)
    assert torch.equal(w.tensor, (ta * la + tb * lb).apply_to(s.origin).tensor)
    h = s.history["lambda_search"]
    assert len(h) == 9  # one round of coordinate ascent over 2 λs on a 5-point grid: the start, then 4 new values per λ
    assert s.history["lambda_score"] == h["score"].max() and tuple(h.loc[h["score"].idxmax(), "lambdas"]) == (la, lb)


def test_clear_errors(setup):
    lm, sources = setup
    s = sources[0]
    with pytest.raises(InitError, match="Unknown init"): init_prompt("tpv_mean", s)
    with pytest.raises(InitError, match="lambdas=True"): init_prompt("tpv_weighted", Sources(s.origin, s.prompts))
    with pytest.raises(InitError, match="multi=True"): init_prompt("mpt", Sources(s.origin, s.prompts))
    with pytest.raises(InitError, match="negative"): few_shot_run(lm, TGT, "random", -1, FCFG, s)
    with pytest.raises(InitError, match="does not match the origin"):
        Sources(s.origin, {"rt_polarity": SoftPrompt(torch.zeros(3, s.origin.width), s.origin.model, s.origin.kind)})


def test_few_shot_sample_is_stratified_and_stable():
    a, b = few_shot(TGT, 10), few_shot(TGT, 10)
    pd.testing.assert_frame_equal(a, b)
    share = load_split(TGT, "train")["label"].value_counts(normalize=True)  # stratified: the train split's label shares
    assert (a["label"].value_counts().reindex(share.index) - 10 * share).abs().max() <= 1
    assert few_shot_config(10).batch_size == 2 and few_shot_config(100).batch_size == 8 and few_shot_config(1000).batch_size == 16
    assert few_shot_config(10).max_steps == 1000 and few_shot_config(10).n_validation == 250
