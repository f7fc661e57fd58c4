"""Grading a submitted student notebook: its answers, the source's checks with the hidden tests."""
import copy
from pathlib import Path

import nbformat

from .notebook import CHAPTERS, check_source, exercises, is_setup, read, strip_source
from .run import run_cells


def find_source(submission_nb, submission_path, root=CHAPTERS):
    """The source notebook a submission was built from (its metadata, else its file name)."""
    rel = submission_nb.metadata.get("classroom", {}).get("source")
    candidates = [root / rel] if rel else []
    candidates.append(root / "solutions" / Path(submission_path).name)
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(f"{submission_path}: cannot find its source notebook (tried {[str(c) for c in candidates]}); "
                            "pass --source chapters/solutions/NN_name.ipynb")


def graded_notebook(source_nb, submission_nb):
    """The notebook the grader runs: the source's set-up cells, then per exercise the submission's
    cells, with the check cell (hidden tests included) taken from the source. Returns (nb, plan,
    answers): plan maps an exercise key to the index of its graded cell (None: graded by hand),
    answers an exercise key to the submission's markdown answer text."""
    sub_ex = {e.key: e for e in exercises(submission_nb)}
    nb = nbformat.v4.new_notebook(metadata=copy.deepcopy(source_nb.metadata))
    nb.cells = [copy.deepcopy(c) for c in source_nb.cells if c.cell_type == "code" and is_setup(c)]
    plan, answers = {}, {}
    for ex in exercises(source_nb):
        graded = source_nb.cells[ex.graded] if ex.graded is not None else None
        if ex.key in sub_ex:
            cells = [copy.deepcopy(submission_nb.cells[i]) for i in sub_ex[ex.key].cells]
            cells = [c for c in cells if not (c.cell_type == "code" and is_setup(c))]
        else:                                  # exercise missing from the submission: the stub
            cells = [copy.deepcopy(source_nb.cells[i]) for i in ex.cells]
            for c in cells:
                c.source = strip_source(c.source, c.cell_type, f"exercise {ex.key}", ex.key)
        if graded is not None:
            ids = [c.get("id") for c in cells]
            if graded.get("id") in ids:
                cells[ids.index(graded.get("id"))] = copy.deepcopy(graded)
            else:                              # the student deleted the check cell: put it back
                cells.append(copy.deepcopy(graded))
        answers[ex.key] = "\n\n".join(c.source for c in cells[1:] if c.cell_type == "markdown")
        start = len(nb.cells)
        nb.cells += cells
        plan[ex.key] = (start + [c.get("id") for c in cells].index(graded.get("id"))) if graded is not None else None
    return nb, plan, answers


def grade(submission, source=None, timeout=120):
    """Run a submission with the hidden tests; returns {"exercises": {key: {...}}, "score", "max"}."""
    submission = Path(submission)
    sub_nb = read(submission)
    source = Path(source) if source else find_source(sub_nb, submission)
    source_nb = read(source)
    check_source(source_nb, source.name)
    nb, plan, answers = graded_notebook(source_nb, sub_nb)
    errors = run_cells(nb, [i for i, c in enumerate(nb.cells) if c.cell_type == "code"], timeout=timeout)
    setup_errors = {i: e for i, e in errors.items() if e and is_setup(nb.cells[i])}
    result = {"submission": str(submission), "source": str(source), "exercises": {}, "score": 0, "max": 0}
    if setup_errors:
        result["setup_error"] = "; ".join(setup_errors.values())
    for key, i in plan.items():
        if i is None:
            result["exercises"][key] = {"manual": True, "answer": answers[key]}
            continue
        err = errors.get(i)
        result["exercises"][key] = {"score": 0 if err else 1, "max": 1, "error": err}
        result["score"] += 0 if err else 1
        result["max"] += 1
    return result


def report(result):
    """The result as a few lines of text for a teacher."""
    lines = [f"{result['submission']}  (source {Path(result['source']).name})"]
    if result.get("setup_error"):
        lines.append(f"  set-up failed: {result['setup_error']}")
    for key, r in result["exercises"].items():
        if r.get("manual"):
            text = " ".join(r["answer"].split())
            lines.append(f"  {key}: manual (rubric in chapters/INSTRUCTORS.md): {text[:70]}{'…' if len(text) > 70 else ''}")
        else:
            why = f"  — {r['error'][:120]}" if r["error"] else ""
            lines.append(f"  {key}: {r['score']}/{r['max']}{why}")
    lines.append(f"  total: {result['score']}/{result['max']} (+ manual)")
    return "\n".join(lines)
