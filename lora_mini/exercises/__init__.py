"""Self-checks for the chapters' exercises: `check_exercise_<chapter>_<n>(your_answer)`.

Each chapter's checks live in `chNN.py` beside this file; all of them are importable from here:

    from lora_mini.exercises import check_exercise_3_2
    check_exercise_3_2(my_lora_forward)   # raises AssertionError saying what is wrong, or prints ✓

Reference solutions live in chapters/solutions/chNN_solutions.py (tests/test_exercises.py
checks that each one passes its check).
"""
import importlib
import pkgutil

__all__: list[str] = []
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name.startswith("ch"):
        _mod = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in dir(_mod):
            if _name.startswith("check_exercise_"):
                globals()[_name] = getattr(_mod, _name)
                __all__.append(_name)
