"The benchmark script end to end on the tiny model: every setup runs, and the report says met / not met for every target."
import json, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_reports_every_setup_and_target(tmp_path):
    out = tmp_path/"RESULTS.md"
    r = subprocess.run([sys.executable, str(ROOT/"benchmarks"/"bench.py"), "--model", "tiny-llama", "--steps", "3", "--short-steps", "3", "--lr-warmup", "1", "--warmup", "1",
                        "--n-val", "8", "--n-train", "32", "--k", "2", "--repeats", "1", "--cell-runs", "3", "--cell-shots", "8", "--eval-k", "2", "--no-compile", "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    text = out.read_text()
    for s in ("peft_paper", "peft_dynamic", "peft_dynamic_bf16", "tpv_percast", "tpv"): assert f"| `{s}` |" in text
    for h in ("## Training", "## Evaluation", "## Many prompts at once", "## A few-shot cell", "## FLOP/s of a training step",
              "### The limit at the step's own shapes", "### Where the time goes", "## Targets"): assert h in text
    targets = text.split("## Targets")[1]
    # 12: the tiny model runs in fp32, so there is no row for the weights held in bf16 against their per-op casts
    assert len(re.findall(r"\*\*(met|not met)\*\*", targets)) == 12, targets
    assert "All measured on " in targets
    res = json.loads(out.with_suffix(".json").read_text())["results"]
    # tune_many trained the same prompts as the sequential runs (tiny model, fp32)
    assert res["many"]["max_abs_diff"] < 1e-4 and not res["many"]["bf16"]
    f = res["flops"]
    assert f["step_flops"] > 0 and f["matmul"]["float32"] > 0
    # the profile accounts for the wall time by category; the shape-matched rate comes from the step's own products
    for p in (f["profile_step"], f["profile_eval"]):
        assert p["categories"]["matrix products"] > 0 and sum(p["categories"].values()) >= 0.99 * p["wall_s"]
    assert f["shape_rate"]["rate"] > 0 and all(x["count"] > 0 for x in f["shape_rate"]["shapes"])
    assert {x["shape"][3] for x in f["shape_rate"]["shapes"]} >= {64, 128}  # the tiny Llama's width and MLP
    assert all(0 <= res[s]["val_accuracy"] <= 1 for s in ("peft_paper", "tpv"))
    # the evaluation scored the prompt the tpv setup trained, not one trained again
    assert res["eval"]["prompt"] == "the tpv worker's" and res["eval"]["rank_prefix_accuracy"] == res["tpv"]["val_accuracy"]
    # K prompts in one pass score as they do one by one; the few-shot cell's loop trains the runs' own prompts
    assert res["eval"]["k"] == 2 and res["eval"]["k_max_abs_diff"] < 1e-3
    assert res["cell"]["k"] == 3 and res["cell"]["max_abs_diff"] < 1e-3


def test_bench_compile_worker(tmp_path):
    "torch.compile of the step on the tiny model: a compile time, both step times, and the same loss and gradient as eager."
    res = tmp_path/"c.json"
    r = subprocess.run([sys.executable, str(ROOT/"benchmarks"/"bench.py"), "--model", "tiny-llama", "--short-steps", "3", "--warmup", "1", "--n-train", "32",
                        "--worker", "compile", "--result", str(res)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    c = json.loads(res.read_text())
    assert "failed" not in c, c["failed"]
    assert c["compile_s"] > 0 and c["eager_s"] > 0 and c["compiled_s"] > 0 and c["graphs"] >= 1
    assert c["loss_rel_diff"] < 1e-4 and c["grad_cos"] > 0.999


def test_bench_refuses_an_unknown_setup(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT/"benchmarks"/"bench.py"), "--setups", "tpv,peft_papr", "--out", str(tmp_path/"r.md")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "unknown setup 'peft_papr'" in r.stderr and not (tmp_path/"r.md").exists()
