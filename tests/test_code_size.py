"""The package keeps the project's size rules: every function ≤ 60 lines and ≤ 8 parameters."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lora_mini"
MAX_LINES, MAX_PARAMS = 60, 8


def _functions(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            params = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1, len(params)


def _too_big(path: Path):
    return [f"{path.relative_to(PACKAGE.parent)}:{line} {name}: {n} lines, {p} parameters"
            for name, line, n, p in _functions(path) if n > MAX_LINES or p > MAX_PARAMS]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_functions_are_small(path):
    big = _too_big(path)
    assert not big, f"split these (≤ {MAX_LINES} lines, ≤ {MAX_PARAMS} parameters, a config dataclass for more):\n" \
                    + "\n".join(big)


def test_the_rule_catches_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def long():\n{body}\n\ndef wide(a, b, c, d, e, f, g, h, i):\n    pass\n")
    found = [name for name, _, n, p in _functions(tmp_path / "m.py") if n > MAX_LINES or p > MAX_PARAMS]
    assert found == ["long", "wide"]
