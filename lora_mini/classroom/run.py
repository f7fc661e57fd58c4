"""Executing some cells of a notebook in a fresh kernel (nbclient), one cell at a time."""
import copy
import os

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from .notebook import CHAPTERS, ROOT


def run_cells(nb, indices, timeout=120, cwd=CHAPTERS):
    """Execute nb.cells[i] for i in indices, in order, in one kernel; returns {i: error text or None}.

    The cells' outputs are replaced in place; execution counts are the cells' positions in the run
    (1, 2, ...), so two runs give the same file (nbval needs a count on every cell with outputs).
    A cell that raises, times out or kills the kernel is recorded, and the run goes on; after a
    dead kernel the remaining cells are recorded as not run.
    """
    sub = nbformat.v4.new_notebook(metadata=copy.deepcopy(nb.metadata))
    sub.cells = [nb.cells[i] for i in indices]            # the same cell objects: outputs land in nb
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               MPLBACKEND="Agg")
    for attempt in range(3):      # a kernel can die while starting (two kernels racing for ports)
        client = NotebookClient(sub, timeout=timeout, kernel_name="python3", allow_errors=True,
                                record_timing=False, resources={"metadata": {"path": str(cwd)}})
        started = False
        try:
            with client.setup_kernel(env=env):
                started = True
                return _execute(client, sub, indices, timeout)
        except RuntimeError as e:
            if started or attempt == 2 or "Kernel died" not in str(e):
                raise


def _execute(client, sub, indices, timeout) -> dict:
    """Run sub's cells (positions j of nb's cells indices[j]) in the started kernel; {i: error or None}."""
    errors = {}
    for j, i in enumerate(indices):
        cell = sub.cells[j]
        if errors and any(e == "the kernel died" for e in errors.values()):
            errors[i] = "not run: the kernel died earlier"
            continue
        try:
            client.execute_cell(cell, j)
            errors[i] = _error_of(cell)
        except CellTimeoutError:
            errors[i] = f"timed out after {timeout} s"
        except DeadKernelError:
            errors[i] = "the kernel died"
        except CellExecutionError as e:          # only with allow_errors=False; kept for safety
            errors[i] = str(e)
        cell.execution_count = j + 1
        for out in cell.get("outputs", []):
            if "execution_count" in out:
                out["execution_count"] = j + 1
    return errors


def _error_of(cell):
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename')}: {out.get('evalue')}"
    return None


def run_all(path, timeout=1800, cwd=CHAPTERS):
    """Execute a whole notebook in place (stopping at the first error), from cwd, where the student
    edition runs (chapters/), so that relative paths in the body mean the same in both editions."""
    import nbformat as nbf
    nb = nbf.read(str(path), as_version=4)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            coalesce_streams=True, resources={"metadata": {"path": str(cwd)}})   # one text per stream
    with client.setup_kernel(env=env):
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, i)          # raises CellExecutionError on the first failure
    tmp = path.with_suffix(".ipynb.tmp")
    nbf.write(nb, str(tmp))
    os.replace(tmp, path)
    return path
