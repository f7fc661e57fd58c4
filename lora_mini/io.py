"""Saving and loading adapters: only A and B (megabytes), never the frozen model (gigabytes).

Two formats, both a folder of safetensors + JSON (we never unpickle):

- "lora_mini": adapter.safetensors (keys "<module>.lora_A" r × in, "<module>.lora_B" out × r,
  DoRA also "<module>.lora_magnitude" (out,)) + lora_config.json (r, alpha, dropout, rslora,
  use_dora, targets, base model, expected shapes).
- "peft": adapter_model.safetensors (keys "base_model.model.<module>.lora_A.weight", ...,
  DoRA "....lora_magnitude_vector") + adapter_config.json ("use_dora"), loadable by
  `peft.PeftModel.from_pretrained` with identical outputs.

An adapter file is always relative to the unchanged base model. PiSSA changes W to W_res, so a
PiSSA model is saved with convert_pissa=True: A' = [A; A₀], B' = [B, −B₀], r' = 2r (a plain
LoRA adapter on the original W, as PEFT's path_initial_model_for_weight_conversion).

load_adapter reads either, checks everything against the model first, and then either injects
LoRA/DoRA (model without LoRA) or copies the tensors into the existing layers (switching adapters).
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
from .variants import DoRALinear, apply_variant, is_pissa, pissa_to_lora

CONFIG = "lora_config.json"
WEIGHTS = "adapter.safetensors"
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
# our tensor name -> key suffix in each format ("<module><suffix>")
KEYS = {"lora_mini": {"lora_A": ".lora_A", "lora_B": ".lora_B", "lora_magnitude": ".lora_magnitude"},
        "peft": {"lora_A": ".lora_A.weight", "lora_B": ".lora_B.weight",
                 "lora_magnitude": ".lora_magnitude_vector"}}


def _model_name(model: nn.Module) -> str | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "name_or_path", None) or getattr(cfg, "_name_or_path", None) or None


def _common(layers: dict, attr: str, what: str):
    values = {getattr(m, attr) for m in layers.values()}
    if len(values) != 1:
        raise ValueError(f"save_adapter: LoRA layers use different {what} ({sorted(values)}); "
                         "one adapter file holds one setting")
    return values.pop()


def _uniform(layers: dict, flag, what: str, fix: str) -> bool:
    names = [n for n, m in layers.items() if flag(m)]
    if names and len(names) != len(layers):
        raise ValueError(f"save_adapter: only {len(names)} of {len(layers)} LoRA layers are {what} "
                         f"(e.g. {names[0]!r}); one adapter file holds one kind. {fix}")
    return bool(names)


def save_adapter(model: nn.Module, path, format: str = "lora_mini", convert_pissa: bool = False) -> Path:
    """Write the model's LoRA weights (A, B, DoRA's m; float32) and config to the folder `path`.

    format="lora_mini" (default) or "peft" (adapter_config.json + adapter_model.safetensors).
    DoRA layers (DoRALinear) also store m and "use_dora": true.
    convert_pissa=True is required for a PiSSA model (its W is W_res): saves A' = [A; A₀],
    B' = [B, −B₀] with r' = 2r, α' = 2α (rsLoRA: √2·α), a plain LoRA adapter on the original W.
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
    dora = _uniform(layers, lambda m: isinstance(m, DoRALinear), "DoRA", "Apply one variant to the model.")
    pissa = _uniform(layers, is_pissa, "PiSSA-initialized", "Apply one variant to the model.")
    if pissa and not convert_pissa:
        raise ValueError("save_adapter: the model's LoRA layers are PiSSA-initialized: their A, B only fit the "
                         "residual W_res, not the base model an adapter is loaded into. Pass convert_pissa=True "
                         "to save the equivalent plain LoRA adapter (rank 2r) for the original W.")
    if convert_pissa and not pissa:
        raise ValueError("save_adapter: convert_pissa=True but the model has no PiSSA layers "
                         "(apply_variant(..., variant='pissa') or pissa_init_); save without it")
    if pissa:
        r, alpha = 2 * r, alpha * (2 ** 0.5 if rslora else 2)   # keeps s = α/r (α/√r) unchanged
    folder = Path(path)
    prefix = PEFT_PREFIX if format == "peft" else ""
    keys = KEYS[format]
    tensors, shapes = {}, {}
    for name, m in layers.items():
        a, b = pissa_to_lora(m) if pissa else (m.lora_A, m.lora_B)
        parts = {"lora_A": a, "lora_B": b}
        if dora:
            parts["lora_magnitude"] = m.lora_magnitude
        for which, t in parts.items():
            tensors[f"{prefix}{name}{keys[which]}"] = t.detach().float().contiguous().cpu()
        shapes[name] = {which: list(t.shape) for which, t in parts.items()}
    folder.mkdir(parents=True, exist_ok=True)
    targets = sorted(layers)
    if format == "peft":
        config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": _model_name(model),
                  "r": r, "lora_alpha": alpha, "lora_dropout": dropout, "use_rslora": rslora,
                  "use_dora": dora, "target_modules": targets, "fan_in_fan_out": fan_in_fan_out, "bias": "none",
                  "rank_pattern": {}, "alpha_pattern": {}, "inference_mode": True,
                  "init_lora_weights": True, "modules_to_save": None}
        save_file(tensors, str(folder / PEFT_WEIGHTS), metadata={"format": "pt"})
        (folder / PEFT_CONFIG).write_text(json.dumps(config, indent=2))
    else:
        config = {"format": "lora_mini", "version": 1, "r": r, "alpha": alpha, "dropout": dropout,
                  "use_rslora": rslora, "use_dora": dora, "target_modules": targets,
                  "base_model": _model_name(model), "shapes": shapes}
        if pissa:
            config["converted_from"] = "pissa"   # informational: r = 2 × the PiSSA rank
        save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
        (folder / CONFIG).write_text(json.dumps(config, indent=2))
    return folder


def _read(folder: Path):
    """-> (config, {module: {"lora_A", "lora_B"[, "lora_magnitude"]}}, format). Raises with the fix."""
    if not folder.is_dir():
        raise FileNotFoundError(f"load_adapter: {folder} is not a folder; pass the folder that save_adapter wrote")
    if (folder / CONFIG).is_file():
        fmt, cfg_file, weights, prefix = "lora_mini", CONFIG, WEIGHTS, ""
    elif (folder / PEFT_CONFIG).is_file():
        fmt, cfg_file, weights, prefix = "peft", PEFT_CONFIG, PEFT_WEIGHTS, PEFT_PREFIX
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
        init = config.get("init_lora_weights", True)
        if isinstance(init, str) and init.lower().startswith(("pissa", "corda", "olora", "lora_ga")):
            raise ValueError(f"load_adapter: {cfg_file} has init_lora_weights={init!r}: its A, B fit a changed "
                             "(residual) base weight. Save it in PEFT with path_initial_model_for_weight_conversion "
                             "(or ours with convert_pissa=True) to get a LoRA adapter for the original model")
        config = {"r": config["r"], "alpha": config["lora_alpha"], "dropout": config.get("lora_dropout", 0.0),
                  "use_rslora": config.get("use_rslora", False), "use_dora": config.get("use_dora", False),
                  "base_model": config.get("base_model_name_or_path")}
    use_dora = bool(config.get("use_dora", False))
    wanted = {"lora_A", "lora_B", "lora_magnitude"} if use_dora else {"lora_A", "lora_B"}
    pairs: dict[str, dict] = {}
    for key, t in tensors.items():
        if not key.startswith(prefix):
            raise ValueError(f"load_adapter: unexpected tensor {key!r} in {file} (expected keys starting {prefix!r})")
        body = key[len(prefix):]
        for which, end in KEYS[fmt].items():
            if body.endswith(end):
                pairs.setdefault(body[: -len(end)], {})[which] = t
                break
        else:
            raise ValueError(f"load_adapter: unexpected tensor {key!r} in {file}: only LoRA A/B weights "
                             "(and DoRA magnitudes) are supported")
    for name, ab in pairs.items():
        if "lora_magnitude" in ab and not use_dora:
            raise ValueError(f"load_adapter: {file} has a DoRA magnitude for {name!r} but {cfg_file} does not say "
                             "use_dora: true; the config and the weights disagree: save the adapter again")
        if set(ab) != wanted:
            raise ValueError(f"load_adapter: {file} has only {sorted(ab)} for module {name!r} (needs {sorted(wanted)}); "
                             "the file is incomplete")
    if not pairs:
        raise ValueError(f"load_adapter: {file} holds no LoRA weights")
    return config, pairs, fmt


def load_adapter(model: nn.Module, path, check_base: bool = True) -> nn.Module:
    """Load an adapter saved by save_adapter or by PEFT into `model`; returns the model.

    A model without LoRA gets LoRA layers (DoRALinear for a DoRA adapter) on exactly the
    adapter's modules. A model that already has LoRA on those modules (same r, α, and DoRA or
    not) gets A, B (and m) copied in: this switches adapters.
    Every check (files, base model, module names, shapes, rank, DoRA) happens before the model changes.
    """
    config, pairs, fmt = _read(Path(path))
    r, alpha = config["r"], config["alpha"]
    rslora, use_dora = bool(config.get("use_rslora", False)), bool(config.get("use_dora", False))
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
    kind = "a DoRA adapter" if use_dora else "a plain LoRA adapter"
    for name, ab in pairs.items():
        m = modules[name]
        layer = existing.get(name)
        if layer is None and not isinstance(m, LINEAR_TYPES):
            raise ValueError(f"load_adapter: module {name!r} is a {type(m).__name__}, not a linear layer")
        w = (layer.base if layer is not None else m).weight
        in_f, out_f = (w.shape if isinstance(layer.base if layer is not None else m, Conv1D) else w.shape[::-1])
        want = {"lora_A": (r, in_f), "lora_B": (out_f, r), "lora_magnitude": (out_f,)}
        got = {which: tuple(t.shape) for which, t in ab.items()}
        if any(got[which] != want[which] for which in got):
            raise ValueError(f"load_adapter: shape mismatch at {name!r}: file has {got}, the model needs "
                             f"{ {k: want[k] for k in got} } (r={r}); wrong base model or rank")
        if layer is not None and isinstance(layer, DoRALinear) != use_dora:
            has = "DoRA" if isinstance(layer, DoRALinear) else "plain LoRA"
            raise ValueError(f"load_adapter: the file is {kind} but {name!r} is a {has} layer; they compute "
                             "different things. Load it into a fresh base model (load_adapter makes the right layers).")
        if layer is not None and (layer.r, layer.alpha, layer.use_rslora) != (r, float(alpha), rslora):
            raise ValueError(f"load_adapter: {name!r} already has LoRA with r={layer.r}, alpha={layer.alpha:g}, "
                             f"rslora={layer.use_rslora}; the adapter has r={r}, alpha={alpha}. "
                             "Use merge_and_unload or a fresh model to load a different configuration.")
        if layer is not None and is_pissa(layer):
            raise ValueError(f"load_adapter: {name!r} is a PiSSA layer (its W is W_res) but adapter files are "
                             "relative to the original W; load into a fresh base model")
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
        if use_dora:
            apply_variant(model, pattern, r, alpha, "dora", config.get("dropout", 0.0), use_rslora=rslora)
        else:
            apply_lora(model, pattern, r=r, alpha=alpha, dropout=config.get("dropout", 0.0), use_rslora=rslora)
        existing = lora_modules(model)
    with torch.no_grad():
        for name, ab in pairs.items():
            for which, t in ab.items():
                getattr(existing[name], which).copy_(t)
    return model


def adapter_bytes(path) -> int:
    """Size on disk of an adapter folder (all files)."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
