"""Property-based tests that keep whole classes of bad input closed, not just the instances someone found.

Every public constructor, the data-frame check, the run store and the command line take arbitrary values here
(numpy numbers, wrong types, text where numbers go, NaN, empty and odd strings, paths with NUL bytes). Each either
works or raises a `TpvError` (one sentence that says what to fix); any other exception is a traceback a user would
see, and fails the test. What is accepted must also work downstream: a config that is made can be hashed and read
back, a frame that passes the check can be encoded."""
import contextlib, io, os, tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings, strategies as st

import tpv.reproduce as E  # the runner, and the store it imports
from tpv.profiles import PROFILES, ProfileError, get_profile, settings as profile_settings
from tpv.cli import main
from tpv.engine import ReadSpec, encode
from tpv.io import TpvError
from tpv.models import load_lm
from tpv.prompts import SoftPrompt, load_prompt
from tpv.tasks import Task, check_frame, few_shot, get_task
from tpv.tuning import TuneConfig
from tpv.vectors import TaskPromptVector, load_vector

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ODD_TEXT = st.sampled_from(["", " ", "..", "../x", "a/b", "\x00", "nan", "-1", "0", "1e9", "true", "false", "é", "None"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.integers(2**40, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6), ODD_TEXT,
                    st.integers(-3, 200).map(np.int64), st.floats(0, 2, width=32).map(np.float32), st.booleans().map(np.bool_))
VALUES = st.one_of(SCALARS, st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                   st.tuples(st.integers(), st.integers()))


def refused_cleanly(fn):
    "Run `fn`; a `TpvError` is a clean refusal. Returns the result, or None when refused."
    try: return fn()
    except TpvError as e:
        assert str(e).strip() and "\n" not in str(e).strip(), repr(e)  # one sentence, not a dump
        return None


@SETTINGS
@given(st.dictionaries(st.sampled_from([f.name for f in fields(TuneConfig)]), VALUES, max_size=4))
def test_tune_config_works_or_refuses(kw):
    c = refused_cleanly(lambda: TuneConfig(**kw))
    if c is not None:  # what is accepted is usable: it hashes (the store key) and reads back to itself
        assert len(c.hash()) == 12 and TuneConfig.from_dict(c.to_dict()) == c


FIELDS = ["style", "chat", "max_length", "peft_t5_split"]


@SETTINGS
@given(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=3), st.one_of(VALUES, st.dictionaries(st.sampled_from(FIELDS + ["other", ""]), VALUES, max_size=3)))
def test_read_spec_works_or_refuses(kw, spec):
    "The constructor with its own fields, and `ReadSpec.of` (what configs and stored records go through) with anything."
    for s in (refused_cleanly(lambda: ReadSpec(**kw)), refused_cleanly(lambda: ReadSpec.of(spec))):
        if s is not None: assert ReadSpec.of(s.to_dict()) == s


TENSORS = st.one_of(VALUES, st.builds(lambda r, c: torch.randn(r, c), st.integers(0, 3), st.integers(0, 3)),
                    st.builds(lambda n: torch.arange(n), st.integers(0, 4)), st.builds(lambda r: np.ones((r, 2)), st.integers(0, 3)),
                    st.just(torch.tensor([[float("nan")]])), st.just(torch.ones(2, 2, dtype=torch.complex64)))


@SETTINGS
@given(TENSORS, VALUES, VALUES)
def test_soft_prompts_and_vectors_work_or_refuse(t, model, tasks):
    p = refused_cleanly(lambda: SoftPrompt(t, model if isinstance(model, str) else "m"))
    if p is not None: assert p.tensor.dtype == torch.float32 and p.tensor.ndim == 2 and len(p.hash) == 16
    v = refused_cleanly(lambda: TaskPromptVector(t, tasks, "m"))
    if v is not None: assert all(isinstance(x, str) for x in v.tasks) and torch.isfinite(v.tensor).all()


@SETTINGS
@given(VALUES, st.one_of(VALUES, st.lists(st.text(max_size=4), max_size=4)), VALUES)
def test_tasks_work_or_refuse(name, labels, kind):
    refused_cleanly(lambda: Task(name if isinstance(name, str) else "t", ("text",), "t text: {text}", labels,
                                 kind=kind if isinstance(kind, str) else "classification"))


CELLS = st.one_of(st.text(max_size=6), ODD_TEXT, st.none(), st.floats(allow_nan=True), st.integers(-2, 3), st.booleans(),
                  st.lists(st.integers(), max_size=2), st.binary(max_size=3))
COLUMNS = st.lists(st.sampled_from(["sentence", "label", "text", 0, None, "sentence "]), min_size=0, max_size=4)


@pytest.fixture(scope="module")
def tiny(): return load_lm("tiny-llama")


@SETTINGS
@given(COLUMNS, st.lists(st.lists(CELLS, min_size=4, max_size=4), min_size=0, max_size=4))
def test_user_frames_pass_the_check_or_are_refused(tiny, cols, rows):
    "rt_polarity's frame needs `sentence` and a label in {0, 1}: anything else is one sentence, and what passes can be encoded."
    df = pd.DataFrame([r[:len(cols)] for r in rows], columns=cols) if cols else pd.DataFrame(index=range(len(rows)))
    ok = refused_cleanly(lambda: check_frame("rt_polarity", df))
    if ok is not None and len(ok): assert len(encode(tiny, "rt_polarity", ok, "t5")) == len(ok)


@SETTINGS
@given(VALUES, VALUES)
def test_sampling_takes_whole_counts_and_seeds_or_refuses(n, seed):
    refused_cleanly(lambda: few_shot("rt_polarity", n, seed))


@SETTINGS
@given(st.one_of(VALUES, ODD_TEXT), VALUES, VALUES)
@example("\x00", {"a": 1}, {}).via("a NUL byte in a store path")
@example("..", {"model": ".."}, {}).via("a kind that climbs out")
def test_the_store_works_or_refuses(kind, key, result):
    store = E.RunStore(tempfile.mkdtemp())
    rec = refused_cleanly(lambda: store.put(kind, key, result))
    if rec is not None:  # what was written is read back for the same key, from inside the store
        assert rec.path.resolve().is_relative_to(store.root.resolve())
        assert store.get(kind, key).result == rec.manifest["result"]
    here = os.getcwd()
    os.chdir(tempfile.mkdtemp())  # a relative store path is made in the working folder: never the checkout's
    try:
        refused_cleanly(lambda: E.RunStore(kind if isinstance(kind, str) and kind else None))
        for load in (load_prompt, load_vector): refused_cleanly(lambda: load(kind))
    finally: os.chdir(here)


WORDS = st.sampled_from(["smoke", "cpu", "paper", "cpus", "similarity", "addition,few_shot", "", " ", ",", "0", "5", "-1", "abc", "1e3",
                         "out", "store", "..", ".", "\x00", "a\x00b", "/proc/x", "records", "--help"])
OPTIONS = {"reproduce": ["--profile", "--only", "--timeout", "--out", "--store"], "verify": [], "info": [], "models": [], "": ["--version"]}
ARGV = st.sampled_from(sorted(OPTIONS)).flatmap(lambda cmd: st.lists(
    st.one_of(st.tuples(st.sampled_from(OPTIONS[cmd] or ["--help"]), WORDS), st.tuples(WORDS)), max_size=4).map(
    lambda parts: ([cmd] if cmd else []) + [w for part in parts for w in part]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ARGV)
@example(["reproduce", "--out", "\x00"]).via("a NUL byte in a path")
@example(["verify", "a\x00b"]).via("a NUL byte in a record path")
@example(["reproduce", "--profile", "smoke", "--out", ""]).via("an empty --out")
def test_the_command_line_answers_every_argument_list_in_one_line(monkeypatch, argv):
    "No argument list gives a traceback: each ends in an exit status, with at most one line of error. (The notebooks themselves are not run.)"
    monkeypatch.setattr(E, "_run_notebook", lambda *a, **k: None)
    monkeypatch.setattr(E, "write_readme", lambda out, *a, **k: Path(out)/"README.md")
    here = os.getcwd(); os.chdir(tempfile.mkdtemp())
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try: code = main(argv)
            except SystemExit as e: code = e.code  # argparse: --help, --version, or a usage error
    finally: os.chdir(here)
    assert code in (0, 1, 2, 130), (argv, code)
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue())
    if code and code != 2 or not err.getvalue(): return
    lines = [l for l in err.getvalue().splitlines() if l.startswith("tpv:")]
    assert len(lines) <= 1, (argv, err.getvalue())


def test_numpy_numbers_are_taken_as_numbers(tiny):
    "Counts and settings that come out of numpy or pandas (np.int64(5) steps) are the numbers they are, with the same store keys."
    from tpv.prompts import make_origins
    assert TuneConfig(max_steps=np.int64(5), lr=np.float32(0.5), keep_init=np.bool_(True)).hash() == TuneConfig(max_steps=5, lr=0.5, keep_init=True).hash()
    assert ReadSpec(max_length=np.int64(64), peft_t5_split=np.bool_(False)) == ReadSpec(max_length=64)
    assert [o.hash for o in make_origins(tiny, np.int64(2), np.int64(3))] == [o.hash for o in make_origins(tiny, 2, 3)]
    assert few_shot("rt_polarity", np.int64(4), np.int64(1)).equals(few_shot("rt_polarity", 4, 1))


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                   st.lists(st.integers(-2, 50), max_size=4), st.lists(st.text(max_size=6), max_size=3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(sorted(profile_settings(PROFILES["cpu"]))) | st.text(max_size=20), value=VALUES)
def test_a_profile_override_applies_or_is_refused_in_one_line(path, value):
    "Any dotted path with any value gives a checked profile or one ProfileError line, never another exception; the profile itself is unchanged."
    before = profile_settings(PROFILES["cpu"])
    try: p = get_profile("cpu", {path: value})
    except ProfileError as e: assert "\n" not in str(e) and str(e)
    else:
        got = profile_settings(p)[path]
        assert got == (tuple(value) if isinstance(value, list) else value) or (isinstance(value, int) and got == float(value))
    assert profile_settings(PROFILES["cpu"]) == before
