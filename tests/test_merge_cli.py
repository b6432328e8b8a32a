"`tpv merge` as a user runs it: adapters in (tpv's, PEFT's), one PEFT adapter out, and every bad input one line."
import subprocess, sys, warnings
from pathlib import Path

import pytest
import torch

BIN = Path(sys.executable).parent


def merge(*args):
    return subprocess.run([str(BIN/"tpv"), "merge", *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    "Two tpv prompts of the tiny model, one of another length, one of another model, and a LoRA adapter."
    from peft import LoraConfig, get_peft_model
    from tpv.models import tiny_lm
    from tpv.prompts import SoftPrompt, save_prompt
    d = tmp_path_factory.mktemp("adapters")
    g = torch.Generator().manual_seed(0)
    a = save_prompt(SoftPrompt(torch.randn(4, 64, generator=g), "tiny-llama", init="random"), d/"a")
    b = save_prompt(SoftPrompt(torch.randn(4, 64, generator=g), "tiny-llama", init="random"), d/"b")
    long = save_prompt(SoftPrompt(torch.randn(8, 64, generator=g), "tiny-llama", init="random"), d/"long")
    other = save_prompt(SoftPrompt(torch.randn(4, 64, generator=g), "tiny-t5", "seq2seq", init="random"), d/"other")
    lora = get_peft_model(tiny_lm().model, LoraConfig(r=2, target_modules=["q_proj"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        lora.save_pretrained(str(d/"lora"))
    return {"a": a, "b": b, "long": long, "other": other, "lora": d/"lora", "dir": d}


def test_merge_writes_an_adapter_and_says_how(adapters, tmp_path):
    from tpv.prompts import load_prompt
    a, b = adapters["a"], adapters["b"]
    r = merge(a, b, "--out", tmp_path/"m", "--method", "ties", "--param", "density=0.5", "--weights", "0.5,0.5")
    assert r.returncode == 0, r.stderr
    assert "2 adapter(s) by ties (density=0.5, majority_sign_method=total), weights [0.5, 0.5]" in r.stdout, r.stdout
    card = (tmp_path/"m"/"README.md").read_text()
    assert '"method": "ties"' in card and load_prompt(a).hash in card and "none: each vector is its adapter" in card
    assert load_prompt(tmp_path/"m").meta["merge"]["settings"] == {"density": 0.5, "majority_sign_method": "total"}


@pytest.mark.parametrize("case,said", [
    ("missing", "is not a directory"),
    ("lora", "is a LORA adapter, not a prompt-tuning one"),
    ("model", "is an adapter of 'tiny-t5', but"),
    ("length", "is a prompt of 8 tokens × 64, but"),
    ("theirs", "holds files tpv did not write"),
    ("param", "The merge 'ties' has no setting 'densty'"),
    ("method", "Unknown merge method 'tie'"),
    ("weights", "--weights is a comma-separated list of numbers"),
    ("both", "Give the weights or one λ for all, not both."),
    ("count", "2 adapters but 3 weights."),
])
def test_bad_input_is_one_line(adapters, tmp_path, case, said):
    a, b = adapters["a"], adapters["b"]
    (tmp_path/"theirs").mkdir()
    (tmp_path/"theirs"/"notes.txt").write_text("mine")
    args = {"missing": (a, tmp_path/"nowhere"), "lora": (a, adapters["lora"]), "model": (a, adapters["other"]),
            "length": (a, adapters["long"]), "theirs": (a, b), "param": (a, b, "--method", "ties", "--param", "densty=1"),
            "method": (a, b, "--method", "tie"), "weights": (a, b, "--weights", "half,half"),
            "both": (a, b, "--weights", "1,1", "--lambda", "0.5"), "count": (a, b, "--weights", "1,1,1")}[case]
    out = tmp_path/("theirs" if case == "theirs" else "out")
    r = merge(*args, "--out", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and said in r.stderr, r.stderr
    assert (tmp_path/"theirs"/"notes.txt").read_text() == "mine"
    assert not (tmp_path/"out").exists()


def test_peft_adapter_and_tpv_adapter_merge_on_the_default_model(tmp_path):
    "A PEFT prompt-tuning adapter of SmolLM2 (trained by PEFT) and a tpv one, merged: PEFT loads it, logits agree."
    import copy
    from peft import PeftModel, PromptTuningConfig, TaskType, get_peft_model
    from tpv.models import load_lm
    from tpv.prompts import load_prompt, make_origins, save_prompt
    lm = load_lm(bf16=False, resident=False)
    base = copy.deepcopy(lm.model)
    pm = get_peft_model(lm.model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=8))
    ids = lm.tokenizer(["a fine film", "a dull film"], return_tensors="pt", padding=True).input_ids
    opt = torch.optim.SGD([q for q in pm.parameters() if q.requires_grad], lr=0.1)
    for _ in range(2):
        pm(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        pm.save_pretrained(str(tmp_path/"peft"))
    save_prompt(make_origins(lm, n=1, n_tokens=8)[0], tmp_path/"tpv")
    r = merge(tmp_path/"peft", tmp_path/"tpv", "--out", tmp_path/"m", "--method", "iso_c", "--lambda", "0.5",
              "--model", "smollm2-135m-instruct")
    assert r.returncode == 0, r.stderr
    merged = load_prompt(tmp_path/"m")
    assert merged.model == "smollm2-135m-instruct" and merged.meta["merge"]["method"] == "iso_c"
    loaded = PeftModel.from_pretrained(base, str(tmp_path/"m"))
    with torch.no_grad():
        got = loaded(input_ids=ids).logits
        emb = torch.cat([merged.tensor.expand(len(ids), -1, -1), base.get_input_embeddings()(ids)], 1)
        want = base(inputs_embeds=emb).logits
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
