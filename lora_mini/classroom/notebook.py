"""Reading the convention out of a notebook, and making the student edition's cells (no execution)."""
import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
HEADING = re.compile(r"^###\s+Exercise\s+(\d+[a-z]?\.\d+)\b[:.]?\s*(.*)$")   # 3.2, 6b.1
CHAPTER_ID = re.compile(r"^(\d\d[a-z]?)_")                                 # 03_..., 06b_...


def chapter_id(path) -> str:
    """"06b" for chapters/06b_your_own_data.ipynb, "03" for 03_lora_layer_from_scratch.ipynb."""
    m = CHAPTER_ID.match(Path(path).name)
    if not m:
        raise ValueError(f"{Path(path).name}: a chapter notebook is named NN_name.ipynb or NNx_name.ipynb")
    return m.group(1)
MARKDOWN_STUB = "*Your answer here.*"
ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = ROOT / "chapters"


@dataclass
class Exercise:
    key: str                       # "1.1"
    title: str
    cells: list = field(default_factory=list)   # indices into nb.cells: heading .. last cell
    graded: int | None = None      # index of the code cell with the hidden tests
    manual: bool = False           # an explanation, graded by hand (markdown answer cell)

    @property
    def name(self):
        return "exercise_" + self.key.replace(".", "_")


def source_notebooks(chapters=None, root=CHAPTERS):
    """The source notebooks chapters/solutions/NN_*.ipynb, for chapter numbers like "01" (all if None)."""
    found = sorted((root / "solutions").glob("[0-9][0-9]*_*.ipynb"))
    if not chapters:
        return found
    out = []
    for ch in chapters:
        ch = f"{int(ch):02d}" if str(ch).isdigit() else str(ch)
        match = [p for p in found if chapter_id(p) == ch]
        if not match:
            raise FileNotFoundError(f"no source notebook chapters/solutions/{ch}_*.ipynb for chapter {ch!r}")
        out += match
    return out


def first_exercise(nb):
    """Index of the first `### Exercise N.k` heading (len(cells) if there is none)."""
    for i, c in enumerate(nb.cells):
        if c.cell_type == "markdown" and HEADING.match(c.source.lstrip().split("\n")[0]):
            return i
    return len(nb.cells)


def exercises(nb):
    """The exercises of a notebook, in order, with the cells that belong to each."""
    out = []
    for i in range(first_exercise(nb), len(nb.cells)):
        c = nb.cells[i]
        m = HEADING.match(c.source.lstrip().split("\n")[0]) if c.cell_type == "markdown" else None
        if m:
            out.append(Exercise(m.group(1), m.group(2).strip()))
        out[-1].cells.append(i)
        if c.cell_type == "code" and BEGIN_HIDDEN in c.source:
            out[-1].graded = i
        if c.cell_type == "markdown" and BEGIN_SOLUTION in c.source:
            out[-1].manual = True
    return out


def is_setup(cell):
    return "setup" in cell.metadata.get("tags", [])


def executed_cells(nb):
    """Indices the build and the grader execute: `setup` cells, then the exercise section."""
    start = first_exercise(nb)
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (is_setup(c) or i >= start)]


def _regions(lines, begin, end, where):
    """(start, stop) line pairs of begin..end regions; a clear error for unbalanced markers."""
    out, start = [], None
    for j, line in enumerate(lines):
        s = line.strip()
        if s == begin:
            if start is not None:
                raise ValueError(f"{where}: {begin!r} inside another one (line {j + 1}); close the first with {end!r}")
            start = j
        elif s == end:
            if start is None:
                raise ValueError(f"{where}: {end!r} without {begin!r} (line {j + 1})")
            out.append((start, j))
            start = None
    if start is not None:
        raise ValueError(f"{where}: {begin!r} on line {start + 1} is never closed: add {end!r}")
    return out


def strip_source(source, cell_type, where, key=None):
    """The student version of one cell's source: solutions → stubs, hidden tests removed."""
    lines = source.split("\n")
    for a, b in reversed(_regions(lines, BEGIN_HIDDEN, END_HIDDEN, where)):
        del lines[a:b + 1]
    for a, b in reversed(_regions(lines, BEGIN_SOLUTION, END_SOLUTION, where)):
        indent = lines[a][:len(lines[a]) - len(lines[a].lstrip())]
        if cell_type == "markdown":
            stub = [MARKDOWN_STUB]
        elif not indent:
            raise ValueError(f"{where}: a solution region at the top level would make the student edition "
                             "raise; put the answer inside a function (def ...:) and check that function")
        else:
            label = f"Exercise {key}: " if key else ""
            stub = [f'{indent}raise NotImplementedError("{label}replace this line with your code")']
        lines[a:b + 1] = stub
    return "\n".join(lines).rstrip("\n")


def student_edition(nb, source_name=""):
    """A deep copy of the source notebook with every answer and hidden test taken out (outputs kept)."""
    out = copy.deepcopy(nb)
    keys = {}
    for ex in exercises(nb):
        for i in ex.cells:
            keys[i] = ex.key
    for i, cell in enumerate(out.cells):
        where = f"{source_name} cell {i}"
        if cell.cell_type in ("code", "markdown"):
            cell.source = strip_source(cell.source, cell.cell_type, where, keys.get(i))
    out.metadata["classroom"] = {"edition": "student", "source": f"solutions/{source_name}"}
    return out


def leaks(nb):
    """Marker strings left in a notebook that must not be in a student edition."""
    text = "\n".join(c.source for c in nb.cells)
    return [m for m in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN) if m in text]


def check_source(nb, name):
    """A source notebook follows the convention: every exercise is graded by hidden tests or by hand."""
    exs = exercises(nb)
    if not exs:
        raise ValueError(f"{name}: no '### Exercise N.k: title' heading")
    keys = [e.key for e in exs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{name}: an exercise number is used twice: {keys}")
    for e in exs:
        if e.graded is None and not e.manual:
            raise ValueError(f"{name}: exercise {e.key} has neither a check cell with {BEGIN_HIDDEN!r} nor a "
                             "markdown answer cell with a solution region")
    if not any(is_setup(c) for c in nb.cells):
        raise ValueError(f"{name}: no cell tagged 'setup' (the exercises' imports)")


def read(path):
    return nbformat.read(str(path), as_version=4)
