"""An nbgrader "source" folder: the source notebooks with nbgrader's cell metadata.

nbgrader understands the same markers (`### BEGIN SOLUTION`, `### BEGIN HIDDEN TESTS`); it needs
each answer cell flagged `solution`, each check cell flagged `grade` (locked, with points), and
explanation answers flagged as manually graded. Then `nbgrader generate_assignment`,
`nbgrader autograde` and `nbgrader formgrader` work as usual (see chapters/INSTRUCTORS.md).
"""
import copy
from pathlib import Path

import nbformat

from .notebook import BEGIN_SOLUTION, exercises, read


def _meta(**kw):
    return {"schema_version": 3, "solution": False, "grade": False, "locked": False, **kw}


def nbgrader_notebook(nb):
    out = copy.deepcopy(nb)
    for ex in exercises(nb):
        tag = ex.key.replace(".", "_")
        for i in ex.cells:
            c = out.cells[i]
            if BEGIN_SOLUTION in c.source:
                manual = c.cell_type == "markdown"
                c.metadata["nbgrader"] = _meta(grade_id=f"answer_{tag}", solution=True, grade=manual,
                                               **({"points": 2} if manual else {}))
            elif i == ex.graded:
                c.metadata["nbgrader"] = _meta(grade_id=f"check_{tag}", grade=True, locked=True, points=1)
    return out


def export(sources, out_dir):
    """Write out_dir/source/<chapter>/<chapter>.ipynb for each source notebook; returns the paths."""
    paths = []
    for src in sources:
        src = Path(src)
        target = Path(out_dir) / "source" / src.stem / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbgrader_notebook(read(src)), str(target))
        paths.append(target)
    return paths
