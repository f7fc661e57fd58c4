"""Merging LoRA into the frozen weights, and switching it off.

    merge(model)            W ← W + (α/r)·B·A  in every LoRA layer (no extra latency afterwards)
    unmerge(model)          W ← W − (α/r)·B·A  (restores W up to one rounding of W's dtype)
    merge_and_unload(model) merge, then replace each LoRALinear by its plain base layer
    with disable_lora(model): ...   the model computes exactly the base model inside

Each update is computed in float32 and cast to W's dtype once.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from .inject import _set_module, lora_modules


def _require_lora(model: nn.Module, what: str) -> dict:
    layers = lora_modules(model)
    if not layers:
        raise ValueError(f"{what}: the model has no LoRA layers; call apply_lora(model, ...) first")
    return layers


@torch.no_grad()
def _add_delta(layer, sign: float) -> None:
    w = layer.base.weight
    delta = layer.delta_weight()                     # float32 (float64 for a float64 model)
    w.copy_((w.to(delta.dtype) + sign * delta).to(w.dtype))   # one rounding to W's dtype


def merge(model: nn.Module) -> nn.Module:
    """Add scaling·B·A into each base weight, so forward costs what the base model costs."""
    layers = _require_lora(model, "merge")
    merged = [n for n, m in layers.items() if m.merged]
    if merged:
        raise ValueError(f"merge: {len(merged)} LoRA layer(s) are already merged (e.g. {merged[0]!r}); "
                         "merging twice would add B·A twice. Call unmerge(model) first.")
    for layer in layers.values():
        _add_delta(layer, +1.0)
        layer.merged = True
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Subtract scaling·B·A from each base weight again (the inverse of merge)."""
    layers = _require_lora(model, "unmerge")
    unmerged = [n for n, m in layers.items() if not m.merged]
    if unmerged:
        raise ValueError(f"unmerge: {len(unmerged)} LoRA layer(s) are not merged (e.g. {unmerged[0]!r}); "
                         "there is nothing to subtract. Call merge(model) first.")
    for layer in layers.values():
        _add_delta(layer, -1.0)
        layer.merged = False
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer and put the plain base layers back: a model with no LoRA modules."""
    layers = _require_lora(model, "merge_and_unload")
    for name, layer in layers.items():
        if not layer.merged:
            _add_delta(layer, +1.0)
            layer.merged = True
        _set_module(model, name, layer.base)
    return model


@contextlib.contextmanager
def disable_lora(model: nn.Module):
    """Inside the block every LoRA layer computes base(x) only: exactly the base model."""
    layers = _require_lora(model, "disable_lora")
    merged = [n for n, m in layers.items() if m.merged]
    if merged:
        raise ValueError(f"disable_lora: {merged[0]!r} is merged, so B·A is inside W and cannot be switched "
                         "off exactly. Call unmerge(model) first.")
    before = {n: m.disabled for n, m in layers.items()}
    try:
        for m in layers.values():
            m.disabled = True
        yield model
    finally:
        for n, m in layers.items():
            m.disabled = before[n]
