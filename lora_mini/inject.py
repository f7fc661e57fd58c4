r"""Putting LoRA into a model: target matching, wrapping, freezing, counting.

    apply_lora(model, ["q_proj", "v_proj"], r=8, alpha=16)   # suffixes of module names
    apply_lora(model, r".*\.mlp\..*_proj", r=8, alpha=16)     # a regex (full match)
    apply_lora(model, "all-linear", r=16, alpha=32)          # every Linear/Conv1D but the head

Matching follows PEFT: a suffix matches a module whose name equals it or ends with "." + it.
apply_lora is all-or-nothing: every problem is found before the model is touched.
"""
from __future__ import annotations

import difflib
import re
from collections import OrderedDict

import torch.nn as nn

from .layers import LINEAR_TYPES, LoRALinear, check_hparams


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """{module name: LoRALinear} for every LoRA layer in the model."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def _head_names(model: nn.Module) -> set[str]:
    """Names of the output head (excluded from "all-linear", as in PEFT)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {n for n, m in model.named_modules() if head is not None and m is head}
    return names or {n for n, _ in model.named_modules() if n.split(".")[-1] == "lm_head"}


def _matches(name: str, targets) -> bool:
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def find_targets(model: nn.Module, targets) -> list[str]:
    """Names of the modules that `targets` selects. Raises ValueError/TypeError on bad targets."""
    if isinstance(targets, str) and targets != "all-linear":
        try:
            re.compile(targets)
        except re.error as e:
            raise ValueError(f"target_modules {targets!r} is not a valid regex ({e}); "
                             "pass a list of module-name suffixes instead") from e
    elif not isinstance(targets, str):
        if isinstance(targets, (bytes, dict)) or not hasattr(targets, "__iter__"):
            raise TypeError("target_modules must be a list of module-name suffixes, a regex string "
                            f"or 'all-linear', got {type(targets).__name__}")
        targets = list(targets)
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise ValueError(f"target_modules must be non-empty strings, got {targets!r}")

    inside_lora = {f"{n}.{c}" for n, m in lora_modules(model).items() for c, _ in m.named_modules() if c}
    names = [n for n, _ in model.named_modules() if n and n not in inside_lora]
    modules = dict(model.named_modules())
    if targets == "all-linear":
        heads = _head_names(model)
        found = [n for n in names if isinstance(modules[n], LINEAR_TYPES + (LoRALinear,)) and n not in heads]
        if not found:
            raise ValueError("'all-linear' found no nn.Linear or Conv1D layer (other than the output head)")
    else:
        found = [n for n in names if _matches(n, targets)]
        # a target naming the frozen layer inside an existing LoRA layer is "LoRA applied twice"
        found += [n for n in sorted(inside_lora) if _matches(n, targets)]
        if not found:
            wanted = [targets] if isinstance(targets, str) else targets
            leaves = sorted({n.split(".")[-1] for n in names})
            close = sorted({c for t in wanted for c in difflib.get_close_matches(t.split(".")[-1], leaves, n=5, cutoff=0.4)})
            hint = f" Closest module names: {close}." if close else f" Module names include: {leaves[:12]}."
            raise ValueError(f"target_modules {targets!r} matched no module in {type(model).__name__}."
                             + hint + " Use module-name suffixes (e.g. ['q_proj', 'v_proj']), a regex, or 'all-linear'.")
    for n in found:
        m = modules[n]
        if isinstance(m, LoRALinear) or n in inside_lora:
            raise ValueError(f"module {n!r} already has LoRA (applied twice?). Call merge_and_unload(model) "
                             "or start from a fresh model before applying LoRA again.")
        if not isinstance(m, LINEAR_TYPES):
            raise TypeError(f"target {n!r} is a {type(m).__name__}; LoRA here wraps only nn.Linear and GPT-2 "
                            "Conv1D. Target its linear sub-layers instead (e.g. 'q_proj', 'up_proj').")
    return found


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def apply_lora(model: nn.Module, target_modules, r: int, alpha: float, dropout: float = 0.0,
               use_rslora: bool = False) -> nn.Module:
    """Wrap every targeted Linear/Conv1D in a LoRALinear and freeze everything but A and B.

    target_modules: list of module-name suffixes, a regex string (full match), or "all-linear".
    Returns the same model (changed in place). On bad input raises before changing anything.
    """
    check_hparams(r, alpha, dropout)
    names = find_targets(model, target_modules)
    for name in names:
        _set_module(model, name, LoRALinear(model.get_submodule(name), r, alpha, dropout, use_rslora))
    mark_only_lora_trainable(model)
    return model


def mark_only_lora_trainable(model: nn.Module) -> None:
    """requires_grad = True for lora_A / lora_B, False for every other parameter."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith(("lora_A", "lora_B")))


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
