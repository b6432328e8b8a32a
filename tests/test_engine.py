"Integration tests of the engine: prompts (PEFT format), the prompted forward, tune(), evaluation."
import json, math
from dataclasses import replace
import numpy as np, pandas as pd, pytest, torch
from peft import PeftModel, PromptTuningConfig, TaskType, get_peft_model, set_peft_model_state_dict
import tpv.tuning as TU
from tpv.evaluation import compute_metrics, evaluate, predict
from tpv.io import TpvError
from tpv.models import load_lm
from tpv.prompts import PromptError, SoftPrompt, load_prompt, make_origins, origin_ids, save_prompt
from tpv.tasks import load_split
from tpv.engine import ReadSpec, collate, encode, target_logprobs
from tpv.tuning import ConfigError, TuneConfig, tune

TOY = load_split("rt_polarity", "train").head(16)
CFG = TuneConfig(lr=0.3, warmup_steps=0, batch_size=8, max_steps=60, eval_every=30, reading=ReadSpec(style="t5"))


@pytest.fixture(scope="module")
def tiny(): return load_lm("tiny-llama")


@pytest.fixture(scope="module")
def t5(): return load_lm("tiny-t5")


# ---- prompts ----
def test_origins_follow_the_official_procedure(tiny):
    np.random.seed(1024)  # create_origin.py: seed once, then one permutation per origin
    official = [np.random.permutation(range(5000))[:10] for _ in range(3)]
    for a, b in zip(origin_ids(3, 10), official): assert (a == b).all()
    V = tiny.embeddings.weight.shape[0]  # the tiny vocabulary is smaller than 5,000: ids come from all of it
    np.random.seed(1024); official = [np.random.permutation(range(V))[:10] for _ in range(3)]
    o = make_origins(tiny, 3, 10)
    assert torch.equal(o[1].tensor, tiny.embeddings.weight[torch.from_numpy(official[1])])
    assert all(torch.equal(a.tensor, b.tensor) for a, b in zip(o, make_origins(tiny, 3, 10)))


def test_peft_loads_a_tpv_prompt_with_the_same_logits(tiny, tmp_path):
    p = make_origins(tiny, 1, 6)[0]
    save_prompt(p, tmp_path/"p", tiny)
    ids = tiny.tokenizer(["a fine film", "a dull one"], return_tensors="pt", padding=True)
    pm = PeftModel.from_pretrained(load_lm("tiny-llama").model, str(tmp_path/"p"))
    with torch.no_grad():
        theirs = pm(input_ids=ids.input_ids, attention_mask=ids.attention_mask).logits
        x = torch.cat([p.tensor.expand(2, -1, -1), tiny.embeddings(ids.input_ids)], 1)
        m = torch.cat([torch.ones(2, 6, dtype=torch.long), ids.attention_mask], 1)
        ours = tiny.model(inputs_embeds=x, attention_mask=m).logits
    assert torch.allclose(theirs, ours, atol=1e-5)


def test_a_peft_trained_adapter_loads_into_tpv(tmp_path):
    base = load_lm("tiny-llama").model
    pm = get_peft_model(base, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=5))
    opt = torch.optim.SGD(pm.parameters(), lr=1.0)
    ids = torch.tensor([[5, 6, 7, 8]])
    pm(input_ids=ids, labels=ids).loss.backward(); opt.step()  # one real PEFT training step
    pm.save_pretrained(str(tmp_path/"peft"))
    p = load_prompt(tmp_path/"peft")
    assert torch.equal(p.tensor, pm.get_prompt_embedding_to_save("default").float()) and p.rows == 5


@pytest.mark.parametrize("case,msg", [("missing_config", "not a PEFT adapter"), ("missing_weights", "has no weights"),
                                      ("corrupt", "is corrupt"), ("lora", "LORA adapter"), ("bad_json", "not valid JSON")])
def test_bad_adapter_directories(tiny, tmp_path, case, msg):
    d = save_prompt(make_origins(tiny, 1, 4)[0], tmp_path/"a", tiny)
    if case == "missing_config": (d/"adapter_config.json").unlink()
    if case == "missing_weights": (d/"adapter_model.safetensors").unlink()
    if case == "corrupt": (d/"adapter_model.safetensors").write_bytes(b"not a safetensors file at all")
    if case == "lora": (d/"adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    if case == "bad_json": (d/"adapter_config.json").write_text("{oops")
    with pytest.raises(PromptError, match=msg): load_prompt(d)


def test_nan_prompt_refused():
    with pytest.raises(PromptError, match="NaN or inf"): SoftPrompt(torch.full((2, 4), float("inf")), "m")


def test_prompt_from_another_model_refused(tiny):
    other = make_origins(load_lm("tiny-t5"), 1, 4)[0]
    with pytest.raises(PromptError, match="made for 'tiny-t5'"): tune(tiny, "rt_polarity", other, CFG, train=TOY, validation=TOY)


# ---- the prompted forward ----
def test_loss_is_on_target_tokens_only(tiny):
    "Our loss equals the HF model's own loss with every non-target label set to -100."
    enc = encode(tiny, "rt_polarity", TOY.head(1), spec="t5")
    s, t = enc.src[0], enc.tgt[0]
    p = make_origins(tiny, 1, 4)[0].tensor
    ours = -target_logprobs(tiny, p, collate(tiny, [(s, t)])).sum() / len(t)
    ids = torch.tensor([s + t])
    labels = torch.tensor([[-100] * (4 + len(s)) + t])
    with torch.no_grad():
        hf = tiny.model(inputs_embeds=torch.cat([p[None], tiny.embeddings(ids)], 1), labels=labels).loss
    assert torch.allclose(ours, hf, atol=1e-5)
    # and a loss over input tokens too would differ: the masking matters
    with torch.no_grad():
        allpos = tiny.model(inputs_embeds=torch.cat([p[None], tiny.embeddings(ids)], 1),
                            labels=torch.tensor([[-100] * 4 + s + t])).loss
    assert not torch.allclose(ours, allpos, atol=1e-3)


def test_padding_does_not_change_scores(tiny):
    enc = encode(tiny, "rt_polarity", TOY.head(6), spec="t5")
    p = make_origins(tiny, 1, 4)[0].tensor
    batched = target_logprobs(tiny, p, collate(tiny, list(zip(enc.src, enc.tgt)))).sum(1)
    single = torch.stack([target_logprobs(tiny, p, collate(tiny, [(s, t)])).sum() for s, t in zip(enc.src, enc.tgt)])
    assert torch.allclose(batched, single, atol=1e-4)


def test_t5_prompt_matches_peft_and_the_papers_split(t5):
    """Seq2seq prompts: tpv's encoder prompt gives PEFT 0.21's loss; faithful mode gives PEFT <= 0.14's
    (the paper's) loss, written out here with HF's own label masking: rows 0-3 before the encoder,
    rows 4-7 before the decoder, their label positions -100."""
    enc = encode(t5, "rt_polarity", TOY.head(1), spec="t5")
    s, t = enc.src[0], enc.tgt[0]
    p = make_origins(t5, 1, 8)[0].tensor  # 8 rows = 4 virtual tokens x 2 submodules, as PEFT saves T5 prompts
    pm = get_peft_model(load_lm("tiny-t5").model, PromptTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=4))
    set_peft_model_state_dict(pm, {"prompt_embeddings": p})
    with torch.no_grad(): peft_now = pm(input_ids=torch.tensor([s]), labels=torch.tensor([t])).loss
    encoder_only = -target_logprobs(t5, p[:4], collate(t5, [(s, t)])).sum() / len(t)
    assert torch.allclose(encoder_only, peft_now, atol=1e-5)
    split = -target_logprobs(t5, p, collate(t5, [(s, t)]), peft_t5_split=True).sum() / len(t)
    dec_in = torch.tensor([[t5.model.config.decoder_start_token_id] + t[:-1]])
    with torch.no_grad():
        paper = t5.model(inputs_embeds=torch.cat([p[None, :4], t5.embeddings(torch.tensor([s]))], 1),
                         decoder_inputs_embeds=torch.cat([p[None, 4:], t5.embeddings(dec_in)], 1),
                         labels=torch.tensor([[-100] * 4 + t])).loss
    assert torch.allclose(split, paper, atol=1e-5) and not torch.allclose(split, encoder_only, atol=1e-3)


# ---- tune ----
def test_loss_falls_on_a_toy_task(tiny):
    r = tune(tiny, "rt_polarity", make_origins(tiny, 1, 8)[0], CFG, train=TOY, validation=TOY, progress=False)
    assert r.history[-1]["val_loss"] < 0.5 * r.history[0]["val_loss"]
    assert r.prompt.meta["origin"] == "origin_0" and r.best_step > 0


def test_same_seed_same_data_bit_identical(tiny):
    a = tune(tiny, "rt_polarity", make_origins(tiny, 1, 8)[0], CFG, train=TOY, validation=TOY, progress=False)
    b = tune(tiny, "rt_polarity", make_origins(tiny, 1, 8)[0], CFG, train=TOY, validation=TOY, progress=False)
    assert torch.equal(a.prompt.tensor, b.prompt.tensor)
    c = tune(tiny, "rt_polarity", make_origins(tiny, 1, 8)[0], replace(CFG, seed=7), train=TOY, validation=TOY, progress=False)
    assert not torch.equal(a.prompt.tensor, c.prompt.tensor)


@pytest.mark.parametrize("kw,msg", [(dict(lr=-0.1), "lr must be positive"), (dict(max_steps=0), "max_steps must be at least 1"),
                                    (dict(batch_size=0), "batch_size must be at least 1"), (dict(max_steps=None, epochs=0), "epochs must be positive")])
def test_bad_configs_refused_before_work(tiny, kw, msg):
    with pytest.raises(ConfigError, match=msg): tune(tiny, "rt_polarity", make_origins(tiny, 1, 4)[0], replace(CFG, **kw))


def test_multitask_batches_sample_both_tasks(tiny, monkeypatch):
    other = load_split("tweets_polarity", "train").head(16)
    seen = []
    real = TU.collate
    def spy(lm, pairs): seen.append(pairs); return real(lm, pairs)
    monkeypatch.setattr(TU, "collate", spy)
    encs = [encode(tiny, t, d, "t5") for t, d in (("rt_polarity", TOY), ("tweets_polarity", other))]
    srcs = [set(map(tuple, e.src)) for e in encs]
    r = tune(tiny, ["rt_polarity", "tweets_polarity"], make_origins(tiny, 1, 4)[0], replace(CFG, max_steps=6, eval_every=100, eval_accuracy=False),
             train=[TOY, other], validation=[TOY, other], progress=False)
    train_batches = [b for b in seen if len(b) == 8]
    assert len(train_batches) == 6
    for b in train_batches:
        n0 = sum(tuple(s) in srcs[0] for s, _ in b); n1 = sum(tuple(s) in srcs[1] for s, _ in b)
        assert n0 == n1 == 4
    assert {"rt_polarity/val_loss", "tweets_polarity/val_loss"} <= set(r.history[-1]) and r.prompt.meta["tasks"] == ["rt_polarity", "tweets_polarity"]


# ---- evaluation ----
def test_rank_and_generation_agree_after_overfitting(tiny):
    r = tune(tiny, "rt_polarity", make_origins(tiny, 1, 16)[0], replace(CFG, max_steps=100, eval_every=50), train=TOY, validation=TOY, progress=False)
    rk = predict(tiny, r.prompt, "rt_polarity", TOY, "rank", "t5")
    gn = predict(tiny, r.prompt, "rt_polarity", TOY, "generate", "t5")
    assert (rk.pred == rk.label).all() and rk.pred.tolist() == gn.pred.tolist()


def test_generation_with_padding_matches_one_by_one(tiny):
    from tpv.evaluation import generate
    enc = encode(tiny, "rt_polarity", TOY.head(5), spec="t5")
    p = make_origins(tiny, 1, 4)[0].tensor
    batched = generate(tiny, p, enc.src, 4, batch_size=5)
    single = [generate(tiny, p, [s], 4, batch_size=1)[0] for s in enc.src]
    assert batched == single


def test_evaluate_no_prompt_and_metrics_keys(tiny):
    m = evaluate(tiny, None, "tweets_3class", n=30)
    assert m["n"] == 30 and {"accuracy", "macro_f1"} <= set(m) and len(m["preds"]) == len(m["labels"]) == 30
    p, y = np.array(m["preds"]), np.array(m["labels"])
    assert m["accuracy"] == pytest.approx((p == y).mean())  # the score is the share of its own predictions that are right
    assert (np.bincount(y, minlength=3) > 0).all()  # a stratified sample holds all 3 classes


def test_metrics_invalid_generation_counts_wrong():
    m = compute_metrics("rt_polarity", [-1, -1], [1, 0])
    assert m["accuracy"] == 0 and m["f1"] == 0 and m["invalid"] == 1


def test_instruct_style_uses_the_chat_template_when_there_is_one():
    lm = load_lm("tiny-llama")
    lm.tokenizer.chat_template = ("{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}"
                                  "{% if add_generation_prompt %}<s>{% endif %}")
    enc = encode(lm, "rt_polarity", TOY.head(2), spec="instruct")
    assert enc.src[0][0] == 3 and enc.src[0][-1] == 3  # <s> user turn ... <s> (the assistant turn starts)
    assert lm.tokenizer.decode(enc.choices[1][:-1]).strip() == "positive"
    plain = encode(lm, "rt_polarity", TOY.head(2), ReadSpec(style="instruct", chat=False))
    assert plain.src[0][0] != 3 and len(plain.src[0]) < len(enc.src[0])
    assert encode(lm, "rt_polarity", TOY.head(2), spec="t5").src[0][0] != 3  # the t5 style never uses it


def test_the_cache_goes_by_the_name_the_model_declares():
    "transformers 5.24 renamed the models' `past_key_values` to `cache` (removed in 5.40); the engine follows each model's own forward, before and after."
    from dataclasses import dataclass
    from tpv.engine import _cache_in, _cache_out

    class Before(torch.nn.Module):
        def forward(self, inputs_embeds=None, past_key_values=None, use_cache=None): return inputs_embeds

    class After(torch.nn.Module):
        def forward(self, inputs_embeds=None, cache=None, use_cache=None): return inputs_embeds

    assert list(_cache_in(Before(), "kv")) == ["past_key_values"] and list(_cache_in(After(), "kv")) == ["cache"]

    @dataclass
    class OldOut:
        last_hidden_state: object = None
        past_key_values: object = None

    @dataclass
    class NewOut:
        last_hidden_state: object = None
        cache: object = None

    assert _cache_out(OldOut(past_key_values="kv")) == "kv" and _cache_out(NewOut(cache="kv")) == "kv"
