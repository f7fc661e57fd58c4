"""python -m lora_mini.classroom build|grade|nbgrader ... (see lora_mini/classroom/__init__.py)."""
import argparse
import json
import sys

from .build import build_chapter, refresh_source
from .grade import grade, report
from .nbgrader import export
from .notebook import source_notebooks
from .run import run_all


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lora_mini.classroom", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write the student editions chapters/NN_*.ipynb from chapters/solutions/")
    b.add_argument("chapters", nargs="*", help="chapter numbers (01 02 ...); all if none")
    b.add_argument("--no-execute", action="store_true", help="leave the exercise cells without outputs")
    b.add_argument("--refresh-sources", action="store_true",
                   help="first re-run the sources' set-up and exercise cells in place (their ✓ outputs)")
    g = sub.add_parser("grade", help="grade submitted student notebooks")
    g.add_argument("submissions", nargs="+")
    g.add_argument("--source", help="the source notebook (default: from the submission's metadata)")
    g.add_argument("--json", action="store_true", help="print the scores as JSON")
    g.add_argument("--timeout", type=int, default=120, help="seconds per cell")
    e = sub.add_parser("execute", help="execute whole source notebooks in place (from chapters/), then build")
    e.add_argument("chapters", nargs="*")
    n = sub.add_parser("nbgrader", help="write an nbgrader source folder")
    n.add_argument("out_dir")
    n.add_argument("chapters", nargs="*")
    args = p.parse_args(argv)
    if args.cmd == "build":
        for src in source_notebooks(args.chapters):
            if args.refresh_sources:
                print("refreshed", refresh_source(src))
            print("wrote", build_chapter(src, execute=not args.no_execute))
    elif args.cmd == "execute":
        for src in source_notebooks(args.chapters):
            print("executed", run_all(src))
            print("wrote", build_chapter(src))
    elif args.cmd == "grade":
        results = [grade(s, args.source, timeout=args.timeout) for s in args.submissions]
        print(json.dumps(results if len(results) > 1 else results[0], indent=1, ensure_ascii=False)
              if args.json else "\n".join(report(r) for r in results))
    else:
        for path in export(source_notebooks(args.chapters), args.out_dir):
            print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
