"""What every chapter promises its reader, checked on the committed notebooks (no execution).

- every cell that shows or saves a figure has the figure as an image output (a backend switched
  to Agg once left a chapter with one image for four plotting cells);
- no executed cell ends in an error;
- each chapter fits one sitting (≤ 40 cells).
"""
import json
import re
from pathlib import Path

import pytest

CHAPTERS = Path(__file__).resolve().parent.parent / "chapters"
NOTEBOOKS = sorted(CHAPTERS.glob("[0-9][0-9]*_*.ipynb")) + sorted((CHAPTERS / "solutions").glob("[0-9][0-9]*_*.ipynb"))
SHOWS_A_FIGURE = re.compile(r"plt\.show\(\)|\.savefig\(|\bfig\.show\(\)")


def _cells(path):
    return json.loads(path.read_text())["cells"]


def plotting_cells_without_image(cells) -> list[int]:
    missing = []
    for i, c in enumerate(cells):
        if c["cell_type"] == "code" and SHOWS_A_FIGURE.search("".join(c["source"])):
            if not any("image/png" in o.get("data", {}) for o in c.get("outputs", [])):
                missing.append(i)
    return missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(CHAPTERS)))
def test_every_plotting_cell_shows_its_figure(path):
    assert plotting_cells_without_image(_cells(path)) == [], f"{path.name}: re-execute the chapter"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(CHAPTERS)))
def test_no_committed_error_and_one_sitting(path):
    cells = _cells(path)
    errors = [i for i, c in enumerate(cells) if c["cell_type"] == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == [], f"{path.name}: cells {errors} end in an error"
    assert len(cells) <= 40, f"{path.name} has {len(cells)} cells: split it (one sitting is <= 40)"


def test_the_figure_check_catches_a_missing_image():
    shown = {"cell_type": "code", "source": ["plt.plot([1, 2])\n", "plt.show()"],
             "outputs": [{"output_type": "display_data", "data": {"image/png": "iVBOR"}}]}
    lost = {"cell_type": "code", "source": ["fig.savefig('x.png')"], "outputs": []}
    text = {"cell_type": "code", "source": ["print(1)"], "outputs": []}
    assert plotting_cells_without_image([shown, lost, text]) == [1]
