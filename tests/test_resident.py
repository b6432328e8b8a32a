"""Weights held in bf16 (`tpv.models.hold_bf16`) against autocast's per-op casts and against the fp32 reference, on the
engine's own paths: target log-probabilities, label-word scores of K prompts, the gradient into a prompt, a tuned
prompt. Against the casts the bits must be the same (the same rounding, the same products); against fp32 the results
must agree within bf16's rounding, with the tolerances stated here."""
import numpy as np, pytest, torch
from tpv.engine import ReadSpec, collate, encode, score_choices, target_logprobs
from tpv.models import load_lm
from tpv.prompts import make_origins
from tpv.tasks import load_split
from tpv.tuning import TuneConfig, tune

TOY = load_split("rt_polarity", "train").head(16)
FORMS = ("held", "cast", "fp32")


def _load(name, form):
    return load_lm(name, bf16=form != "fp32", resident=form == "held")


def _lp_grad(lm, prompt):
    enc = encode(lm, "rt_polarity", TOY, "t5")
    b = collate(lm, list(zip(enc.src[:8], enc.tgt[:8])))
    p = prompt.clone().requires_grad_()
    lp = target_logprobs(lm, p, b, shared_prefix=lm.kind == "causal")
    (-lp.sum()).backward()
    return lp.detach(), p.grad


def _agree(held, ref, rel=0.02):
    "Within `rel` of the reference's size, everywhere."
    held, ref = torch.as_tensor(held), torch.as_tensor(ref)
    return float((held - ref).abs().max()) <= rel * float(ref.abs().max())


def _cos(a, b): return float(torch.cosine_similarity(a.flatten(), b.flatten(), 0))


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-t5", "smollm2-135m-instruct"])
def test_logprobs_and_gradients(name):
    lms = {f: _load(name, f) for f in FORMS}
    assert lms["held"].resident and not lms["cast"].resident and not lms["fp32"].bf16
    prompt = make_origins(lms["fp32"], 1, 8)[0].tensor
    (lp_h, g_h), (lp_c, g_c), (lp_r, g_r) = (_lp_grad(lms[f], prompt) for f in FORMS)
    assert torch.equal(lp_h, lp_c) and torch.equal(g_h, g_c)  # the same bits as autocast's casts
    # fp32: log-probabilities within 2% of their size, the gradient pointing the same way
    assert _agree(lp_h, lp_r) and _cos(g_h, g_r) > 0.99, (float((lp_h - lp_r).abs().max()), _cos(g_h, g_r))


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-t5"])
def test_k_prompt_scores(name):
    lms = {f: _load(name, f) for f in FORMS}
    prompts = [o.tensor for o in make_origins(lms["fp32"], 3, 8)]
    sc = {f: score_choices(lms[f], prompts, encode(lms[f], "rt_polarity", TOY, "t5"), batch_size=8) for f in FORMS}
    assert np.array_equal(sc["held"], sc["cast"])
    assert _agree(sc["held"], sc["fp32"]), float(np.abs(sc["held"] - sc["fp32"]).max())


def test_tuned_prompts():
    """Ten steps of tuning: the same prompt as with per-op casts; against fp32, a vector pointing the same way and nearer
    to the fp32 run's than a second fp32 run on another batch order is (bf16's rounding is smaller than the data's
    noise). At lr 0.03: at 0.3 after ten steps Adam's sign-driven updates make any two trajectories part faster."""
    def cfg(seed): return TuneConfig(lr=0.03, warmup_steps=0, batch_size=8, max_steps=10, eval_every=10,
                                     reading=ReadSpec(style="t5"), seed=seed)
    lms = {f: _load("tiny-llama", f) for f in FORMS}
    origin = make_origins(lms["fp32"], 1, 8)[0]
    def tau(lm, seed=0):
        return tune(lm, "rt_polarity", origin, cfg(seed), train=TOY, validation=TOY.head(8),
                    progress=False).prompt.tensor - origin.tensor
    t = {f: tau(lms[f]) for f in FORMS}
    other = tau(lms["fp32"], seed=1)
    assert torch.equal(t["held"], t["cast"])
    near, noise = float((t["held"] - t["fp32"]).norm()), float((other - t["fp32"]).norm())
    assert _cos(t["held"], t["fp32"]) > 0.97 and near < noise / 3, (_cos(t["held"], t["fp32"]), near, noise)
