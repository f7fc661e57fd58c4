"""Merging LoRA into the frozen weights, and switching it off (through each layer's contract).

    merge(model)            W ← W + ΔW in every LoRA layer (no extra latency afterwards)
    unmerge(model)          W back exactly as it was (each layer kept a copy while merged)
    merge_and_unload(model) merge, then replace each LoRA layer by its plain base layer
    with disable_lora(model): ...   the model computes exactly the base model inside

Each ΔW is computed in float32 (float64 for a float64 W) and cast to W's dtype once.
merge_and_unload changes the model's weights, so it also changes its recorded name
(config.name_or_path gets "+merged-lora"): an adapter trained on the merged model does not
load silently onto the original base.
"""
from __future__ import annotations

import contextlib

import torch.nn as nn

from .inject import _set_module, lora_modules

MERGED_SUFFIX = "+merged-lora"


def _require_lora(model: nn.Module, what: str) -> dict:
    layers = lora_modules(model)
    if not layers:
        raise ValueError(f"{what}: the model has no LoRA layers; call apply_lora(model, ...) first")
    return layers


def merge(model: nn.Module) -> nn.Module:
    """Add ΔW into each base weight, so forward costs what the base model costs."""
    layers = _require_lora(model, "merge")
    merged = [n for n, m in layers.items() if m.merged]
    if merged:
        raise ValueError(f"merge: {len(merged)} LoRA layer(s) are already merged (e.g. {merged[0]!r}); "
                         "merging twice would add B·A twice. Call unmerge(model) first.")
    for layer in layers.values():
        layer.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Put each base weight back as it was before merge (the inverse of merge, bit for bit)."""
    layers = _require_lora(model, "unmerge")
    unmerged = [n for n, m in layers.items() if not m.merged]
    if unmerged:
        raise ValueError(f"unmerge: {len(unmerged)} LoRA layer(s) are not merged (e.g. {unmerged[0]!r}); "
                         "there is nothing to subtract. Call merge(model) first.")
    for layer in layers.values():
        layer.unmerge()
    return model


def _mark_merged(model: nn.Module) -> None:
    """config.name_or_path += "+merged-lora": the weights are no longer those of the named base."""
    cfg = getattr(model, "config", None)
    name = getattr(cfg, "name_or_path", None) or getattr(cfg, "_name_or_path", None)
    if cfg is not None and name and not str(name).endswith(MERGED_SUFFIX):
        cfg.name_or_path = f"{name}{MERGED_SUFFIX}"


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer and put the plain base layers back: a model with no LoRA modules."""
    layers = _require_lora(model, "merge_and_unload")
    for name, layer in layers.items():
        if not layer.merged:
            layer.merge(keep_copy=False)
        _set_module(model, name, layer.base)
    _mark_merged(model)
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
