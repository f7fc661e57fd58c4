r"""Putting LoRA into a model: wrapping, freezing, counting (target matching is in targets.py).

    apply_lora(model, ["q_proj", "v_proj"], r=8, alpha=16)   # suffixes of module names
    apply_lora(model, "q_proj,v_proj", r=8, alpha=16)        # the same, as the command line writes it
    apply_lora(model, r".*\.mlp\..*_proj", r=8, alpha=16)     # a regex (full match)
    apply_lora(model, "all-linear", r=16, alpha=32)          # every Linear/Conv1D but the head

apply_lora is all-or-nothing: every problem is found before the model is touched. Every layer
kind (LoRALinear, DoRALinear, ...) goes in through `inject_layers`.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict

import torch.nn as nn

from .layers import LoRALinear, check_hparams, features
from .targets import find_targets, head_names, parse_targets  # noqa: F401  (re-exported)

TRAINABLE_SUFFIXES = ("lora_A", "lora_B", "lora_magnitude")


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """{module name: LoRALinear} for every LoRA layer (DoRALinear is one) in the model."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def warn_if_rank_too_big(model: nn.Module, names: list[str], r: int) -> None:
    """Warn when A and B together hold at least as many numbers as the weights they adapt (Σ r·(in+out) ≥ Σ in·out)."""
    shapes = [features(model.get_submodule(n)) for n in names]                  # (in, out) each
    lora, dense = sum(r * (i + o) for i, o in shapes), sum(i * o for i, o in shapes)
    if names and lora >= dense:
        widest = min(min(i, o) for i, o in shapes)
        warnings.warn(f"LoRA rank r={r} is too big for these {len(names)} layers: A and B would hold {lora:,} "
                      f"numbers, at least the {dense:,} of the weights they adapt (and ΔW's rank cannot exceed "
                      f"min(in, out), {widest} for the narrowest). Use a smaller r, or full fine-tuning.",
                      stacklevel=3)


def inject_layers(model: nn.Module, names: list[str], make) -> nn.Module:
    """Replace each named module m by make(m) (a LoRA layer of any kind) and freeze all but the adapters."""
    for name in names:
        _set_module(model, name, make(model.get_submodule(name)))
    mark_only_lora_trainable(model)
    return model


def apply_lora(model: nn.Module, target_modules, r: int, alpha: float, dropout: float = 0.0,
               use_rslora: bool = False) -> nn.Module:
    """Wrap every targeted Linear/Conv1D in a LoRALinear and freeze everything but A and B.

    target_modules: anything targets.parse_targets takes (names, "a,b", a regex, "all-linear").
    Returns the same model (changed in place). On bad input raises before changing anything.
    The new layers take the mode (train/eval) of the layers they wrap.
    """
    check_hparams(r, alpha, dropout)
    names = find_targets(model, target_modules)
    warn_if_rank_too_big(model, names, r)
    return inject_layers(model, names, lambda base: LoRALinear(base, r, alpha, dropout, use_rslora))


def mark_only_lora_trainable(model: nn.Module) -> None:
    """requires_grad = True for lora_A / lora_B (and DoRA's lora_magnitude), False for every other parameter."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith(TRAINABLE_SUFFIXES))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; shared (tied) tensors count once, as in PEFT."""
    trainable = total = 0
    for p in model.parameters():   # parameters() yields each tied tensor once
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def parameter_table(model: nn.Module) -> list[dict]:
    """Rows per module type: {"module": type, "params", "trainable", "percent"} plus a total row."""
    groups: "OrderedDict[str, list[int]]" = OrderedDict()
    seen = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            kind = type(module).__name__
            if isinstance(module, LoRALinear):
                kind = f"LoRALinear.{p_name}"
            g = groups.setdefault(kind, [0, 0])
            g[0] += p.numel()
            g[1] += p.numel() if p.requires_grad else 0
    total = sum(g[0] for g in groups.values())
    rows = [{"module": k, "params": v[0], "trainable": v[1], "percent": 100 * v[0] / total}
            for k, v in groups.items()]
    trainable = sum(g[1] for g in groups.values())
    rows.append({"module": "total", "params": total, "trainable": trainable, "percent": 100.0})
    return rows


def parameter_report(model: nn.Module) -> str:
    """A readable table of parameters per module type (params, trainable, % of the model)."""
    rows = parameter_table(model)
    lines = [f"{'module type':<20} {'params':>13} {'trainable':>12} {'% of model':>11}"]
    for row in rows:
        if row["module"] == "total":
            lines.append("-" * len(lines[0]))
        lines.append(f"{row['module']:<20} {row['params']:>13,} {row['trainable']:>12,} {row['percent']:>10.3f}%")
    t = rows[-1]
    lines.append(f"trainable: {t['trainable']:,} of {t['params']:,} ({100 * t['trainable'] / t['params']:.3f}%)")
    return "\n".join(lines)
