"""The library's layout: each notebook imports only what earlier notebooks export, no function is over 60 lines, and the
quick start's settings are the `cpu` profile's."""
import ast, json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict:
    "module name → the notebook it is exported from."
    out = {}
    for f in (ROOT/"tpv").glob("*.py"):
        m = re.search(r"File to edit: \.\./nbs/([^ ]+)\.ipynb", f.read_text())
        if m: out[f.stem] = m.group(1)
    return out


def test_each_notebook_imports_only_earlier_ones():
    "Before: 09_experiments imported 11_stats, 12_regime and 13_paper."
    mods, late = _modules(), []
    for name, nb in mods.items():
        for node in ast.walk(ast.parse((ROOT/"tpv"/f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in mods and mods[node.module] >= nb:
                late.append(f"{nb} imports {mods[node.module]}")
    assert len(mods) >= 18 and not late, late


def test_no_function_over_60_lines():
    long = [f"{f.name}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for f in (ROOT/"tpv").glob("*.py") if f.name != "_modidx.py"
            for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno >= 60]
    assert not long, long


def test_the_quick_start_uses_the_cpu_profiles_settings():
    "The index notebook says its TuneConfig is the cpu profile's; evaluate the one it writes and compare."
    from tpv.engine import ReadSpec
    from tpv.profiles import PROFILES
    from tpv.tuning import TuneConfig
    cells = ["".join(c["source"]) for c in json.loads((ROOT/"nbs"/"index.ipynb").read_text())["cells"]]
    src = next(s for s in cells if "cfg = TuneConfig(" in s)
    expr = ast.get_source_segment(src, next(n.value for n in ast.parse(src).body if isinstance(n, ast.Assign) and n.targets[0].id == "cfg"))
    assert eval(expr, {"TuneConfig": TuneConfig, "ReadSpec": ReadSpec}) == PROFILES["cpu"].tune
