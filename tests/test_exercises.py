"""Every reference solution in chapters/solutions/ passes its exercise's self-check.

Convention: chapters/solutions/chNN_solutions.py defines SOLUTIONS = {"N_M": answer, ...};
lora_mini.exercises.check_exercise_N_M(answer) raises AssertionError if the answer is wrong.
"""
import importlib.util
from pathlib import Path

import pytest

import lora_mini.exercises as ex

SOLUTIONS_DIR = Path(__file__).resolve().parents[1] / "chapters" / "solutions"


def _solutions():
    for file in sorted(SOLUTIONS_DIR.glob("ch*_solutions.py")):
        spec = importlib.util.spec_from_file_location(file.stem, file)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for key, answer in mod.SOLUTIONS.items():
            yield pytest.param(key, answer, id=f"{file.stem}:{key}")


@pytest.mark.parametrize("key,answer", list(_solutions()))
def test_solution_passes_its_check(key, answer):
    check = getattr(ex, f"check_exercise_{key}")
    check(answer)


def test_every_check_has_a_solution():
    solved = {p.values[0] for p in _solutions()}
    checks = {n[len("check_exercise_"):] for n in ex.__all__}
    assert checks == solved, f"checks without solutions: {checks - solved}; solutions without checks: {solved - checks}"
