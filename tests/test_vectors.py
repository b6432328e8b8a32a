"Task prompt vectors and their arithmetic, on a tiny model."
import numpy as np, pytest, torch
from peft.utils import merge_utils
from tpv.arithmetic import LAMBDAS, add_tasks, combine, search_lambda, search_task_lambdas
from tpv.models import load_lm
from tpv.prompts import make_origins
from tpv.tasks import load_split
from tpv.engine import ReadSpec
from tpv.tuning import TuneConfig, tune
from tpv.vectors import (TaskPromptVector, VectorError, cosine, cross_origin_similarity, load_vector, save_vector,
                         similarity_matrix)

TOY = {t: load_split(t, "train").head(16) for t in ("rt_polarity", "tweets_polarity")}
CFG = TuneConfig(lr=0.3, warmup_steps=0, batch_size=8, max_steps=20, eval_every=20, reading=ReadSpec(style="t5"))


@pytest.fixture(scope="module")
def setup():
    lm = load_lm("tiny-llama")
    origins = make_origins(lm, 2, 6)
    tuned = {(t, o.meta["origin"]): tune(lm, t, o, CFG, train=d, validation=d, progress=False).prompt
             for t, d in TOY.items() for o in origins}
    return lm, origins, tuned


def test_from_real_tuned_prompts_and_apply_back_exactly(setup):
    lm, origins, tuned = setup
    p = tuned["rt_polarity", "origin_0"]
    v = TaskPromptVector.from_prompts(p, origins[0])
    assert v.tasks == ("rt_polarity",) and v.origin == "origin_0" and v.tensor.dtype == torch.float64
    assert torch.equal(v.apply_to(origins[0], 1).tensor, p.tensor)  # exact, not approximately


def test_algebra_identities(setup):
    lm, origins, tuned = setup
    a = TaskPromptVector.from_prompts(tuned["rt_polarity", "origin_0"], origins[0])
    b = TaskPromptVector.from_prompts(tuned["tweets_polarity", "origin_0"], origins[0])
    assert torch.allclose((a + b - b).tensor, a.tensor, atol=1e-12)
    assert torch.equal(sum([a, b]).tensor, (a + b).tensor) and torch.equal((-a).tensor, -a.tensor)
    assert torch.allclose((2 * a).tensor, (a + a).tensor) and (a + b).tasks == ("rt_polarity", "tweets_polarity")
    ab = (a + b).apply_to(origins[0], 0.5)
    assert torch.allclose(ab.tensor.double(), origins[0].tensor.double() + 0.5 * (a.tensor + b.tensor), atol=1e-6)


def test_refusals(setup):
    lm, origins, tuned = setup
    a = TaskPromptVector.from_prompts(tuned["rt_polarity", "origin_0"], origins[0])
    with pytest.raises(VectorError, match="different models"): a + TaskPromptVector(a.tensor, ("x",), "other-model")
    with pytest.raises(VectorError, match="different widths"): a + TaskPromptVector(torch.zeros(6, 32), ("x",), a.model)
    with pytest.raises(VectorError, match="different row counts"): a + TaskPromptVector(torch.zeros(7, 64), ("x",), a.model)
    with pytest.raises(VectorError, match="not from this origin"): TaskPromptVector.from_prompts(tuned["rt_polarity", "origin_0"], origins[1])
    with pytest.raises(VectorError, match="strict=False"): a.apply_to(origins[1], strict=True)
    with pytest.raises(VectorError, match="NaN or inf"): TaskPromptVector(torch.tensor([[float("nan")]]), ("x",), "m")


def test_cross_origin_is_allowed_and_recorded(setup):
    lm, origins, tuned = setup
    a1 = TaskPromptVector.from_prompts(tuned["rt_polarity", "origin_1"], origins[1])
    moved = a1.apply_to(origins[0])
    assert moved.meta["cross_origin"] and moved.meta["vector_origin"] == "origin_1" and moved.meta["origin"] == "origin_0"
    a0 = TaskPromptVector.from_prompts(tuned["rt_polarity", "origin_0"], origins[0])
    assert (a0 + a1).origin == "mixed"


def test_save_load_roundtrip(setup, tmp_path):
    lm, origins, tuned = setup
    a = TaskPromptVector.from_prompts(tuned["rt_polarity", "origin_0"], origins[0])
    b = load_vector(save_vector(a, tmp_path/"v"))
    assert torch.equal(a.tensor, b.tensor) and (b.tasks, b.origin_hash, b.model) == (a.tasks, a.origin_hash, a.model)
    with pytest.raises(VectorError, match="not a saved task prompt vector"): load_vector(tmp_path)


def test_similarity_definitions(setup):
    lm, origins, tuned = setup
    vecs = {k: TaskPromptVector.from_prompts(p, origins[int(k[1][-1])]) for k, p in tuned.items()}
    x, y = vecs["rt_polarity", "origin_0"].tensor, vecs["tweets_polarity", "origin_1"].tensor
    assert cosine(x, y, "flat") == pytest.approx(float(x.flatten() @ y.flatten() / x.norm() / y.norm()), abs=1e-6)
    assert cosine(x, y, "mean") == pytest.approx(float(torch.nn.functional.cosine_similarity(x.mean(0), y.mean(0), dim=0)), abs=1e-6)
    m, s = cross_origin_similarity(vecs, "flat")
    # the diagonal leaves out o1 = o2: same task, different origins only
    expect = np.mean([cosine(vecs["rt_polarity", "origin_0"], vecs["rt_polarity", "origin_1"]),
                      cosine(vecs["rt_polarity", "origin_1"], vecs["rt_polarity", "origin_0"])])
    assert m.loc["rt_polarity", "rt_polarity"] == pytest.approx(expect)
    assert similarity_matrix(vecs, "origin_1").shape == (2, 2)


def test_lambda_search_returns_the_argmax():
    for target in (0.0, 0.35, 0.8, 1.0):
        lam, curve = search_lambda(lambda l: 1 - abs(l - target))
        assert lam == target and len(curve) == len(LAMBDAS) == 21
    lams, best, _ = search_task_lambdas(lambda ls: -abs(ls[0] - 0.5) - abs(ls[1] - 0.0) - abs(ls[2] - 1.0), 3)
    assert lams == (0.5, 0.0, 1.0)


@pytest.mark.parametrize("method,fn", [("ties", merge_utils.ties), ("dare_linear", merge_utils.dare_linear),
                                       ("dare_ties", merge_utils.dare_ties), ("magnitude_prune", merge_utils.magnitude_prune)])
def test_merges_equal_peft(setup, method, fn):
    lm, origins, tuned = setup
    vs = [TaskPromptVector.from_prompts(tuned[t, "origin_0"], origins[0]) for t in TOY]
    w = [0.7, 0.4]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3); ref = fn([v.tensor for v in vs], torch.tensor(w), 0.4)
    assert torch.equal(combine(vs, method, weights=w, density=0.4, **({"seed": 3} if "dare" in method else {})).tensor, ref)


def test_add_tasks_end_to_end(setup, monkeypatch):
    lm, origins, tuned = setup
    import tpv.tasks as T
    vs = [TaskPromptVector.from_prompts(tuned[t, "origin_0"], origins[0]) for t in TOY]
    r = add_tasks(lm, origins[0], vs, lambdas=(0.0, 0.5, 1.0), n_validation=20, n_test=20, spec="t5")
    assert r.lam in (0.0, 0.5, 1.0) and set(r.test) == set(TOY) and len(r.curve) == 3
    assert r.curve.loc[r.curve["lambda"] == r.lam, "mean"].item() == r.curve["mean"].max()
