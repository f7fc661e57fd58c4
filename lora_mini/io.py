"""Saving and loading adapters: only A and B (megabytes), never the frozen model (gigabytes).

Two formats, both a folder of safetensors + JSON (we never unpickle):

- "lora_mini": adapter.safetensors (keys "<module>.lora_A" r × in, "<module>.lora_B" out × r)
  + lora_config.json (r, alpha, dropout, rslora, targets, base model, expected shapes).
- "peft": adapter_model.safetensors (keys "base_model.model.<module>.lora_A.weight", ...)
  + adapter_config.json, loadable by `peft.PeftModel.from_pretrained` with identical outputs.

load_adapter reads either, checks everything against the model first, and then either injects
LoRA (model without LoRA) or copies A and B into the existing LoRA layers (switching adapters).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .inject import apply_lora, find_targets, lora_modules
from .layers import LINEAR_TYPES, Conv1D

CONFIG = "lora_config.json"
WEIGHTS = "adapter.safetensors"
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


def _model_name(model: nn.Module) -> str | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "name_or_path", None) or getattr(cfg, "_name_or_path", None) or None


def _common(layers: dict, attr: str, what: str):
    values = {getattr(m, attr) for m in layers.values()}
    if len(values) != 1:
        raise ValueError(f"save_adapter: LoRA layers use different {what} ({sorted(values)}); "
                         "one adapter file holds one setting")
    return values.pop()


def save_adapter(model: nn.Module, path, format: str = "lora_mini") -> Path:
    """Write the model's LoRA weights (A, B in float32) and config to the folder `path`.

    format="lora_mini" (default) or "peft" (adapter_config.json + adapter_model.safetensors).
    Returns the folder.
    """
    if format not in ("lora_mini", "peft"):
        raise ValueError(f"format must be 'lora_mini' or 'peft', got {format!r}")
    layers = lora_modules(model)
    if not layers:
        raise ValueError("save_adapter: the model has no LoRA layers; call apply_lora(model, ...) first")
    r, alpha = _common(layers, "r", "ranks"), _common(layers, "alpha", "alphas")
    rslora, dropout = _common(layers, "use_rslora", "rsLoRA settings"), _common(layers, "dropout_p", "dropouts")
    fan_in_fan_out = _common(layers, "fan_in_fan_out", "layer types (Linear and Conv1D)")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    prefix, suffix = (PEFT_PREFIX, ".weight") if format == "peft" else ("", "")
    tensors = {}
    for name, m in layers.items():
        tensors[f"{prefix}{name}.lora_A{suffix}"] = m.lora_A.detach().float().contiguous().cpu()
        tensors[f"{prefix}{name}.lora_B{suffix}"] = m.lora_B.detach().float().contiguous().cpu()
    targets = sorted(layers)
    if format == "peft":
        config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": _model_name(model),
                  "r": r, "lora_alpha": alpha, "lora_dropout": dropout, "use_rslora": rslora,
                  "target_modules": targets, "fan_in_fan_out": fan_in_fan_out, "bias": "none",
                  "rank_pattern": {}, "alpha_pattern": {}, "inference_mode": True,
                  "init_lora_weights": True, "modules_to_save": None}
        save_file(tensors, str(folder / PEFT_WEIGHTS), metadata={"format": "pt"})
        (folder / PEFT_CONFIG).write_text(json.dumps(config, indent=2))
    else:
        config = {"format": "lora_mini", "version": 1, "r": r, "alpha": alpha, "dropout": dropout,
                  "use_rslora": rslora, "target_modules": targets, "base_model": _model_name(model),
                  "shapes": {n: {"lora_A": list(m.lora_A.shape), "lora_B": list(m.lora_B.shape)}
                             for n, m in layers.items()}}
        save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
        (folder / CONFIG).write_text(json.dumps(config, indent=2))
    return folder


def _read(folder: Path):
    """-> (config, {module: (A, B)}, format). Raises ValueError/FileNotFoundError with the fix."""
    if not folder.is_dir():
        raise FileNotFoundError(f"load_adapter: {folder} is not a folder; pass the folder that save_adapter wrote")
    if (folder / CONFIG).is_file():
        fmt, cfg_file, weights, prefix, suffix = "lora_mini", CONFIG, WEIGHTS, "", ""
    elif (folder / PEFT_CONFIG).is_file():
        fmt, cfg_file, weights, prefix, suffix = "peft", PEFT_CONFIG, PEFT_WEIGHTS, PEFT_PREFIX, ".weight"
    else:
        raise FileNotFoundError(f"load_adapter: {folder} has neither {CONFIG} (lora_mini) nor {PEFT_CONFIG} (PEFT)")
    try:
        config = json.loads((folder / cfg_file).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"load_adapter: {folder / cfg_file} is not valid JSON ({e})") from e
    file = folder / weights
    if not file.is_file():
        pickles = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        extra = (f" Found {pickles}: pickled files are never loaded here (they can run code); "
                 "re-save them as safetensors.") if pickles else ""
        raise FileNotFoundError(f"load_adapter: {file} is missing.{extra}")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"load_adapter: {file} is not a valid safetensors file ({e}); "
                         "it may be truncated or corrupt: save the adapter again") from e
    if fmt == "peft":
        if config.get("peft_type") != "LORA":
            raise ValueError(f"load_adapter: {cfg_file} has peft_type={config.get('peft_type')!r}; only LORA is supported")
        if config.get("rank_pattern") or config.get("alpha_pattern"):
            raise ValueError("load_adapter: PEFT adapters with rank_pattern/alpha_pattern are not supported")
        if config.get("use_dora"):
            raise ValueError("load_adapter: DoRA adapters are not plain LoRA; not supported by load_adapter")
        config = {"r": config["r"], "alpha": config["lora_alpha"], "dropout": config.get("lora_dropout", 0.0),
                  "use_rslora": config.get("use_rslora", False), "base_model": config.get("base_model_name_or_path")}
    pairs: dict[str, dict] = {}
    for key, t in tensors.items():
        if not key.startswith(prefix):
            raise ValueError(f"load_adapter: unexpected tensor {key!r} in {file} (expected keys starting {prefix!r})")
        body = key[len(prefix):]
        for which in ("lora_A", "lora_B"):
            end = f".{which}{suffix}"
            if body.endswith(end):
                pairs.setdefault(body[: -len(end)], {})[which] = t
                break
        else:
            raise ValueError(f"load_adapter: unexpected tensor {key!r} in {file}: only LoRA A/B weights are supported")
    for name, ab in pairs.items():
        if set(ab) != {"lora_A", "lora_B"}:
            raise ValueError(f"load_adapter: {file} has only {sorted(ab)} for module {name!r}; the file is incomplete")
    if not pairs:
        raise ValueError(f"load_adapter: {file} holds no LoRA weights")
    return config, pairs, fmt


def load_adapter(model: nn.Module, path, check_base: bool = True) -> nn.Module:
    """Load an adapter saved by save_adapter or by PEFT into `model`; returns the model.

    A model without LoRA gets LoRA layers on exactly the adapter's modules. A model that already
    has LoRA on those modules (same r, α) gets A and B copied in: this switches adapters.
    Every check (files, base model, module names, shapes, rank) happens before the model changes.
    """
    config, pairs, fmt = _read(Path(path))
    r, alpha = config["r"], config["alpha"]
    base, mine = config.get("base_model"), _model_name(model)
    if check_base and base and mine and base != mine:
        raise ValueError(f"load_adapter: the adapter was trained on {base!r} but the model is {mine!r}; "
                         "load the right base model (or pass check_base=False if they are the same weights)")
    modules = dict(model.named_modules())
    existing = lora_modules(model)
    missing = [n for n in pairs if n not in modules]
    if missing:
        raise ValueError(f"load_adapter: the model has no module {missing[0]!r} ({len(missing)} missing); "
                         "the adapter was made for another architecture")
    for name, ab in pairs.items():
        m = modules[name]
        layer = existing.get(name)
        if layer is None and not isinstance(m, LINEAR_TYPES):
            raise ValueError(f"load_adapter: module {name!r} is a {type(m).__name__}, not a linear layer")
        w = (layer.base if layer is not None else m).weight
        in_f, out_f = (w.shape if isinstance(layer.base if layer is not None else m, Conv1D) else w.shape[::-1])
        want_a, want_b = (r, in_f), (out_f, r)
        got_a, got_b = tuple(ab["lora_A"].shape), tuple(ab["lora_B"].shape)
        if (got_a, got_b) != (want_a, want_b):
            raise ValueError(f"load_adapter: shape mismatch at {name!r}: file has A {got_a}, B {got_b}, "
                             f"the model needs A {want_a}, B {want_b} (r={r}); wrong base model or rank")
        if layer is not None and (layer.r, layer.alpha, layer.use_rslora) != (r, float(alpha), bool(config.get("use_rslora", False))):
            raise ValueError(f"load_adapter: {name!r} already has LoRA with r={layer.r}, alpha={layer.alpha:g}, "
                             f"rslora={layer.use_rslora}; the adapter has r={r}, alpha={alpha}. "
                             "Use merge_and_unload or a fresh model to load a different configuration.")
    if existing:
        extra = sorted(set(existing) - set(pairs))
        absent = sorted(set(pairs) - set(existing))
        if extra or absent:
            raise ValueError(f"load_adapter: the model's LoRA layers differ from the adapter's "
                             f"(model only: {extra[:3]}, adapter only: {absent[:3]}); load into a fresh base model")
        if any(m.merged for m in existing.values()):
            raise ValueError("load_adapter: the model's LoRA is merged; call unmerge(model) before switching adapters")
    else:
        # exact module names as a regex: inject LoRA on precisely the adapter's modules
        pattern = "|".join(re.escape(n) for n in sorted(pairs))
        find_targets(model, pattern)
        apply_lora(model, pattern, r=r, alpha=alpha, dropout=config.get("dropout", 0.0),
                   use_rslora=config.get("use_rslora", False))
        existing = lora_modules(model)
    with torch.no_grad():
        for name, ab in pairs.items():
            existing[name].lora_A.copy_(ab["lora_A"])
            existing[name].lora_B.copy_(ab["lora_B"])
    return model


def adapter_bytes(path) -> int:
    """Size on disk of an adapter folder (all files)."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
