"""Writing a chapter's student edition from its source notebook."""
import os
from pathlib import Path

import nbformat

from .notebook import CHAPTERS, check_source, executed_cells, first_exercise, leaks, read, student_edition
from .run import run_cells


def build_chapter(source, out_dir=CHAPTERS, execute=True, timeout=120):
    """Write out_dir/<name>.ipynb, the student edition of source; returns its path.

    Body cells keep the source's outputs. The exercise section's outputs are made fresh by
    executing the `setup` cells and the exercise cells of the student edition (so no output
    shows a solution). Written to a temporary file and renamed, so a failed build leaves the
    old edition in place.
    """
    source = Path(source)
    nb = read(source)
    student = student_edition(nb, source.name)
    if leaks(student):
        raise ValueError(f"{source}: markers left after stripping: {leaks(student)}")
    start = first_exercise(student)
    for cell in student.cells[start:]:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    check_source(nb, source.name)
    if execute:
        _run_exercises(student, nb, f"{source.name}: the student edition raises in cells {{}}; a stub must not "
                                    "raise at the top level and a check must print, not raise", timeout)
    return _write(student, Path(out_dir) / source.name)


def refresh_source(source, timeout=120):
    """Re-run the `setup` and exercise cells of a source notebook in place (the answers' ✓ outputs);
    the body's outputs are left as they are."""
    source = Path(source)
    nb = read(source)
    check_source(nb, source.name)
    _run_exercises(nb, nb, f"{source.name}: the solutions fail in cells {{}}", timeout)
    return _write(nb, source)


def _run_exercises(nb, body_from, failure, timeout):
    """Run nb's `setup` and exercise cells; the body's cells get back body_from's outputs."""
    start = first_exercise(nb)
    body = {i: (body_from.cells[i].get("outputs"), body_from.cells[i].execution_count) for i in range(start)
            if body_from.cells[i].cell_type == "code"}
    errors = run_cells(nb, executed_cells(nb), timeout=timeout, cwd=CHAPTERS)
    for i, (outputs, count) in body.items():
        nb.cells[i].outputs, nb.cells[i].execution_count = outputs, count
    bad = {i: e for i, e in errors.items() if e}
    if bad:
        raise RuntimeError(failure.format(bad))


def count_outputs(nb):
    """Give every code cell that has outputs an execution count (nbval fails a cell that has outputs
    but none: "Unrun reference cell has outputs"). A cell without one (e.g. written by a script)
    gets its position among the notebook's code cells (1, 2, ...); counts already there are kept."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    for k, cell in enumerate(code, start=1):
        if cell.get("outputs") and cell.get("execution_count") is None:
            cell.execution_count = k
            for out in cell.outputs:
                if out.get("output_type") == "execute_result":
                    out["execution_count"] = k
    return nb


def _write(nb, path):
    """Write to a temporary file and rename: a failure leaves the old file in place.
    Every cell with outputs carries an execution count (count_outputs)."""
    count_outputs(nb)
    tmp = path.with_suffix(".ipynb.tmp")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, path)
    return path
