"""LoRA variants behind one API: rsLoRA, DoRA, LoRA+, PiSSA, and LoRA on a quantized base.

    apply_variant(model, "all-linear", r=16, alpha=32, variant="dora")
    opt = loraplus_optimizer(model, lr=2e-4, ratio=16)      # LoRA+: B learns ratio× faster
    quantize_base_(model, kind="nf4")                         # QLoRA's idea, fake-quantized W

variant          what changes (W frozen: out × in; A: r × in; B: out × r)
"lora"           W' = W + (α/r)·B·A                                      (Hu et al., 2021)
"rslora"         W' = W + (α/√r)·B·A                                     (Kalajdzievski, 2023)
"dora"           W' = m ⊙ (W + s·B·A) / ‖W + s·B·A‖_row, m: out, init ‖W‖_row   (Liu et al., 2024)
"pissa"          A, B from the top-r SVD of W; W_res = W − s·B·A is frozen    (Meng et al., 2024)
"loraplus"       plain LoRA layers; the optimizer gives B a ratio× larger LR   (Hayou et al., 2024)

Every variant is a layer of lora_mini.layers that honours the one layer contract (pure
delta_weight, merge/unmerge on the layer, adapter_tensors/adapter_config for io): rsLoRA is a
setting of LoRALinear, DoRA is DoRALinear (defined in layers.py, importable from here), PiSSA is
a LoRALinear whose W was replaced by W_res (it saves the equivalent rank-2r LoRA adapter on the
original W: pissa_to_lora), a quantized base is a LoRALinear on a quantized W.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn as nn

from .inject import TRAINABLE_SUFFIXES, find_targets, inject_layers, warn_if_rank_too_big  # noqa: F401
from .layers import DoRALinear, LoRALinear, check_hparams

VARIANTS = ("lora", "rslora", "dora", "pissa", "loraplus")


# ----------------------------------------------------------------------------- PiSSA

@torch.no_grad()
def pissa_init_(layer: LoRALinear) -> LoRALinear:
    """PiSSA: put W's top-r singular directions into A, B and freeze the residual.

    W = U S Vᵀ;  B = U_r √(S_r/s),  A = √(S_r/s) V_rᵀ  so that s·B·A = U_r S_r V_rᵀ,
    and W_res = W − s·B·A replaces W. At init W_res + s·B·A = W (up to W's dtype rounding).
    The initial A₀, B₀ stay on the layer as buffers pissa_A0 (r × in), pissa_B0 (out × r),
    not in state_dict: the layer's init_offset(), from which adapter_tensors() saves the
    adapter relative to the original W (pissa_to_lora; save_adapter(..., convert_pissa=True)).
    """
    if is_pissa(layer):
        raise ValueError("pissa_init_: this layer is already PiSSA-initialized (its W is W_res); "
                         "a second SVD would split W_res again. Start from a fresh LoRA layer.")
    if layer.merged:
        raise ValueError("pissa_init_: the layer is merged; call unmerge() first")
    w = layer.base.weight.to(layer._dtype())
    w = w.T if layer.fan_in_fan_out else w                                        # out × in
    U, S, Vh = torch.linalg.svd(w, full_matrices=False)
    r = layer.r
    root = torch.sqrt(S[:r] / layer.scaling)                                      # (r,)
    layer.lora_B.copy_(U[:, :r] * root[None, :])                                  # out × r
    layer.lora_A.copy_(root[:, None] * Vh[:r])                                    # r × in
    w_res = w - layer.scaling * layer.lora_B.to(w.dtype) @ layer.lora_A.to(w.dtype)
    w_res = w_res.T if layer.fan_in_fan_out else w_res
    layer.base.weight.copy_(w_res.to(layer.base.weight.dtype))
    layer.register_buffer("pissa_A0", layer.lora_A.detach().float().clone(), persistent=False)
    layer.register_buffer("pissa_B0", layer.lora_B.detach().float().clone(), persistent=False)
    return layer


def is_pissa(layer: nn.Module) -> bool:
    """True for a layer that pissa_init_ changed (it holds A₀, B₀ and its W is W_res)."""
    return isinstance(layer, LoRALinear) and layer.init_offset() is not None


def pissa_to_lora(layer: LoRALinear) -> tuple[torch.Tensor, torch.Tensor]:
    """Trained PiSSA layer -> (A', B') of a plain LoRA adapter on the ORIGINAL W, float32.

    W = W_res + s·B₀·A₀ and the trained layer computes W_res + s·B·A, so relative to W
    ΔW = s·(B·A − B₀·A₀) = s·B'·A'  with  A' = [A; A₀] (2r × in),  B' = [B, −B₀] (out × 2r).
    The rank doubles: store r' = 2r and α' = 2α (rsLoRA: α' = √2·α) so that s stays the same.
    Same layout, sign and α rule as PEFT's save_pretrained(path_initial_model_for_weight_conversion=...).
    (This is the layer's own adapter_tensors().)
    """
    if not is_pissa(layer):
        raise ValueError("pissa_to_lora: the layer was not PiSSA-initialized by pissa_init_ (no A0, B0)")
    tensors = layer.adapter_tensors()
    return tensors["lora_A"], tensors["lora_B"]


# ----------------------------------------------------------------------------- one API

def apply_variant(model: nn.Module, target_modules, r: int, alpha: float, variant: str = "lora",
                  dropout: float = 0.0, use_rslora: bool = False) -> nn.Module:
    """apply_lora with a `variant`: "lora", "rslora", "dora", "pissa" or "loraplus".

    "loraplus" makes plain LoRA layers; pair it with loraplus_optimizer(model, lr, ratio).
    use_rslora=True gives any variant the α/√r scale (as PEFT's use_rslora with use_dora).
    Returns the same model, changed in place; raises before changing anything on bad input.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    check_hparams(r, alpha, dropout)
    names = find_targets(model, target_modules)
    warn_if_rank_too_big(model, names, r)
    cls = DoRALinear if variant == "dora" else LoRALinear
    rs = variant == "rslora" or use_rslora

    def make(base):
        layer = cls(base, r, alpha, dropout, use_rslora=rs)
        return pissa_init_(layer) if variant == "pissa" else layer

    return inject_layers(model, names, make)


def loraplus_optimizer(model: nn.Module, lr: float, ratio: float = 16.0, weight_decay: float = 0.0,
                       betas=(0.9, 0.999)) -> torch.optim.Optimizer:
    """AdamW with LR `lr` for A (and DoRA's m) and `ratio`·lr for B (LoRA+; the paper uses ~16)."""
    if not ratio > 0:
        raise ValueError(f"LoRA+ ratio must be > 0 (the paper uses 16), got {ratio!r}")
    b = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith("lora_B")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("lora_B")]
    if not b:
        raise ValueError("loraplus_optimizer: the model has no trainable lora_B; apply LoRA first")
    groups = [{"params": rest, "lr": lr}, {"params": b, "lr": lr * ratio}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas,
                             weight_decay=weight_decay)


# ----------------------------------------------------------------------------- quantized base

NF4_LEVELS = torch.tensor([   # QLoRA's 4-bit NormalFloat code book (Dettmers et al., 2023)
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])
INT4_LEVELS = torch.linspace(-1.0, 1.0, 15)   # symmetric absmax int4: −7..7, /7 (zero exact)


def fake_quantize(w: torch.Tensor, kind: str = "nf4", block: int = 64) -> torch.Tensor:
    """Blockwise absmax 4-bit quantize-dequantize of W (any shape), returned in W's dtype.

    W is cut into blocks of `block` consecutive values; each block is divided by its absmax c,
    each value is rounded to the nearest of 16 levels in [−1, 1] ("nf4") or 15 uniform levels
    ("int4"), and multiplied back by c. Storage would be 4 bits per value + one c per block.
    """
    levels = {"nf4": NF4_LEVELS, "int4": INT4_LEVELS}.get(kind)
    if levels is None:
        raise ValueError(f"kind must be 'nf4' or 'int4', got {kind!r}")
    if w.numel() % block:
        raise ValueError(f"W has {w.numel()} values, not a multiple of block={block}; pick a divisor")
    x = w.detach().float().reshape(-1, block)                                    # blocks × block
    c = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    levels = levels.to(x.device)
    codes = (x / c).unsqueeze(-1).sub(levels).abs().argmin(dim=-1)              # blocks × block
    return (levels[codes] * c).reshape(w.shape).to(w.dtype)


@torch.no_grad()
def quantize_base_(model: nn.Module, target_modules="all-linear", kind: str = "nf4",
                   block: int = 64) -> dict:
    """Replace every targeted W by its 4-bit fake-quantized copy (before adding LoRA).

    Returns {"layers", "params", "rel_error" (‖W_q − W‖_F / ‖W‖_F over all), "bits_per_param"}.
    bits_per_param counts 4-bit codes plus one float32 absmax per block (4 + 32/block).
    """
    names = find_targets(model, target_modules)
    err = ref = 0.0
    n = 0
    for name in names:
        w = model.get_submodule(name).weight
        q = fake_quantize(w, kind, block)
        err += (q.float() - w.float()).pow(2).sum().item()
        ref += w.float().pow(2).sum().item()
        n += w.numel()
        w.copy_(q)
    return {"layers": len(names), "params": n, "rel_error": math.sqrt(err / ref),
            "bits_per_param": 4 + 32 / block, "kind": kind, "block": block}


# ----------------------------------------------------------------------------- every method, one call

METHODS = ("full", "lora", "rslora", "dora", "loraplus", "pissa", "qlora", "adapter", "prompt")


@dataclass(frozen=True)
class MethodSettings:
    """The knobs of prepare_method (each used by some methods only)."""
    r: int = 16                       # LoRA rank (A: r × in, B: out × r)
    alpha: float = 32                 # scale α/r
    targets: object = "all-linear"    # anything targets.parse_targets takes
    dropout: float = 0.0
    loraplus_ratio: float = 16.0      # LoRA+: B's LR = ratio × lr
    bottleneck: int = 16              # adapter: m
    n_prompt: int = 20                # prompt tuning: virtual tokens
    quant: str = "nf4"                # qlora: "nf4" or "int4"
    seed: int = 0


def _prepare(model: nn.Module, method: str, lr: float, s: MethodSettings):
    """-> (model, optimizer or None, info) for one method (see prepare_method)."""
    from .adapters import SoftPrompt, apply_adapters   # the alternatives, beside LoRA

    info: dict = {"method": method}
    optimizer = None
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif method == "qlora":
        info["quant"] = quantize_base_(model, s.targets, kind=s.quant)
        apply_variant(model, s.targets, s.r, s.alpha, "lora", s.dropout)
    elif method == "adapter":
        apply_adapters(model, ("o_proj", "down_proj"), s.bottleneck)
        info["bottleneck"] = s.bottleneck
    elif method == "prompt":
        model = SoftPrompt(model, s.n_prompt, seed=s.seed)
        info["n_prompt"] = s.n_prompt
    else:
        apply_variant(model, s.targets, s.r, s.alpha, method, s.dropout)
        if method == "loraplus":
            optimizer = loraplus_optimizer(model, lr, s.loraplus_ratio)
            info["loraplus_ratio"] = s.loraplus_ratio
    return model, optimizer, info


def prepare_method(model: nn.Module, method: str, lr: float, settings: MethodSettings | None = None,
                   **overrides):
    """Turn a fresh model into one of METHODS; returns (model, optimizer or None, info dict).

    settings: a MethodSettings; keyword overrides (r=, alpha=, targets=, dropout=, loraplus_ratio=,
    bottleneck=, n_prompt=, quant=, seed=) replace its fields.
    "full": every parameter trains. "qlora": W is 4-bit fake-quantized, then plain LoRA.
    "adapter": Houlsby adapters after o_proj and down_proj (bottleneck m). "prompt": a soft
    prompt of n_prompt tokens (the returned model is a SoftPrompt wrapper). An optimizer is
    returned only where the method needs its own (LoRA+); otherwise the trainer builds AdamW.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    known = {f.name for f in fields(MethodSettings)}
    if set(overrides) - known:
        raise TypeError(f"prepare_method: unknown settings {sorted(set(overrides) - known)}; known: {sorted(known)}")
    s = replace(settings or MethodSettings(), **overrides)
    torch.manual_seed(s.seed)
    model, optimizer, info = _prepare(model, method, lr, s)
    if method not in ("full", "adapter", "prompt"):
        info.update(r=s.r, alpha=s.alpha, targets=s.targets, dropout=s.dropout)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info.update(trainable=trainable, total=sum(p.numel() for p in model.parameters()),
                can_merge=method not in ("adapter", "prompt"))
    return model, optimizer, info


@torch.no_grad()
def forward_latency(model: nn.Module, input_ids: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median seconds of one forward pass model(input_ids) (synchronizing on CUDA)."""
    import time

    cuda = input_ids.is_cuda
    times = []
    for i in range(warmup + repeats):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        model(input_ids)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]
