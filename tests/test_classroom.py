"""The classroom tool: build the student edition, grade submissions (lora_mini/classroom/).

For every chapter: the committed student edition is exactly what `build` writes (so the build is
deterministic and up to date) and holds no solution or hidden test; the solutions get full marks,
the untouched student edition gets zero without crashing, and planted wrong answers get zero.
"""
import copy
import importlib
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lora_mini.classroom import build_chapter, grade
from lora_mini.classroom.notebook import (BEGIN_SOLUTION, END_SOLUTION, CHAPTERS, chapter_id, exercises, first_exercise, leaks, read,
                                          strip_source, student_edition)

# Chapters whose exercises are not in the classroom convention yet (no chapters/solutions/NN_*.ipynb).
# Empty this set as their sources arrive: a chapter listed here that has a source fails the test.
PENDING: set = set()   # chapters without a source notebook yet (none)
STUDENT = sorted(p for p in CHAPTERS.glob("[0-9][0-9]*_*.ipynb"))
CHAPTER_IDS = [chapter_id(p) for p in STUDENT]


def _source(ch):
    return CHAPTERS / "solutions" / next(p.name for p in STUDENT if chapter_id(p) == ch)


def _solution_lines(nb):
    """The non-trivial lines inside the solution regions of a source notebook."""
    lines = []
    for c in nb.cells:
        for region in c.source.split(BEGIN_SOLUTION)[1:]:
            for line in region.split(END_SOLUTION)[0].split("\n"):
                code = line.split("  #")[0].strip()
                if len(code) > 20 and not code.startswith(("super()", "for p in", "self.base = base")):
                    lines.append(code)
    return lines


# ---------------------------------------------------------------- a small synthetic chapter

def _synthetic():
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [
        new_markdown_cell("# Toy chapter"), new_code_cell("BODY = 1\nprint('body output', BODY)"),
        new_code_cell("def check_9_1(f):\n    try:\n        ok = f(3) == 9 and f(-2) == 4\n    except NotImplementedError:\n"
                      "        print('not attempted yet'); return\n    print('✓' if ok else '✗ square it')\n"
                      "def grade_9_1(f):\n    assert f(3) == 9 and f(-2) == 4", metadata={"tags": ["setup"]}),
        new_markdown_cell("### Exercise 9.1: square\nWrite `square(x)`. **Hint:** multiply."),
        new_code_cell("def square(x):\n    ### BEGIN SOLUTION\n    return x * x  # SECRET_CODE\n    ### END SOLUTION"),
        new_code_cell("check_9_1(square)\n### BEGIN HIDDEN TESTS\ngrade_9_1(square)  # HIDDEN_CALL\n### END HIDDEN TESTS"),
        new_markdown_cell("### Exercise 9.2: explain\nWhy?"),
        new_markdown_cell("### BEGIN SOLUTION\nBecause SECRET_REASON.\n### END SOLUTION")]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="body output 1\n")]
    for i, c in enumerate(nb.cells):
        c["id"] = f"toy-{i}"
    return nb


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    (d / "solutions").mkdir()
    src = d / "solutions" / "99_toy.ipynb"
    nbformat.write(_synthetic(), str(src))
    first = build_chapter(src, out_dir=d).read_bytes()
    return src, build_chapter(src, out_dir=d), first


def test_toy_student_edition(toy):
    src, out, first = toy
    assert out.read_bytes() == first, "two builds differ"
    text = out.read_text()
    for secret in ("SECRET_CODE", "SECRET_REASON", "HIDDEN_CALL", "BEGIN SOLUTION", "HIDDEN TESTS"):
        assert secret not in text
    nb = read(out)
    assert nb.cells[1].outputs[0]["text"] == "body output 1\n"            # body keeps the source's output
    assert nb.cells[5].outputs[0]["text"] == "not attempted yet\n"         # exercise output made fresh
    assert "raise NotImplementedError" in nb.cells[4].source and nb.cells[7].source == "*Your answer here.*"


def _unrun_with_outputs(nb):
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("outputs") and c.execution_count is None]


def test_toy_every_output_has_an_execution_count(toy):
    """nbval fails a cell with outputs but no execution count ("Unrun reference cell has outputs").
    The toy's body cell is such a cell (written by a script): the built edition must give it a count."""
    src, out, _ = toy
    assert _unrun_with_outputs(read(src)) == [1]                         # the case is there in the source
    nb = read(out)
    assert not _unrun_with_outputs(nb), "cells with outputs but no execution count: nbval fails them"
    assert nb.cells[5].execution_count is not None and nb.cells[5].outputs   # the check cell too


def test_toy_grades(toy, tmp_path):
    src, out, _ = toy
    full = grade(src, source=src)
    assert (full["score"], full["max"]) == (1, 1) and full["exercises"]["9.2"]["manual"]
    blank = grade(out, source=src)
    assert blank["score"] == 0 and "NotImplementedError" in blank["exercises"]["9.1"]["error"]
    wrong = read(out)
    wrong.cells[4].source = "def square(x):\n    return x + x"
    wrong.cells[5].source = "print('I removed the check')"               # the grader puts it back
    nbformat.write(wrong, str(tmp_path / "99_toy.ipynb"))
    result = grade(tmp_path / "99_toy.ipynb", source=src)
    assert result["score"] == 0 and "AssertionError" in result["exercises"]["9.1"]["error"]


def test_bad_markers_are_refused():
    with pytest.raises(ValueError, match="never closed"):
        strip_source("def f():\n    ### BEGIN SOLUTION\n    return 1", "code", "cell 3")
    with pytest.raises(ValueError, match="top level"):
        strip_source("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "code", "cell 3")


# ---------------------------------------------------------------- the chapters

def test_chapter_list():
    assert CHAPTER_IDS, "no chapters found"
    for ch in CHAPTER_IDS:
        has_source = any((CHAPTERS / "solutions").glob(f"{ch}_*.ipynb"))
        if ch in PENDING:
            assert not has_source, f"chapter {ch} has a source notebook now: remove it from PENDING"
        else:
            assert has_source, f"chapter {ch} has no chapters/solutions/{ch}_*.ipynb"


READY = [ch for ch in CHAPTER_IDS if ch not in PENDING]


@pytest.mark.parametrize("ch", READY)
def test_student_edition_is_built_and_clean(ch, tmp_path):
    src = _source(ch)
    built = build_chapter(src, out_dir=tmp_path)
    committed = CHAPTERS / src.name
    assert built.read_bytes() == committed.read_bytes(), (
        f"chapters/{src.name} is not what the build writes: run python -m lora_mini.classroom build {ch}")
    student = read(committed)
    assert not leaks(student)
    assert not _unrun_with_outputs(student), "cells with outputs but no execution count: nbval fails them"
    section = student.cells[first_exercise(student):]            # the body is the textbook: it may show code
    text = "\n".join(c.source for c in section) + "\n".join(str(o) for c in section for o in c.get("outputs", []))
    for line in _solution_lines(read(src)):
        assert line not in text, f"the student edition shows the solution line {line!r}"
    assert len(exercises(student)) >= 3 and any(e.manual for e in exercises(read(src)))


def _planted(ch):
    """The student edition with the first wrong answer of every autograded exercise in its answer cell."""
    cases = importlib.import_module(f"exercise_cases.ch{ch}").CASES
    nb = read(CHAPTERS / _source(ch).name)
    planted = []
    for ex in exercises(nb):
        stubs = [i for i in ex.cells if nb.cells[i].cell_type == "code" and "raise NotImplementedError" in nb.cells[i].source]
        if ex.manual or not stubs:
            continue
        nb.cells[stubs[0]].source = cases[ex.key]["wrong"][0]
        for i in stubs[1:]:                                           # e.g. a class with two methods
            nb.cells[i].source = ""
        planted.append(ex.key)
    return nb, planted


@pytest.mark.parametrize("ch", READY)
def test_grading(ch, tmp_path):
    src = _source(ch)
    full = grade(src, source=src)
    assert full["max"] >= 3 and full["score"] == full["max"], full
    blank = grade(CHAPTERS / src.name)
    assert blank["score"] == 0 and blank["max"] == full["max"] and "setup_error" not in blank
    assert all("NotImplementedError" in r["error"] for r in blank["exercises"].values() if not r.get("manual"))
    nb, planted = _planted(ch)
    nbformat.write(nb, str(tmp_path / src.name))
    wrong = grade(tmp_path / src.name, source=src)
    assert planted and wrong["score"] == 0, wrong
    for key in planted:
        err = wrong["exercises"][key]["error"]
        assert err and "NotImplementedError" not in err, f"{key}: {err}"


def test_nbgrader_export(toy, tmp_path):
    from lora_mini.classroom.nbgrader import export
    src, _, _ = toy
    (out,) = export([src], tmp_path)
    flags = {c["id"]: c.metadata.get("nbgrader") for c in read(out).cells}
    assert flags["toy-4"]["solution"] and not flags["toy-4"]["grade"]
    assert flags["toy-5"]["grade"] and flags["toy-5"]["locked"] and flags["toy-5"]["points"] == 1
    assert flags["toy-7"]["solution"] and flags["toy-7"]["grade"]          # explanation: graded by hand


def test_a_kernel_that_dies_while_starting_is_started_again(monkeypatch):
    """Two kernels starting at once can race for ports; the first death at start-up is retried."""
    import contextlib
    from nbclient import NotebookClient
    from lora_mini.classroom import run
    real, calls = NotebookClient.setup_kernel, []

    @contextlib.contextmanager
    def flaky(self, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        with real(self, **kw):
            yield

    monkeypatch.setattr(NotebookClient, "setup_kernel", flaky)
    nb = new_notebook(cells=[new_code_cell("print(6 * 7)")])
    assert run.run_cells(nb, [0]) == {0: None} and len(calls) == 2
    assert "42" in nb.cells[0].outputs[0]["text"]
