"The `tpv` console script, run as a user runs it."
import subprocess, sys, shutil
from pathlib import Path

BIN = Path(sys.executable).parent


def run(*args):
    return subprocess.run([str(BIN/"tpv"), *args], capture_output=True, text=True, timeout=600)


def test_help():
    r = run("--help")
    assert r.returncode == 0 and "reproduce" in r.stdout and "models" in r.stdout


def test_models_lists_default():
    r = run("models")
    assert r.returncode == 0 and "smollm2-135m-instruct" in r.stdout.split()


def test_info():
    r = run("info")
    assert r.returncode == 0 and "torch 2." in r.stdout and "cache:" in r.stdout


def test_unknown_profile_is_one_clear_line():
    r = run("reproduce", "--profile", "cpus")
    assert r.returncode == 2 and "did you mean 'cpu'" in r.stderr and "Traceback" not in r.stderr
