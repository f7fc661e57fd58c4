"""Command line:  python -m lora_mini {finetune | info | bench | sweep | beyond | forgetting | rl | generate | chat | export} [options]

A thin layer: each sub-command's module provides `add_arguments(parser)` and `main(args)`,
which builds its config, calls one lab function and prints. Errors print one line,
`error: ...`, and exit with status 2 (a bad setting or file) or 1 (a failure while running);
`--debug` (anywhere on the line) shows the traceback instead. Ctrl-C exits with 130.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys

# name: (module, help[, prefix]); the module provides add_arguments(parser) and main(args), or, with a
# prefix, add_<prefix>_arguments and <prefix>_main. Modules that do not exist (yet) are left out.
COMMANDS = {
    "finetune": ("lora_mini.lab.commands", "fine-tune SmolLM2 on the arithmetic task or your own chats (LoRA or full)"),
    "finetune-sweep": ("lora_mini.lab.finetune_sweep", "LoRA vs full fine-tuning, each at its best LR (chapter 6)"),
    "info": ("lora_mini.lab.info", "the model, its LoRA parameter savings and a merge check"),
    "bench": ("lora_mini.lab.bench", "step time and memory: full fine-tuning vs PEFT vs lora_mini"),
    "sweep": ("lora_mini.lab.sweep", "grids of training runs for chapter 7 (JSON lines)"),
    "ddp-bench": ("lora_mini.lab.ddp_bench", "timed LoRA/full runs at fixed global batches (run under torchrun)",
                  "bench"),
    "ddp-report": ("lora_mini.lab.ddp_bench", "1 vs 2 GPU report from two ddp-bench files", "report"),
    "generate": ("lora_mini.lab.generate", "replies from a model with an adapter"),
    "chat": ("lora_mini.lab.generate", "chat with a model and an adapter", "chat"),
    "serve-bench": ("lora_mini.lab.serve_bench", "tokens/s serving many LoRA adapters at once: lora_mini vs PEFT vs merged"),
    "export": ("lora_mini.lab.export", "merge an adapter into the model and save it"),
    "rl": ("lora_mini.lab.rl", "policy-gradient RL on the arithmetic task: rank-1 LoRA vs higher ranks vs full FT"),
    "beyond": ("lora_mini.lab.beyond", "chapter 8's runs: methods, several adapters, overfitting, continual learning (JSON)"),
    "forgetting": ("lora_mini.lab.forgetting", "train until a target accuracy; forgetting of general text and chat (JSON)"),
}
_NUMBER = re.compile(r"-(\d|\.\d|inf\b|nan\b)", re.I)
USAGE_ERRORS = (ValueError, OSError, KeyError)      # bad settings, files, names: status 2


def join_negative_numbers(argv: list[str]) -> list[str]:
    """["--lr", "-1e-3"] -> ["--lr=-1e-3"]: argparse would take "-1e-3" for an option."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and "=" not in a and i + 1 < len(argv) and _NUMBER.match(argv[i + 1]):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="python -m lora_mini", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    available = {}
    for name, (module, help_, *prefix) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        add, run = (f"add_{prefix[0]}_arguments", f"{prefix[0]}_main") if prefix else ("add_arguments", "main")
        if not (hasattr(mod, add) and hasattr(mod, run)):
            continue
        available[name] = mod
        p = sub.add_parser(name, help=help_, description=help_)
        getattr(mod, add)(p)
        p.set_defaults(_main=getattr(mod, run))
    return parser, available


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = join_negative_numbers([a for a in argv if a != "--debug"])
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv[1:]
    try:
        return args._main(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:          # one line, unless --debug
        if debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2 if isinstance(e, USAGE_ERRORS) else 1


if __name__ == "__main__":
    sys.exit(main())
