"""Build the web edition of the book, offline, from the committed executed notebooks.

    python book/build.py            # -> book/_build/html/index.html (open it in a browser)
    python book/build.py --out DIR  # -> DIR/_build/html

Nothing is executed (execute_notebooks: off) and nothing is fetched: MathJax 3 is copied from the
PyPI package django-static-mathjax into the site. The table of contents is book/_toc.yml; this
script writes the effective one next to the output: each chapter gets its solutions page
(chapters/solutions/<same name>.ipynb) as a section when that file exists, and optional pages
(OPTIONAL) that are absent are left out. Every chapters/NN_*.ipynb must be listed in book/_toc.yml.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
OPTIONAL = ("chapters/INSTRUCTORS",)          # pages other helpers/authors may not have written yet
# MathJax 3 files the site needs (tex-chtml.js loads extensions, fonts and the menu on demand)
MATHJAX_KEEP = ("tex-chtml.js", "input", "output/chtml", "a11y", "ui", "adaptors", "core.js",
                "loader.js", "startup.js", "latest.js")


def page_exists(root: Path, name: str) -> bool:
    return any((root / f"{name}{ext}").is_file() for ext in (".md", ".ipynb"))


def chapter_pages(toc: dict) -> list[str]:
    """The numbered chapters (chapters/NN_*), in toc order: what the navigation must show."""
    names = [entry["file"] for part in toc["parts"] for entry in part["chapters"]]
    return [n for n in names if Path(n).name[:2].isdigit() and n.startswith("chapters/")]


def effective_toc(root: Path = ROOT) -> dict:
    """book/_toc.yml with solutions sections added and absent optional pages dropped."""
    toc = yaml.safe_load((root / "book/_toc.yml").read_text())
    listed = set(chapter_pages(toc))
    on_disk = {f"chapters/{p.stem}" for p in (root / "chapters").glob("[0-9][0-9]*_*.ipynb")}
    if on_disk - listed:
        raise SystemExit(f"book/_toc.yml does not list {sorted(on_disk - listed)}: add a line "
                         "'- file: chapters/NAME' under the Chapters part, in reading order")
    for part in toc["parts"]:
        kept = []
        for entry in part["chapters"]:
            name = entry["file"]
            if not page_exists(root, name):
                if name in OPTIONAL:
                    print(f"book: {name} is absent; left out of this build", file=sys.stderr)
                    continue
                raise SystemExit(f"book/_toc.yml lists {name} but no {name}.md/.ipynb exists")
            solution = f"chapters/solutions/{Path(name).name}"
            if name in listed and page_exists(root, solution):
                entry = {**entry, "sections": [{"file": solution, "title": "Solutions"}]}
            kept.append(entry)
        part["chapters"] = kept
    toc["parts"] = [p for p in toc["parts"] if p["chapters"]]
    return toc


def _seconds(cell) -> float | None:
    """A code cell's run time from the execution timestamps Jupyter saved in its metadata."""
    run = cell.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" not in run or "shell.execute_reply" not in run:
        return None
    start, end = (datetime.fromisoformat(run[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))
    return (end - start).total_seconds()


def chapter_times(root: Path = ROOT) -> str:
    """A markdown table: each chapter's run time on its last recorded execution, and its needs."""
    toc = yaml.safe_load((root / "book/_toc.yml").read_text())
    rows = ["| chapter | run time | longest cell | loads SmolLM2-135M | last executed |",
            "|---|---:|---:|:---:|---|"]
    for name in chapter_pages(toc):
        nb = json.loads((root / f"{name}.ipynb").read_text(encoding="utf8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        times = [t for t in map(_seconds, code) if t is not None]
        dates = sorted(c["metadata"]["execution"]["iopub.execute_input"][:10]
                       for c in code if "iopub.execute_input" in c.get("metadata", {}).get("execution", {}))
        model = any("load_model(" in "".join(c["source"]) for c in code)
        total = f"{sum(times) / 60:.1f} min" if times else "not recorded"
        longest = f"{max(times):.0f} s" if times else ""
        rows.append(f"| [{Path(name).name}]({Path(name).name}.ipynb) | {total} | {longest} | "
                    f"{'yes' if model else 'no'} | {dates[-1] if dates else ''} |")
    return "\n".join(rows) + "\n"


def vendor_mathjax(dest: Path) -> None:
    """Copy MathJax 3 (es5 build) from the django-static-mathjax package to dest/mathjax."""
    try:
        import mathjax  # the django-static-mathjax distribution's package
    except ImportError:
        raise SystemExit("MathJax 3 is missing: pip install django-static-mathjax==3.2.2.1 "
                         "(it is in requirements.txt)") from None
    es5 = Path(mathjax.__file__).parent / "static/mathjax/es5"
    target = dest / "mathjax"
    if (target / "tex-chtml.js").is_file():
        return
    tmp = dest / "mathjax.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel in MATHJAX_KEEP:
        src = es5 / rel
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, tmp / rel)
        else:
            shutil.copy2(src, tmp / rel)
    shutil.copy2(es5.parent / "LICENSE", tmp / "LICENSE")
    tmp.rename(target)


def build(out: Path = BOOK, quiet: bool = True) -> Path:
    """Build the site into out/_build/html and return that folder."""
    build_dir = out / "_build"
    build_dir.mkdir(parents=True, exist_ok=True)
    vendor_mathjax(BOOK / "_build/_mathjax")   # _config.yml's html_static_path points here
    (BOOK / "_build/chapter_times.md").write_text(chapter_times())   # included by prerequisites.md
    toc_path = build_dir / "_toc.yml"
    toc_path.write_text(yaml.safe_dump(effective_toc(), sort_keys=False))
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(ROOT),
           "--config", str(BOOK / "_config.yml"), "--toc", str(toc_path), "--path-output", str(out),
           "--builder", "html", "--warningiserror", "--keep-going"]
    if quiet:
        cmd.append("--quiet")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(BOOK / "_ext"),
                                                                   os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(cmd, cwd=ROOT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"book: the build failed (exit {done.returncode}); see the messages above")
    return build_dir / "html"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BOOK, help="writes OUT/_build/html")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    html = build(args.out, quiet=not args.verbose)
    size = sum(p.stat().st_size for p in html.rglob("*") if p.is_file())
    print(f"book: {html / 'index.html'} ({size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
