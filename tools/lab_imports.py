"""Point the chapters at the lab (idempotent): lora_mini.{train,tasks,graphs,bench,sweep,analysis,corpus} -> lora_mini.lab.*.

    python tools/lab_imports.py chapters/*.ipynb chapters/solutions/*.ipynb lora_mini/classroom/checks/*.py

Only source text changes (imports, and module names in markdown); outputs are left alone.
"""
import json
import re
import sys
from pathlib import Path

CODE = [  # (pattern, replacement) for code cells and .py files
    (r"from lora_mini\.train import AnswerLoss, cpu_threads, finetune, lr_factor, plot_run, summary, train",
     "from lora_mini.lab.trainer import AnswerLoss, cpu_threads, lr_factor, train\n"
     "from lora_mini.lab.finetune import finetune, plot_run, summary"),
    (r"from lora_mini\.train import SYSTEM, train", "from lora_mini.lab.finetune import SYSTEM\nfrom lora_mini.lab.trainer import train"),
    (r"from lora_mini\.train import (finetune|plot_run|summary|SYSTEM|make_data)\b", r"from lora_mini.lab.finetune import \1"),
    (r"from lora_mini\.train import", "from lora_mini.lab.trainer import"),
    (r"from lora_mini\.tasks import", "from lora_mini.lab.tasks import"),
    (r"from lora_mini\.graphs import", "from lora_mini.lab.graphs import"),
    (r"lora_mini\.train\.lr_factor", "lora_mini.lab.trainer.lr_factor"),
    (r"from lora_mini\.(bench|sweep|analysis|corpus) import", r"from lora_mini.lab.\1 import"),
    (r"from lora_mini import analysis, corpus, sweep\b", "from lora_mini.lab import analysis, corpus, sweep"),
    (r"from lora_mini import load_model, apply_lora, lora_modules, LoRALinear, fast, bench\b",
     "from lora_mini import load_model, apply_lora, lora_modules, LoRALinear, fast\nfrom lora_mini.lab import bench"),
    (r"from lora_mini\.multi import apply_multi_lora, lora_state, parameter_bytes, use_adapter, TASKS\b",
     "from lora_mini.multi import apply_multi_lora, lora_state, parameter_bytes, use_adapter\nfrom lora_mini.lab.tasks import TASKS"),
    (r"scripts/gpu/variants\.py", "lora_mini/lab/beyond.py"),
]
TEXT = [  # markdown
    (r"`lora_mini\.train\.train`", "`lora_mini.lab.trainer.train`"),
    (r"`lora_mini\.train`", "`lora_mini.lab.trainer`"),
    (r"`lora_mini/graphs\.py`", "`lora_mini/lab/graphs.py`"),
    (r"`lora_mini/(bench|sweep|analysis|corpus)\.py`", r"`lora_mini/lab/\1.py`"),
    (r"`lora_mini\.(bench|sweep|analysis|corpus)`", r"`lora_mini.lab.\1`"),
    (r"scripts/gpu/variants\.py", "lora_mini/lab/beyond.py"),
]


def fix(text: str, rules) -> str:
    for pat, rep in rules:
        text = re.sub(pat, rep, text)
    return text


def main(paths) -> None:
    for p in map(Path, paths):
        if p.suffix == ".py":
            old = p.read_text()
            new = fix(old, CODE)
        else:
            nb = json.loads(p.read_text())
            old = json.dumps(nb)
            for c in nb["cells"]:
                src = "".join(c["source"])
                src = fix(src, CODE if c["cell_type"] == "code" else TEXT)
                c["source"] = src.splitlines(keepends=True)
            new = json.dumps(nb)
            if new != old:
                p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
                print("changed", p)
            continue
        if new != old:
            p.write_text(new)
            print("changed", p)


if __name__ == "__main__":
    main(sys.argv[1:])
