"""The single training loop against the code it replaced: on the per-row reference path (`shared_prefix=False`),
`tune` and `tune_many` give bit-identical prompts to the separate `tune` and `tune_many` loops of commit fc18fb0.
The hashes below were recorded by running those loops, before the refactor, on the same tiny models and settings."""
import hashlib
from dataclasses import replace

import pytest
import torch

from tpv.engine import ReadSpec
from tpv.models import load_lm
from tpv.prompts import make_origins
from tpv.tasks import load_split
from tpv.tuning import TuneConfig, tune, tune_many

GOLDEN = {  # scenario: (SHA-256[:16] of the float32 prompt, best step), from fc18fb0's tune / tune_many
    "causal_t5": ("aaae09f842c48364", 60),
    "causal_instruct": ("ad9f2b03293c2fa7", 20),
    "causal_multi": ("bd7253b9a68694e0", 20),
    "t5_splitFalse": ("a4f3317072cacbdd", 60),
    "t5_splitTrue": ("e74c889a32d789fb", 60),
    "many_0": ("76ec17e4805182ae", 12),
    "many_1": ("17f74d0ae8b45517", 12),
    "many_2": ("375fe75d35b380f3", 12),
    "many_es_0": ("2232bc153bd52b52", 12),
    "many_es_1": ("b97cd4c2a6b338f3", 1),
    "many_es_2": ("92f1f5919ec5bce7", 12),
    "keepFalse_tune": ("b1f12de3a1b4ca01", 4),
    "keepFalse_many": ("b1f12de3a1b4ca01", 4),
    "keepTrue_tune": ("cf95c0c2e61bd478", 0),
    "keepTrue_many": ("cf95c0c2e61bd478", 0),
}

def _h(t): return hashlib.sha256(t.detach().float().contiguous().numpy().tobytes()).hexdigest()[:16]

@pytest.fixture(scope="module")
def results():
    tiny, t5 = load_lm("tiny-llama"), load_lm("tiny-t5")
    toy, toy2 = load_split("rt_polarity", "train").head(16), load_split("tweets_polarity", "train").head(16)
    held = {t: load_split(t, "validation").head(16) for t in ("rt_polarity", "tweets_polarity")}
    cfg = TuneConfig(lr=0.3, warmup_steps=0, batch_size=8, max_steps=60, eval_every=20, reading=ReadSpec(style="t5"), shared_prefix=False)
    out = {}
    o = make_origins(tiny, 1, 8)[0]
    out["causal_t5"] = tune(tiny, "rt_polarity", o, cfg, train=toy, validation=toy, progress=False)
    out["causal_instruct"] = tune(tiny, "rt_polarity", o, replace(cfg, reading=ReadSpec(style="instruct"), max_steps=20), train=toy, validation=toy, progress=False)
    out["causal_multi"] = tune(tiny, ["rt_polarity", "tweets_polarity"], o, replace(cfg, max_steps=20, eval_every=10),
                               train=[toy, toy2], validation=[toy, toy2], progress=False)
    for split in (False, True):
        out[f"t5_split{split}"] = tune(t5, "rt_polarity", make_origins(t5, 1, 8)[0], replace(cfg, reading=ReadSpec(style="t5", peft_t5_split=split)),
                                       train=toy, validation=toy, progress=False)
    o2 = make_origins(tiny, 2, 8)
    jobs = [("rt_polarity", o2[0]), ("tweets_polarity", o2[0]), ("rt_polarity", o2[1])]
    data = {"rt_polarity": toy, "tweets_polarity": toy2}
    many_cfg = replace(cfg, max_steps=12, eval_every=4)
    for name, c, val in (("many", many_cfg, data), ("many_es", replace(many_cfg, lr=1.0, eval_every=1, early_stopping=1), held)):
        rs = tune_many(tiny, jobs, c, train=[data[t] for t, _ in jobs], validation=[val[t] for t, _ in jobs], progress=False)
        for i, r in enumerate(rs): out[f"{name}_{i}"] = r
    flipped = toy.assign(label=1 - toy.label)
    for keep in (False, True):
        c = replace(many_cfg, keep_init=keep)
        out[f"keep{keep}_tune"] = tune(tiny, "rt_polarity", o2[0], c, train=flipped, validation=toy, progress=False)
        out[f"keep{keep}_many"] = tune_many(tiny, [("rt_polarity", o2[0])], c, train=[flipped], validation=[toy], progress=False)[0]
    return out

@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_bit_identical_to_the_old_loops(results, name):
    r = results[name]
    assert (_h(r.prompt.tensor), r.best_step) == GOLDEN[name]
