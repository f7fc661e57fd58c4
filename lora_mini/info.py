"""`python -m lora_mini info`: the model, its LoRA parameter savings, and a merge check."""
from __future__ import annotations

import copy

import torch

from .inject import apply_lora, count_parameters, lora_modules, parameter_report
from .merge import merge
from .models import DEFAULT_MODEL, load_model


def add_arguments(p) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help="model name, .gguf path or hub id")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32)
    p.add_argument("--targets", default="all-linear", help="'all-linear', a regex, or comma-separated suffixes")


def main(args) -> int:
    model, tok = load_model(args.model, device="cpu", dtype=torch.float32)
    targets = args.targets if args.targets == "all-linear" or "," not in args.targets and any(
        c in args.targets for c in ".*[]()|") else args.targets.split(",")
    base_trainable, total = count_parameters(model)
    print(f"model: {model.config.name_or_path} ({type(model).__name__}), {total:,} parameters")
    apply_lora(model, targets, r=args.rank, alpha=args.alpha)
    print(parameter_report(model))
    trainable, total_lora = count_parameters(model)
    print(f"LoRA r={args.rank} on {len(lora_modules(model))} layers: {trainable:,} trainable "
          f"= {100 * trainable / total:.2f}% of the base model ({total / trainable:.0f}x fewer than full fine-tuning)")
    torch.manual_seed(0)
    for layer in lora_modules(model).values():      # a non-zero B, so merging changes W
        torch.nn.init.normal_(layer.lora_B, std=0.02)
    ids = tok("LoRA merges into W with no extra latency.", return_tensors="pt").input_ids
    with torch.no_grad():
        before = model(ids).logits
        merged = merge(copy.deepcopy(model))
        after = merged(ids).logits
    err = (before - after).abs().max().item()
    print(f"merge check: max |logits(merged) - logits(unmerged)| = {err:.2e} "
          f"({'OK' if err <= 1e-4 else 'FAILED'}, tolerance 1e-4)")
    return 0 if err <= 1e-4 else 1
