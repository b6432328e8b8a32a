"""fp32 against bf16 autocast on SmolLM2 with the cpu profile's settings (rt_polarity, 40 steps, 200 test examples): how far the tuned
prompt and its test answers move with the precision. The numbers behind what `tpv verify`'s tolerance can and cannot promise.

Usage: .venv/bin/python scripts/precision_drift.py   (about 3 minutes on 2 CPU cores)"""
import time
import numpy as np
import torch
from tpv.models import load_lm
from tpv.prompts import make_origins
from tpv.engine import ReadSpec
from tpv.tuning import TuneConfig, tune
from tpv.evaluation import evaluate
cfg = TuneConfig(lr=0.01, warmup_steps=4, batch_size=8, max_steps=40, eval_every=40, n_validation=32, loss="label", select="macro_f1",
                 reading=ReadSpec(style="t5", max_length=64))
out = {}
for prec in ("fp32", "bf16"):
    lm = load_lm(bf16=prec == "bf16")
    o = make_origins(lm, 1, 20)[0]
    t0 = time.time(); r = tune(lm, "rt_polarity", o, cfg, progress=False)
    ev = evaluate(lm, r.prompt, "rt_polarity", n=200, progress=False)
    out[prec] = (o, r, ev); print(prec, "tuned in", round(time.time() - t0), "s; test macro-F1", round(ev["macro_f1"], 3), "best step", r.best_step, flush=True)
(o32, r32, e32), (o16, r16, e16) = out["fp32"], out["bf16"]
d = (r32.prompt.tensor - r16.prompt.tensor).abs().max() / r32.prompt.tensor.abs().max()
tau = (r32.prompt.tensor - o32.tensor).abs().max()
print("origins identical:", torch.equal(o32.tensor, o16.tensor))
print("relative max prompt difference fp32 vs bf16:", float(d), "; largest |tau| entry relative to the largest prompt entry:", float(tau / r32.prompt.tensor.abs().max()))

print("share of test answers that differ:", float(np.mean(np.array(e32["preds"]) != np.array(e16["preds"]))), "; macro-F1", e32["macro_f1"], e16["macro_f1"])
