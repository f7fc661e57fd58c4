"""Saving and loading adapters: only the adapter tensors (megabytes), never the frozen model.

Two formats, both a folder of safetensors + JSON (we never unpickle):

- "lora_mini": adapter.safetensors (keys "<module>.<tensor>", e.g. "<module>.lora_A" r × in,
  "<module>.lora_B" out × r, DoRA's "<module>.lora_magnitude" (out,)) + lora_config.json
  (kind, r, alpha, dropout, rslora, target modules, base model, shapes, version, and the
  sha256 of the tensors file).
- "peft": adapter_model.safetensors (keys "base_model.model.<module>.lora_A.weight", ...,
  DoRA "....lora_magnitude_vector") + adapter_config.json, loadable by
  `peft.PeftModel.from_pretrained` with identical outputs. Its safetensors header records the
  sha256 of the tensor data (PEFT ignores it; we check it).

io knows no layer kinds: it saves what each layer's adapter_tensors() / adapter_config()
return (layers.py: the layer contract) and loads by building layers.layer_class(kind) with
from_adapter(), or by load_adapter_tensors() into the layers a model already has. An adapter
file is always relative to the unchanged base model (a PiSSA layer saves its rank-2r conversion;
save_adapter asks for convert_pissa=True so that this never happens unnoticed).

Saving: NaN/Inf refused; a new folder appears whole (temporary folder + rename); into an
existing folder each file goes through a temporary name and os.replace, the config last, and
the other format's files are removed. Loading checks everything before the model changes:
files, format, version, checksum, finite values, config ↔ tensors (modules, shapes, kind),
base model, module names, shapes, the layers already there.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from .inject import _set_module, find_targets, lora_modules, mark_only_lora_trainable
from .layers import LINEAR_TYPES, LoRALinear, check_hparams, layer_class
from .targets import matches, parse_targets

CONFIG = "lora_config.json"
WEIGHTS = "adapter.safetensors"
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
FORMATS = {"lora_mini": (CONFIG, WEIGHTS, ""), "peft": (PEFT_CONFIG, PEFT_WEIGHTS, PEFT_PREFIX)}
# a layer's tensor name -> key suffix in each format ("<module><suffix>")
KEYS = {"lora_mini": {"lora_A": ".lora_A", "lora_B": ".lora_B", "lora_magnitude": ".lora_magnitude"},
        "peft": {"lora_A": ".lora_A.weight", "lora_B": ".lora_B.weight",
                 "lora_magnitude": ".lora_magnitude_vector"}}
VERSION = 2                 # lora_config.json version written; 1 (no checksum) still loads
SHA_META = "lora_mini_sha256"   # safetensors metadata: sha256 of the tensor data region


def _model_name(model: nn.Module) -> str | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "name_or_path", None) or getattr(cfg, "_name_or_path", None) or None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _data_region(blob: bytes) -> bytes:
    """The tensor bytes of a safetensors file (after the 8-byte length and the JSON header)."""
    return blob[8 + int.from_bytes(blob[:8], "little"):]


# ----------------------------------------------------------------------------- save

def _common_config(layers: dict) -> dict:
    """The one adapter_config() all layers share (+ fan_in_fan_out); ValueError naming the first difference."""
    configs = {n: m.adapter_config() for n, m in layers.items()}
    first_name, first = next(iter(configs.items()))
    for n, c in configs.items():
        if c != first:
            key = next(k for k in sorted(set(c) | set(first)) if c.get(k) != first.get(k))
            raise ValueError(f"save_adapter: LoRA layers differ in {key} ({first_name!r}: {first.get(key)!r}, "
                             f"{n!r}: {c.get(key)!r}); one adapter file holds one setting. Apply one variant "
                             "to the model.")
    fan = {m.fan_in_fan_out for m in layers.values()}
    if len(fan) != 1:
        raise ValueError("save_adapter: LoRA layers mix layer types (Linear and Conv1D); one adapter file holds one")
    return {**first, "fan_in_fan_out": fan.pop()}


def _collect(layers: dict, fmt: str) -> tuple[dict, dict]:
    """-> ({file key: float32 tensor}, {module: {tensor: shape}}); NaN/Inf refused."""
    prefix, keys = FORMATS[fmt][2], KEYS[fmt]
    tensors, shapes = {}, {}
    for name, m in layers.items():
        parts = m.adapter_tensors()
        for which, t in parts.items():
            if not torch.isfinite(t).all():
                raise ValueError(f"save_adapter: {name}.{which} holds NaN or Inf (training diverged?); "
                                 "nothing was written. Lower the learning rate and train again.")
            tensors[f"{prefix}{name}{keys.get(which, '.' + which)}"] = t.detach().float().contiguous().cpu()
        shapes[name] = {which: list(t.shape) for which, t in parts.items()}
    return tensors, shapes


def _serialize(tensors: dict) -> bytes:
    """safetensors bytes whose header records the sha256 of their own tensor data; byte-identical for equal tensors.

    safetensors writes metadata keys in no fixed order, so the header is re-written with sorted keys
    (padded with spaces to 8 bytes, as the format allows); the tensor data is untouched.
    """
    blob = save_bytes(tensors, metadata={"format": "pt"})
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    header["__metadata__"][SHA_META] = _sha256(blob[8 + n:])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]


def _config_json(model: nn.Module, fmt: str, cfg: dict, targets: list, shapes: dict, blob: bytes) -> dict:
    """The config file's contents for one format."""
    dora = cfg["kind"] == "dora"
    if fmt == "peft":
        return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": _model_name(model),
                "r": cfg["r"], "lora_alpha": cfg["alpha"], "lora_dropout": cfg["dropout"],
                "use_rslora": cfg["use_rslora"], "use_dora": dora, "target_modules": targets,
                "fan_in_fan_out": cfg["fan_in_fan_out"], "bias": "none", "rank_pattern": {}, "alpha_pattern": {},
                "inference_mode": True, "init_lora_weights": True, "modules_to_save": None}
    extra = {k: v for k, v in cfg.items() if k not in ("kind", "r", "alpha", "dropout", "use_rslora", "fan_in_fan_out")}
    return {"format": "lora_mini", "version": VERSION, "kind": cfg["kind"], "r": cfg["r"], "alpha": cfg["alpha"],
            "dropout": cfg["dropout"], "use_rslora": cfg["use_rslora"], "use_dora": dora, "target_modules": targets,
            "base_model": _model_name(model), "shapes": shapes, "tensors_sha256": _sha256(blob), **extra}


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_folder(folder: Path, files: dict, stale: tuple) -> None:
    """Write {name: bytes} into `folder` (in order; the config last) without ever leaving half a save.

    A new (or empty) folder: everything goes into a temporary folder beside it, renamed at the end.
    An existing one: each file to a temporary name, then os.replace; `stale` files are removed after.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    if not folder.exists() or not any(folder.iterdir()):
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.saving-", dir=folder.parent))
        try:
            for name, data in files.items():
                _write(tmp / name, data)
            if folder.exists():
                folder.rmdir()
            os.rename(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return
    for name, data in files.items():
        part = folder / f".{name}.tmp"
        _write(part, data)
        os.replace(part, folder / name)
    for name in stale:
        (folder / name).unlink(missing_ok=True)


def save_adapter(model: nn.Module, path, format: str = "lora_mini", convert_pissa: bool = False) -> Path:
    """Write the model's adapter tensors (float32) and config to the folder `path`; returns the folder.

    format="lora_mini" (default) or "peft" (adapter_config.json + adapter_model.safetensors).
    convert_pissa=True is required for a PiSSA model (its W is W_res): it saves A' = [A; A₀],
    B' = [B, −B₀] with r' = 2r, α' = 2α (rsLoRA: √2·α), a plain LoRA adapter on the original W.
    Every check happens before anything is written.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be 'lora_mini' or 'peft', got {format!r}")
    layers = lora_modules(model)
    if not layers:
        raise ValueError("save_adapter: the model has no LoRA layers; call apply_lora(model, ...) first")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"save_adapter: {folder} is a file; pass a folder path (it is created if needed)")
    cfg = _common_config(layers)
    converted = cfg.get("converted_from")
    if converted and not convert_pissa:
        shown = {"pissa": "PiSSA"}.get(converted, converted)
        raise ValueError(f"save_adapter: the model's LoRA layers are {shown}-initialized: their A, B only fit the "
                         "residual W_res, not the base model an adapter is loaded into. Pass convert_pissa=True "
                         "to save the equivalent plain LoRA adapter (rank 2r) for the original W.")
    if convert_pissa and not converted:
        raise ValueError("save_adapter: convert_pissa=True but the model has no PiSSA layers "
                         "(apply_variant(..., variant='pissa') or pissa_init_); save without it")
    tensors, shapes = _collect(layers, format)
    blob = _serialize(tensors)
    config = _config_json(model, format, cfg, sorted(layers), shapes, blob)
    cfg_name, weights_name, _ = FORMATS[format]
    stale = tuple(n for f, (c, w, _) in FORMATS.items() if f != format for n in (c, w))
    _write_folder(folder, {weights_name: blob, cfg_name: json.dumps(config, indent=2).encode()}, stale)
    return folder


# ----------------------------------------------------------------------------- read and check the files

def _read_files(folder: Path) -> tuple[str, dict, bytes, Path]:
    """-> (format, raw config, tensors file bytes, tensors file path). Raises with the fix."""
    if not folder.is_dir():
        raise FileNotFoundError(f"load_adapter: {folder} is not a folder; pass the folder that save_adapter wrote")
    present = [f for f, (c, _, _) in FORMATS.items() if (folder / c).is_file()]
    if len(present) == 2:
        raise ValueError(f"load_adapter: {folder} holds both a lora_mini adapter ({CONFIG}) and a PEFT one "
                         f"({PEFT_CONFIG}); it is unclear which is meant. Delete one, or save each to its own folder.")
    if not present:
        raise FileNotFoundError(f"load_adapter: {folder} has neither {CONFIG} (lora_mini) nor {PEFT_CONFIG} (PEFT)")
    fmt = present[0]
    cfg_name, weights_name, _ = FORMATS[fmt]
    try:
        raw = json.loads((folder / cfg_name).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"load_adapter: {folder / cfg_name} is not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"load_adapter: {folder / cfg_name} is not a JSON object")
    file = folder / weights_name
    if not file.is_file():
        pickles = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        extra = (f" Found {pickles}: pickled files are never loaded here (they can run code); "
                 "re-save them as safetensors.") if pickles else ""
        raise FileNotFoundError(f"load_adapter: {file} is missing.{extra}")
    return fmt, raw, file.read_bytes(), file


def _peft_config(raw: dict, cfg_name: str) -> dict:
    if raw.get("peft_type") != "LORA":
        raise ValueError(f"load_adapter: {cfg_name} has peft_type={raw.get('peft_type')!r}; only LORA is supported")
    if raw.get("rank_pattern") or raw.get("alpha_pattern"):
        raise ValueError("load_adapter: PEFT adapters with rank_pattern/alpha_pattern are not supported")
    init = raw.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(("pissa", "corda", "olora", "lora_ga")):
        raise ValueError(f"load_adapter: {cfg_name} has init_lora_weights={init!r}: its A, B fit a changed "
                         "(residual) base weight. Save it in PEFT with path_initial_model_for_weight_conversion "
                         "(or ours with convert_pissa=True) to get a LoRA adapter for the original model")
    targets = raw.get("target_modules")
    partial = any(raw.get(k) for k in ("layers_to_transform", "layers_pattern", "exclude_modules"))
    return {"kind": "dora" if raw.get("use_dora") else "lora", "r": raw["r"], "alpha": raw["lora_alpha"],
            "dropout": raw.get("lora_dropout", 0.0), "use_rslora": bool(raw.get("use_rslora", False)),
            "base_model": raw.get("base_model_name_or_path"),
            "targets": None if targets in (None, "all-linear") else targets, "complete": not partial}


def _ours_config(raw: dict, cfg_name: str) -> dict:
    version = raw.get("version")
    if version not in (1, VERSION):
        raise ValueError(f"load_adapter: {cfg_name} has version {version!r}; this lora_mini reads versions 1 and "
                         f"{VERSION}. Update lora_mini, or save the adapter again.")
    kind = raw.get("kind", "dora" if raw.get("use_dora") else "lora")
    if "use_dora" in raw and bool(raw["use_dora"]) != (kind == "dora"):
        raise ValueError(f"load_adapter: {cfg_name} says kind={kind!r} but use_dora={raw['use_dora']!r}; save again")
    if version >= 2 and "tensors_sha256" not in raw:
        raise ValueError(f"load_adapter: {cfg_name} (version {version}) has no tensors_sha256; save the adapter again")
    return {"kind": kind, "r": raw["r"], "alpha": raw["alpha"], "dropout": raw.get("dropout", 0.0),
            "use_rslora": bool(raw.get("use_rslora", False)), "base_model": raw.get("base_model"),
            "targets": raw.get("target_modules"), "exact": True, "shapes": raw.get("shapes"),
            "sha256": raw.get("tensors_sha256")}


def _config(fmt: str, raw: dict) -> dict:
    """The file's config in one form: kind, r, alpha, dropout, use_rslora, base_model, targets, ..."""
    cfg_name = FORMATS[fmt][0]
    try:
        cfg = _peft_config(raw, cfg_name) if fmt == "peft" else _ours_config(raw, cfg_name)
    except KeyError as e:
        raise ValueError(f"load_adapter: {cfg_name} has no {e.args[0]!r}; the config is incomplete: save again") from None
    try:
        check_hparams(cfg["r"], cfg["alpha"], cfg["dropout"])
        layer_class(cfg["kind"])
    except ValueError as e:
        raise ValueError(f"load_adapter: {cfg_name}: {e}") from None
    return cfg


def _tensors(blob: bytes, file: Path) -> dict:
    """Parse the safetensors bytes, check the recorded data checksum and that every value is finite."""
    try:
        tensors = load_bytes(blob)
        header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"load_adapter: {file} is not a valid safetensors file ({e}); "
                         "it may be truncated or corrupt: save the adapter again") from e
    digest = (header.get("__metadata__") or {}).get(SHA_META)
    if digest is not None and digest != _sha256(_data_region(blob)):
        raise ValueError(f"load_adapter: the tensors in {file} do not match the checksum saved with them: "
                         "the file is corrupt or was changed. Save the adapter again.")
    for key, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"load_adapter: {key!r} in {file} holds NaN or Inf values (training diverged?); "
                             "the adapter is broken and is not loaded")
    return tensors


def _group(tensors: dict, fmt: str, cfg: dict, file: Path) -> dict:
    """{module: {tensor name: tensor}}, each module with exactly the tensors of the config's layer kind."""
    prefix, cfg_name = FORMATS[fmt][2], FORMATS[fmt][0]
    wanted = set(layer_class(cfg["kind"]).tensor_names)
    pairs: dict[str, dict] = {}
    for key, t in tensors.items():
        body = key[len(prefix):] if key.startswith(prefix) else None
        which = next((w for w, end in KEYS[fmt].items() if body is not None and body.endswith(end)), None)
        if which is None:
            raise ValueError(f"load_adapter: unexpected tensor {key!r} in {file}: only adapter tensors "
                             f"({', '.join(KEYS[fmt].values())}, keys starting {prefix!r}) are supported")
        pairs.setdefault(body[: -len(KEYS[fmt][which])], {})[which] = t
    for name, ab in pairs.items():
        if set(ab) - wanted:
            raise ValueError(f"load_adapter: {file} has {sorted(set(ab) - wanted)} for {name!r} but {cfg_name} says "
                             f"kind {cfg['kind']!r} (use_dora: {cfg['kind'] == 'dora'}); the config and the weights "
                             "disagree: save the adapter again")
        if set(ab) != wanted:
            raise ValueError(f"load_adapter: {file} has only {sorted(ab)} for module {name!r} (needs {sorted(wanted)}); "
                             "the file is incomplete")
    if not pairs:
        raise ValueError(f"load_adapter: {file} holds no LoRA weights")
    return pairs


def _check_config_matches(cfg: dict, pairs: dict, blob: bytes, fmt: str) -> None:
    """The config's modules, shapes and checksum agree with the tensors file."""
    cfg_name, weights_name, _ = FORMATS[fmt]
    if cfg.get("sha256") is not None and cfg["sha256"] != _sha256(blob):
        raise ValueError(f"load_adapter: {weights_name} does not match {cfg_name} (its sha256 differs): the file was "
                         "changed, or a save was interrupted. Save the adapter again.")
    targets = cfg.get("targets")
    if cfg.get("exact") and targets is not None:
        missing, extra = sorted(set(targets) - set(pairs)), sorted(set(pairs) - set(targets))
        if missing or extra:
            raise ValueError(f"load_adapter: {cfg_name} lists {len(targets)} modules but {weights_name} has tensors "
                             f"for {len(pairs)} (missing: {missing[:3]}, not listed: {extra[:3]}); the file is "
                             "incomplete: save the adapter again")
    elif targets is not None:
        spec = parse_targets(targets)
        stray = [n for n in pairs if not matches(n, spec)]
        if stray:
            raise ValueError(f"load_adapter: {weights_name} has tensors for {stray[0]!r}, which {cfg_name}'s "
                             f"target_modules {targets!r} does not select; the config and the weights disagree")
    for name, want in (cfg.get("shapes") or {}).items():
        got = {k: list(t.shape) for k, t in pairs.get(name, {}).items()}
        if name in pairs and got != want:
            raise ValueError(f"load_adapter: {weights_name} has shapes {got} at {name!r} but {cfg_name} says {want}; "
                             "save the adapter again")


def read_adapter(path) -> tuple[dict, dict, str]:
    """-> (config, {module: {tensor name: tensor}}, format) after every file-level check."""
    fmt, raw, blob, file = _read_files(Path(path))
    cfg = _config(fmt, raw)
    pairs = _group(_tensors(blob, file), fmt, cfg, file)
    _check_config_matches(cfg, pairs, blob, fmt)
    return cfg, pairs, fmt


# ----------------------------------------------------------------------------- load into a model

def _check_base(model: nn.Module, cfg: dict, check_base: bool) -> None:
    base, mine = cfg.get("base_model"), _model_name(model)
    if check_base and base and mine and base != mine:
        raise ValueError(f"load_adapter: the adapter was trained on {base!r} but the model is {mine!r}; "
                         "load the right base model (or pass check_base=False if they are the same weights)")


def _check_complete(model: nn.Module, cfg: dict, pairs: dict) -> None:
    """A PEFT adapter listing module-name suffixes must have tensors for every module they select."""
    targets = cfg.get("targets")
    if cfg.get("exact") or not cfg.get("complete") or targets is None or isinstance(targets, str):
        return
    spec = parse_targets(targets)
    lora = lora_modules(model)
    selected = [n for n, m in model.named_modules()
                if isinstance(m, LINEAR_TYPES + (LoRALinear,)) and matches(n, spec)
                and not any(n.startswith(p + ".") for p in lora)]
    missing = sorted(set(selected) - set(pairs))
    if missing:
        raise ValueError(f"load_adapter: target_modules {targets!r} selects {len(selected)} modules of the model but the "
                         f"file has tensors for {len(pairs)} (none for {missing[0]!r}, ...): the file is incomplete "
                         "or was made for another model")


def _check_existing(existing: dict, cfg: dict, pairs: dict) -> None:
    """Switching adapters: the model's LoRA layers must be exactly the adapter's, of its kind and setting."""
    extra, absent = sorted(set(existing) - set(pairs)), sorted(set(pairs) - set(existing))
    if extra or absent:
        raise ValueError(f"load_adapter: the model's LoRA layers differ from the adapter's "
                         f"(model only: {extra[:3]}, adapter only: {absent[:3]}); load into a fresh base model")
    if any(m.merged for m in existing.values()):
        raise ValueError("load_adapter: the model's LoRA is merged; call unmerge(model) before switching adapters")
    cls = layer_class(cfg["kind"])
    for name, layer in existing.items():
        if type(layer).kind != cls.kind:
            raise ValueError(f"load_adapter: the file is a {cls.title} adapter but {name!r} is a {layer.title} layer; "
                             "they compute different things. Load it into a fresh base model (load_adapter makes "
                             "the right layers).")
        layer.check_adapter_tensors(pairs[name], name)
        if (layer.r, layer.alpha, layer.use_rslora) != (cfg["r"], float(cfg["alpha"]), cfg["use_rslora"]):
            raise ValueError(f"load_adapter: {name!r} already has LoRA with r={layer.r}, alpha={layer.alpha:g}, "
                             f"rslora={layer.use_rslora}; the adapter has r={cfg['r']}, alpha={cfg['alpha']}. "
                             "Use merge_and_unload or a fresh model to load a different configuration.")


def _new_layers(model: nn.Module, cfg: dict, pairs: dict) -> dict:
    """Build (not insert) the adapter's layers on the model's modules, tensors loaded; the model is unchanged."""
    modules = dict(model.named_modules())
    missing = [n for n in pairs if n not in modules]
    if missing:
        raise ValueError(f"load_adapter: the model has no module {missing[0]!r} ({len(missing)} missing); "
                         "the adapter was made for another architecture")
    names = find_targets(model, sorted(pairs))        # linear, no LoRA yet, not tied
    cls = layer_class(cfg["kind"])
    for name in names:
        want = {k: tuple(v) for k, v in cls.adapter_shapes(modules[name], cfg["r"]).items()}
        got = {k: tuple(t.shape) for k, t in pairs[name].items()}
        if got != want:
            raise ValueError(f"load_adapter: shape mismatch at {name!r}: file has {got}, the model needs {want} "
                             f"(r={cfg['r']}); wrong base model or rank")
    grads = {id(p): p.requires_grad for p in model.parameters()}
    try:
        layers = {n: cls.from_adapter(modules[n], cfg) for n in names}
        for n, layer in layers.items():
            layer.load_adapter_tensors(pairs[n])
    except BaseException:
        for p in model.parameters():               # building a layer froze its base: undo
            p.requires_grad_(grads[id(p)])
        raise
    return layers


def load_adapter(model: nn.Module, path, check_base: bool = True) -> nn.Module:
    """Load an adapter saved by save_adapter or by PEFT into `model`; returns the model.

    A model without LoRA gets layers of the adapter's kind (LoRALinear, DoRALinear) on exactly
    the adapter's modules, in the mode (train/eval) of the layers they wrap. A model that already
    has LoRA on those modules (same kind, r, α) gets the tensors copied in: this switches adapters.
    Every check happens before the model changes; a failed load leaves it as it was.
    """
    cfg, pairs, _ = read_adapter(path)
    _check_base(model, cfg, check_base)
    _check_complete(model, cfg, pairs)
    existing = lora_modules(model)
    if existing:
        _check_existing(existing, cfg, pairs)
        for name, layer in existing.items():
            layer.load_adapter_tensors(pairs[name])
        return model
    for name, layer in _new_layers(model, cfg, pairs).items():
        _set_module(model, name, layer)
    mark_only_lora_trainable(model)
    return model


def adapter_bytes(path) -> int:
    """Size on disk of an adapter folder (all files)."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
