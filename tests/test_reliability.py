"Crashes: a tuning run killed mid-way (SIGKILL, in a subprocess) resumes from its checkpoint to the same prompt."
import subprocess, sys, textwrap, time
import pytest, torch
from tpv.io import TpvError
from tpv.models import load_lm
from tpv.prompts import make_origins
from tpv.tasks import load_split
from tpv.engine import ReadSpec
from tpv.tuning import TuneConfig, tune

CFG = dict(lr=0.3, warmup_steps=0, batch_size=8, max_steps=80, eval_every=20, reading=ReadSpec(style="t5"))
SCRIPT = textwrap.dedent(f"""
    import sys, time, torch
    import tpv.tuning as T
    from tpv.models import load_lm
    from tpv.prompts import make_origins
    from tpv.tasks import load_split
    from tpv.engine import ReadSpec
    lm = load_lm("tiny-llama"); toy = load_split("rt_polarity", "train").head(16)
    r = T.tune(lm, "rt_polarity", make_origins(lm, 1, 8)[0], T.TuneConfig(**{CFG!r}), train=toy, validation=toy,
               progress=False, checkpoint=sys.argv[1], checkpoint_every=5,
               on_step=lambda step: time.sleep(0.04))  # slow enough to be killed mid-run
    torch.save(r.prompt.tensor, sys.argv[2])
""")


def _step(ck):
    try: return torch.load(ck, weights_only=False)["step"]
    except FileNotFoundError: return 0


def test_killed_tuning_resumes_to_the_uninterrupted_prompt(tmp_path):
    script, ck, out = tmp_path / "run.py", tmp_path / "run.ckpt", tmp_path / "prompt.pt"
    script.write_text(SCRIPT)
    kills = []
    for kill_after in (10, 40):  # kill twice, at later and later points, then let it finish
        p = subprocess.Popen([sys.executable, str(script), str(ck), str(out)])
        deadline = time.monotonic() + 120  # a hang fails the test instead of stalling it
        while _step(ck) < kill_after:
            assert p.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        p.kill(); p.wait(); kills.append(_step(ck))
        assert not out.exists()
    subprocess.run([sys.executable, str(script), str(ck), str(out)], check=True, timeout=300)
    assert kills[0] >= 10 and kills[1] >= 40 and not ck.exists()  # resumed past each kill; the checkpoint is gone at the end
    lm = load_lm("tiny-llama"); toy = load_split("rt_polarity", "train").head(16)
    clean = tune(lm, "rt_polarity", make_origins(lm, 1, 8)[0], TuneConfig(**CFG), train=toy, validation=toy, progress=False)
    assert torch.equal(torch.load(out), clean.prompt.tensor)


def test_corrupt_or_foreign_checkpoint_is_refused(tmp_path):
    lm = load_lm("tiny-llama"); toy = load_split("rt_polarity", "train").head(16); o = make_origins(lm, 1, 8)[0]
    ck = tmp_path / "run.ckpt"
    ck.write_bytes(b"not a checkpoint")
    with pytest.raises(TpvError, match="not a tpv checkpoint; tpv leaves it alone"):  # someone's file: never called damaged, never deleted
        tune(lm, "rt_polarity", o, TuneConfig(**CFG), train=toy, validation=toy, progress=False, checkpoint=ck)
    assert ck.read_bytes() == b"not a checkpoint"
    ck.unlink()
    def crash(step):
        if step == 20: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        tune(lm, "rt_polarity", o, TuneConfig(**CFG), train=toy, validation=toy, progress=False, checkpoint=ck, checkpoint_every=5, on_step=crash)
    assert ck.exists()
    with pytest.raises(TpvError, match="belongs to another run"):  # other data
        tune(lm, "rt_polarity", o, TuneConfig(**CFG), train=toy.head(8), validation=toy, progress=False, checkpoint=ck)
    cut = tmp_path/"cut.ckpt"; cut.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])  # a checkpoint cut short (a full disk)
    with pytest.raises(TpvError, match="is damaged .*delete it to start the run over"):
        tune(lm, "rt_polarity", o, TuneConfig(**CFG), train=toy, validation=toy, progress=False, checkpoint=cut)
