"""Every exercise check rejects the usual wrong answers and accepts other right forms.

The answers are the source of a student's answer cell (tests/exercise_cases/chNN.py); each runs in a
fresh namespace holding only what the chapter's `setup` cells define, like the student's notebook.
"""
import contextlib
import importlib
import io
import re
from pathlib import Path

import pytest

from lora_mini.classroom.notebook import chapter_id, exercises, is_setup, read, source_notebooks

CASES_DIR = Path(__file__).parent / "exercise_cases"


def _chapters():
    out = {}
    for path in source_notebooks():
        nb = read(path)
        setup = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and is_setup(c))
        for ex in exercises(nb):
            if ex.graded is not None:
                out[ex.key] = (path.name, setup, re.search(r"check_\d+[a-z]?_\d+\((\w+)\)", nb.cells[ex.graded].source).group(1),
                               nb.cells[ex.graded].source)
    return out


EXERCISES = _chapters()


def _cases():
    cases = {}
    for f in sorted(CASES_DIR.glob("ch[0-9][0-9]*.py")):
        cases.update(importlib.import_module(f"exercise_cases.{f.stem}").CASES)
    return cases


CASES = _cases()


def _answer(key, src):
    """The student's object: the setup cells, then the answer cell's source, in a fresh namespace."""
    _, setup, name, _ = EXERCISES[key]
    ns = {}
    exec(setup, ns)
    exec(src, ns)
    return ns, ns[name]


def _run(key, src):
    """(grade's exception or None, what check printed)."""
    ns, answer = _answer(key, src)
    tag = key.replace(".", "_")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ns[f"check_{tag}"](answer)                    # must never raise
    try:
        ns[f"grade_{tag}"](answer)
        return None, out.getvalue()
    except Exception as err:              # the grader gives 0 for any error
        return err, out.getvalue()


def test_every_exercise_has_cases():
    assert EXERCISES, "no source notebooks with exercises"
    missing = sorted(set(EXERCISES) - set(CASES))
    assert not missing, f"add wrong and right answers for {missing} to tests/exercise_cases/chNN.py"
    for key, c in CASES.items():
        assert key in EXERCISES, f"cases for {key}, but no such graded exercise in chapters/solutions/"
        assert len(c["wrong"]) >= 2 and len(c["right"]) >= 1, f"{key}: at least two wrong and one right answer"


@pytest.mark.parametrize("key,i", [(k, i) for k, c in sorted(CASES.items()) for i in range(len(c["wrong"]))])
def test_wrong_answer_is_rejected(key, i):
    err, printed = _run(key, CASES[key]["wrong"][i])
    assert err is not None and not isinstance(err, NotImplementedError), \
        f"{key}: grade accepted the wrong answer\n{CASES[key]['wrong'][i]}"
    assert printed.startswith("✗"), f"{key}: check printed {printed!r} for a wrong answer"


@pytest.mark.parametrize("key,i", [(k, i) for k, c in sorted(CASES.items()) for i in range(len(c["right"]))])
def test_other_right_form_is_accepted(key, i):
    err, printed = _run(key, CASES[key]["right"][i])
    assert err is None, f"{key}: a right answer was refused: {err}"
    assert printed.startswith("✓"), printed


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_stub_is_not_attempted(key):
    src = f"def {EXERCISES[key][2]}(*args, **kwargs):\n    raise NotImplementedError"
    err, printed = _run(key, src)
    assert isinstance(err, NotImplementedError) and "not attempted yet" in printed


@pytest.mark.parametrize("path", source_notebooks(), ids=lambda p: p.stem)
def test_check_source_has_no_literal_answers(path):
    """A check module computes what it expects; it does not spell out the notebook's solution lines."""
    nb = read(path)
    chapter = chapter_id(path)
    module = Path(importlib.import_module(f"lora_mini.classroom.checks.ch{chapter}").__file__).read_text()
    for ex in exercises(nb):
        for i in ex.cells:
            src = nb.cells[i].source
            if "### BEGIN SOLUTION" not in src or nb.cells[i].cell_type != "code":
                continue
            body = src.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            for line in body.split("\n"):
                code = line.split("#")[0].strip()
                if len(code) > 25 and not code.startswith(("super()", "self.base = base", "for p in")):
                    assert code not in module, f"{ex.key}: the check module contains the solution line {code!r}"
