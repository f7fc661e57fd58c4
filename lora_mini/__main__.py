"""Command line:  python -m lora_mini {finetune | bench | sweep | info} [options]

Each sub-command lives in the module that owns its work and provides
`add_arguments(parser)` and `main(args)`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "finetune": ("lora_mini.train", "fine-tune SmolLM2 on the arithmetic task (LoRA or full)"),
    "bench": ("lora_mini.bench", "step time and memory: full fine-tuning vs PEFT vs lora_mini"),
    "sweep": ("lora_mini.sweep", "grids of training runs for chapter 7 (JSON lines)"),
    "info": ("lora_mini.info", "the model, its LoRA parameter savings and a merge check"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_mini", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    available = {}
    for name, (module, help_) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        available[name] = mod
        mod.add_arguments(sub.add_parser(name, help=help_, description=help_))
    args = parser.parse_args(argv)
    return available[args.command].main(args) or 0


if __name__ == "__main__":
    sys.exit(main())
