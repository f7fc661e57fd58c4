"""`python -m lora_mini info`: the model, its LoRA parameter savings, and a merge check.

The merge check puts LoRA (seeded A, a non-zero seeded B) on the model, merges a copy, and
compares the logits. Its tolerance is the model's own float32 noise: the logit change that
merging and unmerging ΔW (a pure rounding round trip) causes, times 10.
"""
from __future__ import annotations

import copy

import torch

from ..inject import apply_lora, count_parameters, lora_modules, parameter_report
from ..merge import merge, unmerge
from ..models import DEFAULT_MODEL, load_model
from .config import LoraConfig, parse_targets


def add_arguments(p) -> None:
    import argparse
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    p.add_argument("--model", default=DEFAULT_MODEL, help="model name, .gguf path or hub id")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank r")
    p.add_argument("--alpha", type=float, default=32, help="LoRA alpha (scale = alpha / r)")
    p.add_argument("--targets", default="all-linear", help="'all-linear', comma-separated module names, or a regex")
    p.add_argument("--seed", type=int, default=0, help="seed of A and B for the merge check")


def merge_check(model, ids, seed: int = 0) -> dict:
    """Give every LoRA layer a seeded non-zero B, merge a copy, compare logits with a noise-based tolerance."""
    torch.manual_seed(seed)
    for layer in lora_modules(model).values():      # a non-zero B, so merging changes W
        torch.nn.init.normal_(layer.lora_B, std=0.02)
    with torch.no_grad():
        before = model(ids).logits
        after = merge(copy.deepcopy(model))(ids).logits
        round_trip = unmerge(merge(copy.deepcopy(model)))       # W + ΔW - ΔW: only rounding
        noise = (before - round_trip(ids).logits).abs().max().item()
    err = (before - after).abs().max().item()
    tol = max(10 * noise, 1e-6 * before.abs().max().item())
    return {"max_abs_diff": err, "noise": noise, "tolerance": tol, "ok": err <= tol}


def main(args) -> int:
    lora = LoraConfig(rank=args.rank, alpha=args.alpha, targets=parse_targets(args.targets))
    model, tok = load_model(args.model, device="cpu", dtype=torch.float32)
    _, total = count_parameters(model)
    print(f"model: {model.config.name_or_path} ({type(model).__name__}), {total:,} parameters")
    torch.manual_seed(args.seed)                      # before A is initialised
    apply_lora(model, lora.targets, r=lora.rank, alpha=lora.alpha)
    print(parameter_report(model))
    trainable, _ = count_parameters(model)
    print(f"LoRA r={lora.rank} on {len(lora_modules(model))} layers: {trainable:,} trainable parameters, "
          f"{total / trainable:.0f}x fewer than full fine-tuning's {total:,}")
    ids = tok("LoRA merges into W with no extra latency.", return_tensors="pt").input_ids
    mc = merge_check(model, ids, args.seed)
    print(f"merge check: max |logits(merged) - logits(unmerged)| = {mc['max_abs_diff']:.2e} "
          f"({'OK' if mc['ok'] else 'FAILED'}; tolerance {mc['tolerance']:.1e} = 10 x the float32 round-trip "
          f"noise {mc['noise']:.1e})")
    return 0 if mc["ok"] else 1
