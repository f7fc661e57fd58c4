"""The library core (lora_mini/*.py) never imports the lab (lora_mini/lab)."""
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = sorted(p for p in (ROOT / "lora_mini").glob("*.py") if p.name != "__main__.py")


def test_importing_every_core_module_loads_no_lab_module():
    names = ["lora_mini"] + [f"lora_mini.{p.stem}" for p in CORE if p.stem != "__init__"]
    code = ("import importlib, json, sys\n"
            f"for n in {names!r}: importlib.import_module(n)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('lora_mini'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(names) <= set(loaded)
    assert not [m for m in loaded if m.startswith(("lora_mini.lab", "lora_mini.classroom"))]


def _imports(path: Path) -> list[str]:
    """Every module a file imports (absolute names; relative ones resolved against lora_mini)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ("lora_mini" + ("." + node.module if node.module else "")) if node.level else node.module
            found += [base] + [f"{base}.{a.name}" for a in node.names]
    return found


def test_no_core_source_mentions_the_lab():
    assert len(CORE) >= 13
    for path in CORE:
        bad = [m for m in _imports(path) if m and m.startswith(("lora_mini.lab", "lora_mini.classroom"))]
        assert not bad, (path.name, bad)
        assert "lora_mini.lab" not in path.read_text() and "from .lab" not in path.read_text(), path.name


def test_io_has_no_per_variant_branches():
    """io saves and loads through the layer contract only (no DoRA/PiSSA special cases)."""
    tree = ast.parse((ROOT / "lora_mini" / "io.py").read_text())
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    for word in ("DoRALinear", "is_pissa", "pissa_to_lora", "apply_variant", "variants", "pissa_A0"):
        assert word not in used, word
    assert not [m for m in _imports(ROOT / "lora_mini" / "io.py") if "variants" in m]


def test_no_environment_reads_outside_models():
    for path in CORE:
        if path.name != "models.py":
            assert "os.environ" not in path.read_text() and "getenv" not in path.read_text(), path.name
