"""tpv against PEFT + the HF Trainer, side by side, on one machine, model, task and step count.

    python benchmarks/bench.py                      # SmolLM2, rt_polarity, batch 8, 60 steps -> benchmarks/RESULTS.md
    python benchmarks/bench.py --model tiny-llama --steps 3 --short-steps 3 --n-val 8 --out /tmp/r.md   # a quick check

Each training setup runs in its own process (so its peak memory is its own) from the same origin
prompt on the same tokenised data, then its trained prompt is scored by the same rank
classification on the same validation examples. Step times are medians over the run's steps, each
step timed alone (validation and generation excluded); the first `--warmup` steps are dropped.
"""
from __future__ import annotations
import argparse, json, os, platform, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SETUPS = {  # name -> what it is
    "peft_paper": "PEFT prompt tuning + HF Trainer as the paper's code: inputs padded to 256, full logits, fp32",
    "peft_dynamic": "PEFT prompt tuning + HF Trainer, dynamic padding (to the longest in the batch), fp32",
    "peft_dynamic_bf16": "PEFT prompt tuning + HF Trainer, dynamic padding, bf16 autocast (`bf16=True`)",
    "tpv_percast": "tpv.tuning.tune as before the frozen weights were held in bf16: the same, but under autocast every frozen weight is cast to bf16 again in every op of every step",
    "tpv": "tpv.tuning.tune: length-grouped dynamic padding, the prompt's keys/values once per batch (shared prefix), logits only at target positions, the precision its probe chose, the frozen weights held in that precision",
}

def _args(argv=None):
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--model", default="smollm2-135m-instruct"); a.add_argument("--task", default="rt_polarity")
    a.add_argument("--batch-size", type=int, default=8); a.add_argument("--steps", type=int, default=60, help="training steps of every setup")
    a.add_argument("--lr-warmup", type=int, default=6, help="learning-rate warm-up steps (then linear decay), every setup")
    a.add_argument("--short-steps", type=int, default=20, help="steps of the speed-only measurements (tune_many, FLOP/s)")
    a.add_argument("--warmup", type=int, default=2, help="steps left out of the step-time median")
    a.add_argument("--lr", type=float, default=0.3); a.add_argument("--n-tokens", type=int, default=20)
    a.add_argument("--n-train", type=int, default=2000, help="training examples drawn from (stratified)")
    a.add_argument("--n-val", type=int, default=100, help="validation examples scored by every setup")
    a.add_argument("--k", type=int, default=4, help="prompts trained at once by tune_many")
    a.add_argument("--cell-runs", type=int, default=15, help="runs of the few-shot cell (one loop against one by one)")
    a.add_argument("--cell-task", default="tweets_polarity", help="the few-shot cell's task (short inputs)")
    a.add_argument("--cell-shots", type=int, default=100, help="training examples of the few-shot cell")
    a.add_argument("--eval-k", type=int, default=8, help="prompts scored at once in the K-prompt evaluation")
    a.add_argument("--repeats", type=int, default=3, help="repeats of the matmul and evaluation timings")
    a.add_argument("--setups", default=",".join(SETUPS))
    a.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="measure torch.compile of the training step (minutes of compiling)")
    a.add_argument("--out", default=str(HERE / "RESULTS.md"))
    a.add_argument("--worker", help=argparse.SUPPRESS); a.add_argument("--result", help=argparse.SUPPRESS)
    a.add_argument("--prompt-dir", help=argparse.SUPPRESS)
    return a.parse_args(argv)

def _rss_mib() -> float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def _data(args, lm):
    from tpv.tasks import load_split, subsample
    from tpv.engine import encode
    tr = subsample(args.task, load_split(args.task, "train"), args.n_train, 42)
    va = subsample(args.task, load_split(args.task, "validation"), args.n_val, 42)
    return tr, va, encode(lm, args.task, tr, "t5"), encode(lm, args.task, va, "t5")

def _origin(args, lm):
    from tpv.prompts import make_origins
    return make_origins(lm, 1, args.n_tokens)[0]

def _tune_config(args, steps):
    from tpv.engine import ReadSpec
    from tpv.tuning import TuneConfig
    return TuneConfig(lr=args.lr, warmup_steps=args.lr_warmup, batch_size=args.batch_size, max_steps=steps, eval_every=steps, reading=ReadSpec(style="t5"))

def _median_step(times, warmup): return statistics.median(times[warmup:] if len(times) > warmup else times)

def _val_accuracy(lm, tensor, va_enc):
    from tpv.engine import score_choices
    sc = score_choices(lm, tensor, va_enc)
    return float((sc.argmax(1) == va_enc.labels).mean())

# ---------------------------------------------------------------- workers (one process each)
def _keep_prompt(args, setup, tensor):
    "Save a setup's trained prompt: the score worker scores every setup's prompt the same way, the eval worker tpv's."
    torch.save(tensor.detach().cpu(), Path(args.prompt_dir)/f"{setup}.pt")

def worker_tpv(args, res, setup="tpv"):
    from tpv.models import load_lm
    from tpv.tuning import tune
    lm = load_lm(args.model, resident=setup == "tpv"); tr, va, _, _ = _data(args, lm); o = _origin(args, lm)
    r = tune(lm, args.task, o, _tune_config(args, args.steps), train=tr, validation=va, progress=False)  # validates at step 0 and at the end only
    _keep_prompt(args, setup, r.prompt.tensor)
    res.update(step_s=_median_step(r.step_seconds, args.warmup), steps=len(r.step_seconds), bf16=lm.bf16, resident=lm.resident,
               precision=lm.precision, best_step=r.best_step)

def worker_score(args, res):
    "Every setup's trained prompt scored by the same rank classification (tpv's, in the precision its probe chose)."
    from tpv.models import load_lm
    lm = load_lm(args.model); _, _, _, va_enc = _data(args, lm)
    for f in sorted(Path(args.prompt_dir).glob("*.pt")): res[f.stem] = _val_accuracy(lm, torch.load(f), va_enc)

def worker_peft(args, res, setup):
    from peft import PromptTuningConfig, TaskType, get_peft_model, set_peft_model_state_dict
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from tpv.models import load_lm
    lm = load_lm(args.model, bf16=False); tr, va, tr_enc, va_enc = _data(args, lm); o = _origin(args, lm)  # fp32 weights: PEFT's own bf16 is the Trainer's autocast
    pad, L = lm.tokenizer.pad_token_id, 256
    rows = [{"input_ids": s + t, "labels": [-100] * len(s) + t} for s, t in zip(tr_enc.src, tr_enc.tgt)]
    def collate(batch):
        n = L if setup == "peft_paper" else max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), pad); lab = torch.full((len(batch), n), -100); att = torch.zeros(len(batch), n, dtype=torch.long)
        for i, b in enumerate(batch):
            k = min(n, len(b["input_ids"])); ids[i, :k] = torch.tensor(b["input_ids"][:k]); lab[i, :k] = torch.tensor(b["labels"][:k]); att[i, :k] = 1
        return {"input_ids": ids, "attention_mask": att, "labels": lab}
    model = get_peft_model(lm.model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=args.n_tokens))
    set_peft_model_state_dict(model, {"prompt_embeddings": o.tensor})
    times = []
    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k): self.t = time.perf_counter()
        def on_step_end(self, *a, **k): times.append(time.perf_counter() - self.t)
    with tempfile.TemporaryDirectory() as d:
        targs = TrainingArguments(output_dir=d, per_device_train_batch_size=args.batch_size, max_steps=args.steps, learning_rate=args.lr,
                                  weight_decay=1e-5, warmup_steps=args.lr_warmup, lr_scheduler_type="linear", max_grad_norm=1.0, optim="adamw_torch",
                                  logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[], use_cpu=lm.device.type == "cpu",
                                  bf16=setup.endswith("bf16"), remove_unused_columns=False, dataloader_num_workers=0, seed=42, disable_tqdm=True)
        Trainer(model=model, args=targs, train_dataset=rows, data_collator=collate, callbacks=[Clock()]).train()
    tensor = model.prompt_encoder["default"].embedding.weight.detach().clone()
    _keep_prompt(args, setup, tensor)
    res.update(step_s=_median_step(times, args.warmup), steps=len(times), bf16=setup.endswith("bf16"))
    if setup == "peft_paper":  # the paper's evaluation: greedy generation through PEFT, exact match of the parsed label
        res["generation"] = _peft_generation(args, lm, model, va, va_enc)  # inputs padded to the longest in the batch
        res["generation_256"] = _peft_generation(args, lm, model, va, va_enc, pad_to=256)  # inputs padded to 256, as the paper's code

def _peft_generation(args, lm, model, va, va_enc, pad_to=0):
    from tpv.evaluation import parse_label
    from tpv.tasks import get_task
    tok, task, out = lm.tokenizer, get_task(args.task), []
    model.eval(); t0 = time.perf_counter()
    for i in range(0, len(va_enc.src), 32):
        srcs = va_enc.src[i:i + 32]; n = max(pad_to, *map(len, srcs))
        ids = torch.tensor([[tok.pad_token_id] * (n - len(s)) + s for s in srcs]); att = (torch.arange(n)[None] >= torch.tensor([n - len(s) for s in srcs])[:, None]).long()
        with torch.no_grad():
            g = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
        out += [tok.decode(r[n:], skip_special_tokens=True) for r in g]
    secs = time.perf_counter() - t0
    preds = [parse_label(task, x) for x in out]
    return {"seconds": secs, "n": len(out), "accuracy": float(sum(p == l for p, l in zip(preds, va["label"])) / len(out))}

def worker_many(args, res):
    "tune_many with K prompts (one task, K origins) against K sequential tune calls."
    from tpv.models import load_lm
    from tpv.prompts import make_origins
    from tpv.tuning import tune, tune_many
    lm = load_lm(args.model); tr, va, _, _ = _data(args, lm)
    origins = make_origins(lm, args.k, args.n_tokens)
    cfg = _tune_config(args, args.short_steps)
    seq = [tune(lm, args.task, o, cfg, train=tr, validation=va, progress=False) for o in origins]
    many = tune_many(lm, [(args.task, o) for o in origins], cfg, train=[tr] * args.k, validation=[va] * args.k, progress=False)
    res.update(k=args.k, seq_step_s=sum(_median_step(r.step_seconds, args.warmup) for r in seq),
               many_step_s=_median_step(many[0].step_seconds, args.warmup), bf16=lm.bf16,
               max_abs_diff=max(float((a.prompt.tensor - b.prompt.tensor).abs().max()) for a, b in zip(seq, many)),
               prompt_scale=max(float(a.prompt.tensor.abs().max()) for a in seq))

def worker_eval(args, res):
    "Rank classification (one pass per input; one row per label word) against generation, on a trained prompt."
    from tpv.engine import generate, score_choices
    from tpv.evaluation import parse_label
    from tpv.models import load_lm
    from tpv.prompts import make_origins
    from tpv.tasks import get_task
    from tpv.tuning import tune
    lm = load_lm(args.model); tr, va, _, va_enc = _data(args, lm)
    saved = Path(args.prompt_dir)/"tpv.pt"
    if saved.exists(): p, res["prompt"] = torch.load(saved), "the tpv worker's"
    else: p, res["prompt"] = tune(lm, args.task, _origin(args, lm), _tune_config(args, args.steps), train=tr, validation=va, progress=False).prompt.tensor, "trained here"
    task, labels = get_task(args.task), va_enc.labels
    def timed(f):
        ts, out = [], None
        for _ in range(args.repeats): t0 = time.perf_counter(); out = f(); ts.append(time.perf_counter() - t0)
        return statistics.median(ts), out
    t_prefix, sc0 = timed(lambda: score_choices(lm, p, va_enc))  # one pass per input, the prompt's keys/values once
    if lm.resident:  # the same, with autocast casting the frozen weights per op: the default before they were held in bf16
        cast = load_lm(args.model, resident=False)
        t_cast, scc = timed(lambda: score_choices(cast, p, va_enc))
        res.update(rank_cast_s=t_cast, rank_cast_max_abs_diff=float(abs(scc - sc0).max())); del cast
    t_shared, sc = timed(lambda: score_choices(lm, p, va_enc, shared_prefix=False))  # one pass per input, the prompt in every row: the previous default
    t_rows, sc2 = timed(lambda: score_choices(lm, p, va_enc, shared=False))
    ps = [p] + [o.tensor for o in make_origins(lm, args.eval_k - 1, args.n_tokens)]
    t_k, sck = timed(lambda: score_choices(lm, ps, va_enc))  # K prompts in one pass
    t_k1, sck1 = timed(lambda: [score_choices(lm, q, va_enc, shared_prefix=False) for q in ps])  # K prompts one by one, the previous way
    t_gen, texts = timed(lambda: generate(lm, p, va_enc.src, 16))
    gen_acc = float(sum(parse_label(task, x) == l for x, l in zip(texts, labels)) / len(labels))
    res.update(n=len(labels), bf16=lm.bf16, rank_prefix_s=t_prefix, rank_prefix_accuracy=float((sc0.argmax(1) == labels).mean()),
               k=len(ps), k_pass_s=t_k, k_separate_s=t_k1, k_max_abs_diff=float(max(abs(a - b).max() for a, b in zip(sck, sck1))),
               rank_shared_s=t_shared, rank_rows_s=t_rows, generate_s=t_gen,
               rank_accuracy=float((sc.argmax(1) == labels).mean()), rank_rows_accuracy=float((sc2.argmax(1) == labels).mean()),
               generate_accuracy=gen_acc)

def worker_flops(args, res):
    "FLOPs of one tpv training step (forward + backward, counted by torch) and the best matmul rate of this machine."
    from torch.utils.flop_counter import FlopCounterMode
    from tpv.models import load_lm
    from tpv.engine import collate, target_logprobs, length_grouped_batches
    import numpy as np
    lm = load_lm(args.model); tr, va, tr_enc, va_enc = _data(args, lm); o = _origin(args, lm)
    rng = np.random.RandomState(42)
    batches = length_grouped_batches([len(s) + len(t) for s, t in zip(tr_enc.src, tr_enc.tgt)], args.batch_size, rng)
    p = torch.nn.Parameter(o.tensor.clone())
    def step(idx):
        b = collate(lm, [(tr_enc.src[i], tr_enc.tgt[i]) for i in idx])
        lp = target_logprobs(lm, p, b, shared_prefix=True); loss = -lp.sum() / b.tgt_mask.sum(); loss.backward(); p.grad = None
        P = p.shape[0]
        return (P + int(b.attention_mask.sum())) / (P + b.attention_mask.numel())  # real tokens / tokens computed (the prefix once)
    flops, useful, times = [], [], []
    for idx in batches[:args.short_steps]:
        with FlopCounterMode(display=False) as fc: share = step(idx)
        flops.append(fc.get_total_flops()); useful.append(fc.get_total_flops() * share)
        t0 = time.perf_counter(); step(idx); times.append(time.perf_counter() - t0)
    rates = [f / t for f, t in zip(useful, times)][args.warmup:] or [f / t for f, t in zip(useful, times)]
    res.update(step_flops=statistics.median(flops), useful_flops=statistics.median(useful), step_s=statistics.median(times[args.warmup:] or times),
               achieved=statistics.median(rates), bf16=lm.bf16, resident=lm.resident, matmul=_matmul_peak(args.repeats))
    # where the time goes: one step (a batch of median length) and one evaluation pass under the profiler
    run = batches[:args.short_steps]
    m = sorted(range(len(run)), key=lambda k: sum(len(tr_enc.src[j]) + len(tr_enc.tgt[j]) for j in run[k]))[len(run) // 2]
    mid = run[m]
    dt = torch.bfloat16 if lm.bf16 else torch.float32
    res["profile_step"] = _profile(lambda: step(mid), dt)
    from tpv.engine import score_choices
    va_enc.src = va_enc.src[:32]; va_enc.labels = va_enc.labels[:32]
    res["profile_eval"] = _profile(lambda: score_choices(lm, p.detach(), va_enc), dt)
    res["shape_rate"] = _shape_rate(res["profile_step"]["matmuls"], dt, args.repeats)
    res.update(mid_step_s=times[m], mid_useful_flops=useful[m])  # measured in the loop above

def worker_compile(args, res):
    "torch.compile of the training step's forward + backward (dynamic shapes), against eager: compile time, step times, agreement."
    from tpv.models import load_lm
    from tpv.engine import Batch, collate, target_logprobs, length_grouped_batches
    import numpy as np
    lm = load_lm(args.model); tr, va, tr_enc, _ = _data(args, lm); o = _origin(args, lm)
    batches = length_grouped_batches([len(s) + len(t) for s, t in zip(tr_enc.src, tr_enc.tgt)], args.batch_size, np.random.RandomState(42))[:args.short_steps]
    def loss(p, *fields): return -target_logprobs(lm, p, Batch(*fields), shared_prefix=True).sum()
    def run(fn, idx):
        b = collate(lm, [(tr_enc.src[i], tr_enc.tgt[i]) for i in idx]); p = torch.nn.Parameter(o.tensor.clone())
        t0 = time.perf_counter(); out = fn(p, *(getattr(b, f) for f in b.__dataclass_fields__)); out.backward()
        return time.perf_counter() - t0, float(out.detach()), p.grad
    eager = [run(loss, idx) for idx in batches]
    compiled_fn = torch.compile(loss, dynamic=True)
    try: first = run(compiled_fn, batches[0])
    except Exception as e:  # the fallback: tpv runs eager, and the report says why compile was not measured
        res.update(failed=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"); return
    comp = [run(compiled_fn, idx) for idx in batches]
    e_s, c_s = _median_step([t for t, _, _ in eager], args.warmup), _median_step([t for t, _, _ in comp], args.warmup)
    res.update(compile_s=first[0] - e_s, eager_s=e_s, compiled_s=c_s, lengths=len({max(len(tr_enc.src[i]) + len(tr_enc.tgt[i]) for i in b) for b in batches}),
               graphs=int(torch._dynamo.utils.counters["stats"]["unique_graphs"]),
               loss_rel_diff=max(abs(a[1] - b[1]) / abs(a[1]) for a, b in zip(eager, comp)),
               grad_cos=min(float(torch.cosine_similarity(a[2].flatten(), b[2].flatten(), 0)) for a, b in zip(eager, comp)), bf16=lm.bf16)

# an op's category by its name: the first rule whose fragment it contains (self time, so a product is counted once)
CATEGORIES = (
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")),
    ("attention", ("scaled_dot_product", "flash_attention", "aten::_softmax", "aten::softmax")),
    ("copies and dtype casts", ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous")),
    ("autograd bookkeeping", ("autograd::", "Backward0", "Backward1")),
    ("norms and elementwise", ("aten::mul", "aten::add", "aten::pow", "aten::mean", "aten::rsqrt", "aten::silu", "aten::neg", "aten::div",
                               "aten::sum", "aten::sub", "aten::exp", "log_softmax", "aten::cos", "aten::sin", "aten::fill_", "aten::zero",
                               "aten::where", "aten::clamp", "aten::masked_fill", "aten::lt", "aten::ge", "aten::ones", "aten::zeros", "_backward")),
    ("indexing and layout", ("aten::cat", "aten::index", "aten::gather", "aten::embedding", "aten::slice", "aten::view", "aten::reshape",
                             "aten::transpose", "aten::expand", "aten::empty", "aten::as_strided", "aten::select", "aten::unsqueeze",
                             "aten::t", "aten::repeat", "aten::permute", "aten::stack", "aten::split", "aten::narrow", "aten::arange",
                             "aten::_unsafe_view", "aten::squeeze", "aten::alias", "aten::detach", "aten::resize_", "aten::lift")),
)

def _category(name):
    return next((c for c, frags in CATEGORIES if any(f in name for f in frags)), "other ops")

def _profile(fn, dt) -> dict:
    "Seconds of `fn` by category of op (self time), the rest being Python and dispatch; and the shapes of its matrix products."
    from torch.profiler import ProfilerActivity, profile
    fn(); fn()  # warm
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t0 = time.perf_counter(); fn(); wall = time.perf_counter() - t0
    cats, mms = {}, {}
    for e in prof.key_averages(group_by_input_shape=True):
        c = _category(e.key); cats[c] = cats.get(c, 0.0) + e.self_cpu_time_total / 1e6
        if c == "matrix products" and (dims := _mm_dims(e.key, e.input_shapes)): mms[dims] = mms.get(dims, 0) + e.count
    cats["Python and dispatch (outside any op)"] = max(0.0, wall - sum(cats.values()))
    return {"wall_s": wall, "categories": cats, "matmuls": [[list(d), n] for d, n in mms.items()], "dtype": str(dt).split(".")[-1]}

def _mm_dims(name, shapes):
    "(batch, M, K, N) of a matrix product from its input shapes, or None."
    sh = [list(x) for x in shapes if x]
    if name == "aten::addmm" and len(sh) >= 3: sh = sh[1:]
    if len(sh) < 2: return None
    a, b = sh[0], sh[1]
    if len(a) == 2 and len(b) == 2: return (1, a[0], a[1], b[1])
    if len(a) == 3 and len(b) == 3: return (a[0], a[1], a[2], b[2])
    return None

def _shape_rate(matmuls, dt, repeats) -> dict:
    "Each of the step's matrix-product shapes timed alone in the step's precision: the FLOP-weighted rate, the time they would take."
    flops = secs = 0.0; shapes = []
    for (B, M, K, N), count in matmuls:
        a, b = torch.randn(B, M, K, dtype=dt).squeeze(0), torch.randn(B, K, N, dtype=dt).squeeze(0)
        f = 2.0 * B * M * K * N; t = _matmul_seconds(a, b, max(3, int(2e9 // f)), repeats)
        flops += f * count; secs += t * count; shapes.append({"shape": [B, M, K, N], "count": count, "gflops": f / t / 1e9})
    return {"rate": flops / secs if secs else 0.0, "flops": flops, "seconds": secs, "shapes": sorted(shapes, key=lambda x: -x["count"] * x["shape"][1] * x["shape"][2] * x["shape"][3])}

def _matmul_seconds(a, b, reps, repeats) -> float:
    "Median seconds of one `a @ b`, over `repeats` timings of `reps` products (after one warm-up product)."
    a @ b; ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(reps): a @ b
        ts.append((time.perf_counter() - t0) / reps)
    return statistics.median(ts)

def _matmul_peak(repeats):
    "The best rate of square matrix products (fp32 and bf16) at a few sizes: the machine's reference."
    out = {}
    for dt in (torch.float32, torch.bfloat16):
        best = 0.0
        for n in (512, 1024, 2048):
            a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
            best = max(best, 2 * n ** 3 / _matmul_seconds(a, b, max(1, int(2e10 // (2 * n ** 3))), repeats))
        out[str(dt).split(".")[-1]] = best
    return out

def worker_cell(args, res):
    "A few-shot cell: `--cell-runs` runs of batch 2 on short inputs, in one tune_many loop against one by one."
    from tpv.engine import ReadSpec
    from tpv.models import load_lm
    from tpv.prompts import make_origins
    from tpv.tasks import few_shot, load_split, subsample
    from tpv.tuning import TuneConfig, tune, tune_many
    lm = load_lm(args.model)
    tr = few_shot(args.cell_task, args.cell_shots, 42)
    va = subsample(args.cell_task, load_split(args.cell_task, "validation"), 32, 42)
    starts = make_origins(lm, args.cell_runs, args.n_tokens)
    cfg = TuneConfig(lr=args.lr, warmup_steps=2, batch_size=2, max_steps=args.short_steps, eval_every=args.short_steps, reading=ReadSpec(style="t5"))
    seq = [tune(lm, args.cell_task, o, cfg, train=tr, validation=va, progress=False) for o in starts]
    many = tune_many(lm, [(args.cell_task, o) for o in starts], cfg, train=[tr] * len(starts), validation=[va] * len(starts), progress=False)
    res.update(k=len(starts), seq_step_s=sum(_median_step(r.step_seconds, args.warmup) for r in seq),
               many_step_s=_median_step(many[0].step_seconds, args.warmup), bf16=lm.bf16, task=args.cell_task,
               max_abs_diff=max(float((a.prompt.tensor - b.prompt.tensor).abs().max()) for a, b in zip(seq, many)))

WORKERS = {"tpv": worker_tpv, "tpv_percast": lambda a, r: worker_tpv(a, r, "tpv_percast"), "score": worker_score,
           "many": worker_many, "cell": worker_cell, "eval": worker_eval, "flops": worker_flops, "compile": worker_compile,
           **{s: (lambda a, r, s=s: worker_peft(a, r, s)) for s in SETUPS if s.startswith("peft")}}

def _run_worker(name, argv) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f: path = f.name
    t0 = time.time()
    print(f"[bench] {name} ...", flush=True)
    p = subprocess.run([sys.executable, __file__, *argv, "--worker", name, "--result", path])
    if p.returncode: raise SystemExit(f"benchmark worker {name!r} failed (exit {p.returncode})")
    r = json.loads(Path(path).read_text()); os.unlink(path)
    print(f"[bench] {name} done in {time.time() - t0:.0f} s", flush=True)
    return r

# ---------------------------------------------------------------- the report
def _versions():
    import numpy, peft, transformers
    import tpv
    return {"tpv": tpv.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "numpy": numpy.__version__}

def _cpu():
    try: return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception: return platform.processor() or "unknown"

def _verdict(ok): return "**met**" if ok else "**not met**"

def _loop_section(title:str, intro:str, seq_name:str, r:dict, rows:int, scale:str="") -> list:
    "A report section: K runs one after another against one `tune_many` loop (step times, throughput, speed-up, prompt difference)."
    return [f"## {title}", "", intro, "", "| | s per step of all runs | examples / s |", "|---|---|---|",
            f"| {seq_name} | {r['seq_step_s']:.3f} | {rows / r['seq_step_s']:.1f} |",
            f"| one `tune_many` loop | {r['many_step_s']:.3f} | {rows / r['many_step_s']:.1f} |", "",
            f"Speed-up {r['seq_step_s'] / r['many_step_s']:.2f}×; largest difference between the prompts of the two: {r['max_abs_diff']:.2e}{scale}.", ""]

def _shape_section(f) -> list:
    "The matmul rate at the step's own shapes, and the step's share of it."
    sr, dt = f["shape_rate"], f["profile_step"]["dtype"]
    share = f["mid_useful_flops"] / f["mid_step_s"] / sr["rate"]
    L = ["### The limit at the step's own shapes", "",
         f"A step of median length ({f['mid_step_s']:.3f} s, {f['mid_useful_flops'] / 1e9:.1f} useful GFLOP) runs {len(sr['shapes'])} shapes of matrix product "
         f"({sum(x['count'] for x in sr['shapes'])} products, forward and backward). Each shape timed alone in {dt}: together they would take "
         f"{sr['seconds']:.3f} s, a FLOP-weighted rate of **{sr['rate'] / 1e9:.1f} GFLOP/s** (the best square {dt} product: "
         f"{f['matmul'][dt] / 1e9:.1f}). The step reaches {f['mid_useful_flops'] / f['mid_step_s'] / 1e9:.1f} useful GFLOP/s, "
         f"**{100 * share:.0f}%** of the rate at its shapes.", "", "| batch × rows × inner → cols | products per step | GFLOP/s alone |", "|---|---|---|"]
    L += [f"| {'×'.join(map(str, x['shape'][:2])) if x['shape'][0] > 1 else x['shape'][1]} × {x['shape'][2]} → {x['shape'][3]} | {x['count']} | {x['gflops']:.0f} |" for x in sr["shapes"][:12]]
    if len(sr["shapes"]) > 12: L.append(f"| … {len(sr['shapes']) - 12} more shapes | | |")
    return L + [""]

def _profile_section(f) -> list:
    "Where the time of one training step and one evaluation pass goes, by kind of op."
    ps, pe = f["profile_step"], f["profile_eval"]
    cats = list(dict.fromkeys([c for c, _ in CATEGORIES] + ["other ops", "Python and dispatch (outside any op)"]))
    L = ["### Where the time goes", "",
         "`torch.profiler` (CPU, self time of each op, so a product is counted once; what no op accounts for is Python, dispatch and the profiler's own cost) "
         f"over one training step of median length (forward + backward) and one evaluation pass (`score_choices`, 32 inputs, shared prefix), in {ps['dtype']}.", "",
         f"| | training step: s | share | evaluation pass: s | share |", "|---|---|---|---|---|"]
    for c in cats:
        a, b = ps["categories"].get(c, 0.0), pe["categories"].get(c, 0.0)
        L.append(f"| {c} | {a:.3f} | {100 * a / ps['wall_s']:.0f}% | {b:.3f} | {100 * b / pe['wall_s']:.0f}% |")
    L.append(f"| **wall time under the profiler** | {ps['wall_s']:.3f} | | {pe['wall_s']:.3f} | |")
    return L + [""]

def _compile_section(c, args) -> list:
    "torch.compile of the step, measured beside eager: not used by tpv; the numbers say what it would cost and give."
    L = ["## torch.compile of the training step (measured; tpv runs eager)", ""]
    if "failed" in c: return L + [f"Compiling the step failed here, so tpv's eager step is the only one: {c['failed']}.", ""]
    gain = c["eager_s"] - c["compiled_s"]
    even = f"it pays for itself after {c['compile_s'] / gain:.0f} steps in one process" if gain > 0 else "it does not pay for itself"
    return L + [f"`torch.compile(dynamic=True)` of the forward + backward of `target_logprobs` with the shared prefix, {args.short_steps} batches of {args.batch_size} "
                f"({c['lengths']} different lengths; dynamo compiled {c['graphs']} graphs in all), {'bf16' if c['bf16'] else 'fp32'}:", "",
                "| | s |", "|---|---|", f"| compiling (first step less an eager step) | {c['compile_s']:.1f} |",
                f"| eager step (median) | {c['eager_s']:.3f} |", f"| compiled step (median) | {c['compiled_s']:.3f} |", "",
                f"Speed-up {c['eager_s'] / c['compiled_s']:.2f}×; {even}. Loss within {c['loss_rel_diff']:.1e} (relative) of eager, gradients at cosine ≥ {c['grad_cos']:.4f}. "
                "tpv does not compile: a cpu-profile run is a few hundred steps per process, the compile is paid again in every process (and every "
                "notebook kernel), and the tests would pay it on every model they build.", ""]

def _bound(R, x) -> str:
    "What the evaluation profile allows: with every op but the matrix products free, the speed-up could be at most x / their share."
    pe = R.get("flops", {}).get("profile_eval")
    if not pe: return ""
    share = pe["categories"].get("matrix products", 0.0) / pe["wall_s"]
    return f" (matrix products are {100 * share:.0f}% of an evaluation pass here: with every other op free, at most {x / share:.2f}×)" if share else ""

def report(args, argv, R, seconds) -> str:
    cmd = "python benchmarks/bench.py " + " ".join(argv)
    B = args.batch_size
    L = [f"# tpv benchmarks", "",
         f"Measured by `{cmd.strip()}` in {seconds / 60:.1f} min on {time.strftime('%Y-%m-%d')}.", "",
         f"- machine: {_cpu()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}, "
         f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}",
         "- versions: " + ", ".join(f"{k} {v}" for k, v in _versions().items()),
         f"- model `{args.model}`, task `{args.task}`, batch {B}, {args.steps} steps, lr {args.lr} ({args.lr_warmup} warm-up steps, then linear decay), {args.n_tokens}-token prompt "
         f"from the same origin, {args.n_val} validation examples; step times are medians over steps {args.warmup + 1}–{args.steps}.",
         "- GPU: " + (f"{torch.cuda.get_device_name()}" if torch.cuda.is_available() else "none was available for this run, so there is no GPU column"), ""]
    prec = R.get("tpv", {}).get("precision")
    if prec:
        L += ["## Precision", "", f"tpv chose **{'bf16 autocast' if prec['bf16'] else 'fp32'}** ({prec['by']})" +
              (f": a forward + backward of `{prec.get('model')}` at batch {prec['shape'][0]} × {prec['shape'][1]} tokens took {prec['fp32_s']:.3f} s in fp32, "
               f"{prec['bf16_s']:.3f} s under bf16 autocast casting the weights per op, and {prec['bf16_resident_s']:.3f} s under autocast with the weights held in bf16 "
               f"(what tpv runs; bf16 is chosen when it is ≥ 10% faster than fp32), on {prec.get('device')} "
               f"with flags {', '.join(prec.get('flags') or []) or 'none of avx512f/avx512_bf16/amx'}, {prec.get('threads')} threads." if prec["by"] == "probe" else "."), ""]
    tr = {s: R[s] for s in SETUPS if s in R}
    if tr:
        L += ["## Training", "", "| setup | s / step | examples / s | × paper-style | peak RSS (MiB) | val accuracy (rank) |", "|---|---|---|---|---|---|"]
        ref = tr.get("peft_paper", {}).get("step_s")
        for s, r in tr.items():
            L.append(f"| `{s}` | {r['step_s']:.3f} | {B / r['step_s']:.1f} | {ref / r['step_s']:.2f} |" if ref else f"| `{s}` | {r['step_s']:.3f} | {B / r['step_s']:.1f} | – |")
            L[-1] += f" {r['peak_rss_mib']:.0f} | {r['val_accuracy']:.3f} |"
        L += [""] + [f"- `{s}`: {SETUPS[s]}" for s in tr] + [
              "- Peak RSS is the whole process (model, data, framework), the same for every setup but its training.",
              "- Every trained prompt is scored the same way (tpv's rank classification) on the same validation examples.", ""]
    if "eval" in R:
        e = R["eval"]; n = e["n"]
        L += ["## Evaluation", "", f"A prompt trained by tpv ({args.steps} steps), {n} validation examples, median of {args.repeats} repeats.", "",
              "| method | s | examples / s | accuracy |", "|---|---|---|---|",
              f"| rank classification, one pass per input, the prompt's keys/values once (`score_choices`, shared prefix) | {e['rank_prefix_s']:.2f} | {n / e['rank_prefix_s']:.1f} | {e['rank_prefix_accuracy']:.3f} |",
              *([f"| the same, autocast casting the frozen weights per op (the default before they were held in bf16) | {e['rank_cast_s']:.2f} | {n / e['rank_cast_s']:.1f} | "
                 f"largest score difference {e['rank_cast_max_abs_diff']:.1e} |"] if "rank_cast_s" in e else []),
              f"| rank classification, one pass per input, the prompt in every row (`shared_prefix=False`, the default before that) | {e['rank_shared_s']:.2f} | {n / e['rank_shared_s']:.1f} | {e['rank_accuracy']:.3f} |",
              f"| rank classification, a row per label word (`shared=False`) | {e['rank_rows_s']:.2f} | {n / e['rank_rows_s']:.1f} | {e['rank_rows_accuracy']:.3f} |",
              f"| greedy generation, 16 new tokens, tpv's cached loop (`tpv.evaluation.generate`) | {e['generate_s']:.2f} | {n / e['generate_s']:.1f} | {e['generate_accuracy']:.3f} |"]
        for k, pad in (("generation", "to the longest in the batch"), ("generation_256", "to 256 (the paper's evaluation)")):
            if g := R.get("peft_paper", {}).get(k):
                L.append(f"| greedy generation, 16 new tokens, PEFT `generate`, inputs padded {pad} (fp32; PEFT-trained prompt) | {g['seconds']:.2f} | {g['n'] / g['seconds']:.1f} | {g['accuracy']:.3f} |")
        L += ["", f"{e['k']} prompts (the trained one and {e['k'] - 1} origins) on the same {n} inputs: one K-prompt pass {e['k_pass_s']:.2f} s, "
              f"one by one (the previous way) {e['k_separate_s']:.2f} s, {e['k_separate_s'] / e['k_pass_s']:.2f}×; largest score difference {e['k_max_abs_diff']:.1e}.", ""]
    if "many" in R:
        m = R["many"]
        L += _loop_section("Many prompts at once", f"{m['k']} prompts (one task, {m['k']} origins), {args.short_steps} steps each, batch {B} per prompt, "
                           f"{'bf16 autocast' if m['bf16'] else 'fp32'}, on {'CUDA' if torch.cuda.is_available() else 'CPU'}.",
                           f"{m['k']} sequential `tune` calls", m, m["k"] * B, f" (prompt entries up to {m['prompt_scale']:.2f})")
    if "cell" in R:
        c = R["cell"]
        L += _loop_section("A few-shot cell", f"{c['k']} runs of batch 2 on `{c['task']}` (short inputs), {args.short_steps} steps, "
                           f"{'bf16 autocast' if c['bf16'] else 'fp32'}: one `tune_many` loop against the same runs one after another (validation excluded).",
                           f"{c['k']} `tune` calls, one after another", c, 2 * c["k"])
    if "flops" in R:
        f = R["flops"]; peak = max(f["matmul"].values()); ref = f["matmul"]["bfloat16" if f["bf16"] else "float32"]
        L += ["## FLOP/s of a training step", "",
              f"- best square matmul: fp32 {f['matmul']['float32'] / 1e9:.1f} GFLOP/s, bf16 {f['matmul']['bfloat16'] / 1e9:.1f} GFLOP/s",
              f"- one tpv step (batch {B}, forward + backward, shared prefix): {f['step_flops'] / 1e9:.1f} GFLOP counted by `torch.utils.flop_counter`, "
              f"of which {f['useful_flops'] / 1e9:.1f} GFLOP useful (the share of real tokens among the tokens computed, the prompt counted once), "
              f"in {f['step_s']:.3f} s = {f['achieved'] / 1e9:.1f} useful GFLOP/s, {100 * f['achieved'] / ref:.0f}% of the "
              f"{'bf16' if f['bf16'] else 'fp32'} matmul rate (the step's own precision), {100 * f['achieved'] / peak:.0f}% of the best.", ""]
        L += _shape_section(f)
        L += _profile_section(f)
    if "compile" in R: L += _compile_section(R["compile"], args)
    L += ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    t = tr.get("tpv")
    for name, lim in (("peft_paper", 10), ("peft_dynamic", 3), ("peft_dynamic_bf16", 2)):
        if t and name in tr:
            x = tr[name]["step_s"] / t["step_s"]; ok = x >= lim and t["val_accuracy"] >= tr[name]["val_accuracy"]
            L.append(f"| training ≥ {lim}× `{name}` at equal or better validation accuracy | {x:.2f}×, accuracy {t['val_accuracy']:.3f} vs {tr[name]['val_accuracy']:.3f} | {_verdict(ok)} |")
    if "eval" in R:
        e = R["eval"]; pp = R.get("peft_paper", {})
        x0 = e["rank_shared_s"] / e["rank_prefix_s"]
        L.append(f"| evaluation ≥ 1.5× the previous rank classification on the same prompt | {x0:.2f}× | {_verdict(x0 >= 1.5)} |")
        x = e["generate_s"] / e["rank_prefix_s"]
        L.append(f"| evaluation ≥ 10× generation (tpv's generation loop) | {x:.1f}×, accuracy {e['rank_prefix_accuracy']:.3f} vs {e['generate_accuracy']:.3f} | {_verdict(x >= 10)} |")
        for k, what in (("generation", "PEFT `generate`, padded to the longest"), ("generation_256", "PEFT `generate`, padded to 256: the paper's")):
            if g := pp.get(k):
                x2 = (g["seconds"] / g["n"]) / (e["rank_prefix_s"] / e["n"])
                L.append(f"| evaluation ≥ 10× generation ({what}) | {x2:.1f}× | {_verdict(x2 >= 10)} |")
        if "rank_cast_s" in e:
            x3 = e["rank_cast_s"] / e["rank_prefix_s"]
            L.append(f"| rank classification ≥ 2× the previous default on the same prompt (weights cast per op) | {x3:.2f}×{_bound(R, x3)} | {_verdict(x3 >= 2)} |")
        x4 = e["k_separate_s"] / e["k_pass_s"]
        L.append(f"| {e['k']} prompts scored in one pass ≥ 2× one by one | {x4:.2f}× | {_verdict(x4 >= 2)} |")
    if t and "tpv_percast" in tr:
        x5 = t["peak_rss_mib"] / tr["tpv_percast"]["peak_rss_mib"]
        L.append(f"| training peak memory no higher than before (`tpv_percast`) | {t['peak_rss_mib']:.0f} vs {tr['tpv_percast']['peak_rss_mib']:.0f} MiB | {_verdict(x5 <= 1.0)} |")
    if "cell" in R:
        x = R["cell"]["seq_step_s"] / R["cell"]["many_step_s"]
        L.append(f"| a few-shot cell ({R['cell']['k']} runs, batch 2) in one loop ≥ 3× the runs one after another | {x:.2f}× | {_verdict(x >= 3)} |")
    if "flops" in R:
        f = R["flops"]; share = f["achieved"] / max(f["matmul"].values())
        L.append(f"| a training step ≥ 50% of the best measured matmul FLOP/s (useful FLOPs) | {100 * share:.0f}% | {_verdict(share >= 0.5)} |")
        s2 = f["mid_useful_flops"] / f["mid_step_s"] / f["shape_rate"]["rate"]
        L.append(f"| a training step ≥ 40% of the matmul rate measured at its own shapes | {100 * s2:.0f}% | {_verdict(s2 >= 0.4)} |")
    L += ["", f"All measured on {_cpu()} ({os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads)."]
    return "\n".join(L) + "\n"

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = _args(argv)
    if args.worker:
        res = {}; WORKERS[args.worker](args, res); res["peak_rss_mib"] = _rss_mib()
        Path(args.result).write_text(json.dumps(res)); return
    setups = [s for s in args.setups.split(",") if s]
    bad = [s for s in setups if s not in SETUPS]
    if bad: raise SystemExit(f"unknown setup {bad[0]!r}; setups: {', '.join(SETUPS)}")
    t0 = time.time(); R = {}
    with tempfile.TemporaryDirectory() as d:
        wargv = [*argv, "--prompt-dir", d]  # the trained prompts: scored by the score worker, tpv's by the eval worker too
        for s in setups: R[s] = _run_worker(s, wargv)
        for s, acc in _run_worker("score", wargv).items():
            if s in R: R[s]["val_accuracy"] = acc
        for w in ("eval", "many", "cell", "flops") + (("compile",) if args.compile else ()): R[w] = _run_worker(w, wargv)
    text = report(args, argv, R, time.time() - t0)
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp"); tmp.write_text(text); tmp.replace(out)
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "results": R}, indent=1))
    print(text)

if __name__ == "__main__":
    main()
