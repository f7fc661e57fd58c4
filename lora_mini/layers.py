"""The LoRA layer (Hu et al., 2021) and the one contract every adapter layer honours.

A frozen linear map W (out × in) gets a trainable low-rank update ΔW = B·A:

    y = W x + b + (α / r) · B (A (dropout(x)))        A: r × in,  B: out × r,  r ≪ min(in, out)

A starts kaiming-uniform and B starts at zero, so a fresh layer computes exactly W x + b.
With rsLoRA (Kalajdzievski, 2023) the scale is α / √r instead of α / r.

`base` can be an `nn.Linear` (weight: out × in) or transformers' GPT-2 `Conv1D`, which stores
its weight transposed (in × out) and computes x @ W + b; A and B have the same shapes for both.
A and B are kept in float32 ("master weights") and cast to the activation dtype in forward.
The forward always goes through `base(x)`, so a base with its own forward (quantized, wrapped)
is used as it is.

The layer contract (LoRALinear, DoRALinear; rsLoRA, PiSSA init and a quantized base are
settings or states of these two; io and merge use nothing else):

    delta_weight()        ΔW shaped like base.weight, float32 (float64 for a float64 W); pure
    merge() / unmerge()   W ← W + ΔW and back; unmerge restores W bit for bit (merge keeps a copy)
    adapter_tensors()     {name: float32 tensor} to save, relative to the ORIGINAL W
    adapter_config()      {"kind", "r", "alpha", "dropout", "use_rslora"[, "converted_from"]}
    adapter_shapes(base, r)   (class method) the shapes those tensors have for a base layer
    from_adapter(base, config) (class method) a new layer of that kind on `base`
    load_adapter_tensors(tensors)  copy saved tensors in (switching adapters)

LAYER_KINDS maps a config's "kind" to its class.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fast

try:  # GPT-2's transposed linear layer; optional so that lora_mini works without transformers
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    class Conv1D(nn.Module):  # type: ignore[no-redef]
        pass

LINEAR_TYPES = (nn.Linear, Conv1D)


def check_hparams(r, alpha, dropout) -> None:
    """Raise ValueError naming the bad hyper-parameter and the fix."""
    if isinstance(r, bool) or not isinstance(r, Integral) or r < 1:
        raise ValueError(f"LoRA rank r must be a positive integer (e.g. r=8), got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not math.isfinite(alpha) or not alpha > 0:
        raise ValueError(f"LoRA alpha must be a finite number > 0 (e.g. alpha=2*r), got {alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, Real) or not 0 <= dropout < 1:
        raise ValueError(f"LoRA dropout must be in [0, 1) (0 turns it off), got {dropout!r}")


def lora_scaling(r: int, alpha: float, use_rslora: bool = False) -> float:
    """α / r, or α / √r with rsLoRA."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def features(base: nn.Module) -> tuple[int, int]:
    """(in, out) of a Linear (W: out × in) or a Conv1D (W stored in × out)."""
    w = base.weight
    return tuple(w.shape) if isinstance(base, Conv1D) else (w.shape[1], w.shape[0])


class LoRALinear(nn.Module):
    """y = base(x) + scaling · B(A(dropout(x))), with base frozen.

    base: nn.Linear (W: out × in) or GPT-2 Conv1D (W stored as in × out).
    lora_A: r × in (kaiming-uniform), lora_B: out × r (zeros), scaling = α/r (α/√r with rsLoRA).
    The new layer takes base's train/eval mode (so dropout is off in an eval-mode model).
    `fast` / `split_rows`: None follows lora_mini.fast.fast_path(); a value overrides it here.
    """
    kind = "lora"                              # adapter_config()["kind"]
    title = "plain LoRA"                       # for messages
    tensor_names = ("lora_A", "lora_B")        # what adapter_tensors() returns

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0,
                 use_rslora: bool = False):
        super().__init__()
        if not isinstance(base, LINEAR_TYPES):
            raise TypeError(f"LoRALinear wraps nn.Linear or GPT-2 Conv1D, got {type(base).__name__}")
        check_hparams(r, alpha, dropout)
        self.base = base
        self.fan_in_fan_out = isinstance(base, Conv1D)   # weight stored as (in, out)
        self.in_features, self.out_features = features(base)
        self.r, self.alpha, self.use_rslora = int(r), float(alpha), bool(use_rslora)
        self.scaling = lora_scaling(self.r, self.alpha, self.use_rslora)
        self.dropout_p = float(dropout)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        device = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(self.r, self.in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, self.r, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # same init as nn.Linear and PEFT
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.merged = False     # True while ΔW is added into base's weight
        self.disabled = False   # True inside disable_lora(): forward is base(x) alone
        self.fast: bool | None = None        # None: follow fast.fast_path()
        self.split_rows: int | None = None   # None: follow fast.fast_path() (GPUs only)
        self._unmerged_weight = None         # W as it was before merge() (merge keeps a copy)
        self.train(base.training)

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight W (as stored by base)."""
        return self.base.weight

    # ------------------------------------------------------------------ maths
    def _dtype(self) -> torch.dtype:
        """float32, or float64 when W or A is float64: the precision ΔW is formed in."""
        return torch.promote_types(torch.float32, torch.promote_types(self.lora_A.dtype, self.base.weight.dtype))

    def _lora_delta_oi(self) -> torch.Tensor:
        """scaling · B·A, out × in, in _dtype()."""
        dt = self._dtype()
        return (self.lora_B.to(dt) @ self.lora_A.to(dt)) * self.scaling

    def _original_weight_oi(self) -> torch.Tensor:
        """W without ΔW, out × in: base.weight, or the copy merge() kept while merged."""
        w = self.base.weight if not self.merged else self._unmerged_weight
        if w is None:
            raise RuntimeError("this layer was merged without keeping W (merge_and_unload); "
                               "its original weight is gone")
        return w.T if self.fan_in_fan_out else w

    def _as_stored(self, delta_oi: torch.Tensor) -> torch.Tensor:
        return delta_oi.T if self.fan_in_fan_out else delta_oi

    def delta_weight(self) -> torch.Tensor:
        """ΔW = scaling · B·A in float32 (float64 for a float64 model), shaped like base.weight. Pure."""
        return self._as_stored(self._lora_delta_oi())

    def lora_branch(self, x: torch.Tensor) -> torch.Tensor:
        """scaling · B(A x) in x's dtype, no dropout.  x: (..., in) -> (..., out)."""
        return F.linear(F.linear(x, self.lora_A.to(x.dtype)), self.lora_B.to(x.dtype)) * self.scaling

    def lora_forward(self, x: torch.Tensor) -> torch.Tensor:
        """scaling · B(A(dropout(x))), computed in x's dtype.  x: (..., in) -> (..., out)."""
        return self.lora_branch(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or self.disabled:
            return self.base(x)
        # same maths in one autograd Function (see fast.py), unless a subclass changed lora_forward
        if type(self).lora_forward is LoRALinear.lora_forward and fast.can_use(self, x):
            return fast.lora_linear(self, x)
        return self.base(x) + self.lora_forward(x)

    # ------------------------------------------------------------------ merge / unmerge
    @torch.no_grad()
    def merge(self, keep_copy: bool = True) -> None:
        """W ← W + ΔW (ΔW formed in float32/float64, one rounding to W's dtype).

        keep_copy=True keeps W as it was, so that unmerge() restores it bit for bit (memory: one W
        while merged); merge_and_unload passes False (it never unmerges).
        """
        if self.merged:
            raise ValueError("this LoRA layer is already merged; merging twice would add ΔW twice. "
                             "Call unmerge() first.")
        w = self.base.weight
        delta = self.delta_weight()
        self._unmerged_weight = w.detach().clone() if keep_copy else None
        w.copy_((w.to(delta.dtype) + delta).to(w.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Put W back exactly as it was before merge() (even if A, B changed in between)."""
        if not self.merged:
            raise ValueError("this LoRA layer is not merged; there is nothing to subtract. Call merge() first.")
        if self._unmerged_weight is None:
            raise RuntimeError("this layer was merged without keeping W (merge_and_unload); it cannot unmerge")
        self.base.weight.copy_(self._unmerged_weight)
        self._unmerged_weight = None
        self.merged = False

    # ------------------------------------------------------------------ what io saves and loads
    def init_offset(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(A₀ r × in, B₀ out × r) when W was replaced by W − s·B₀·A₀ at init (PiSSA), else None."""
        a0 = getattr(self, "pissa_A0", None)
        return None if a0 is None else (a0, self.pissa_B0)

    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        """{"lora_A", "lora_B"} as float32, relative to the original W.

        With an init offset (PiSSA): A' = [A; A₀] (2r × in), B' = [B, −B₀] (out × 2r), since
        ΔW relative to W is s·(B·A − B₀·A₀) = s·B'·A'.
        """
        a, b = self.lora_A.detach().float(), self.lora_B.detach().float()
        offset = self.init_offset()
        if offset is not None:
            a = torch.cat([a, offset[0].float()], dim=0)            # 2r × in
            b = torch.cat([b, -offset[1].float()], dim=1)           # out × 2r
        return {"lora_A": a, "lora_B": b}

    def adapter_config(self) -> dict:
        """What builds the same layer: kind, r, alpha, dropout, use_rslora (a PiSSA layer: its 2r conversion)."""
        r, alpha, extra = self.r, self.alpha, {}
        if self.init_offset() is not None:   # rank doubles; α' keeps s = α/r (α/√r) unchanged
            r, alpha = 2 * r, alpha * (math.sqrt(2) if self.use_rslora else 2)
            extra = {"converted_from": "pissa"}
        return {"kind": self.kind, "r": r, "alpha": alpha, "dropout": self.dropout_p,
                "use_rslora": self.use_rslora, **extra}

    @classmethod
    def adapter_shapes(cls, base: nn.Module, r: int) -> dict[str, tuple]:
        """Shapes of the saved tensors of this kind on `base` at rank r."""
        d_in, d_out = features(base)
        return {"lora_A": (r, d_in), "lora_B": (d_out, r)}

    @classmethod
    def from_adapter(cls, base: nn.Module, config: dict) -> "LoRALinear":
        """A new layer on `base` from adapter_config()'s keys (r, alpha, dropout, use_rslora)."""
        return cls(base, config["r"], config["alpha"], config.get("dropout", 0.0),
                   use_rslora=bool(config.get("use_rslora", False)))

    def check_adapter_tensors(self, tensors: dict, where: str = "") -> None:
        """Raise ValueError unless `tensors` fit this layer exactly (names, shapes, a plain layer)."""
        want = type(self).adapter_shapes(self.base, self.r)
        got = {k: tuple(t.shape) for k, t in tensors.items()}
        if got != want:
            raise ValueError(f"shape mismatch at {where!r}: the file has {got}, the layer needs {want} "
                             f"(r={self.r}); wrong base model or rank")
        if self.init_offset() is not None:
            raise ValueError(f"{where!r} is a PiSSA layer (its W is W_res) but adapter files are relative "
                             "to the original W; load into a fresh base model")

    @torch.no_grad()
    def load_adapter_tensors(self, tensors: dict) -> None:
        """Copy saved tensors (names as adapter_tensors()) into this layer, after checking them."""
        self.check_adapter_tensors(tensors)
        for name, t in tensors.items():
            getattr(self, name).copy_(t)

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, r={self.r}, alpha={self.alpha:g}, "
                f"scaling={self.scaling:g}, dropout={self.dropout_p:g}, merged={self.merged}")


class DoRALinear(LoRALinear):
    """Weight-decomposed LoRA (Liu et al., 2024): W' = m ⊙ V / ‖V‖_row with V = W + s·B·A.

    lora_magnitude m: (out,), starts at ‖W‖_row so that W' = W at init (B = 0).
    As in the paper (and PEFT), ‖V‖ is treated as a constant in backward (detached), which
    saves memory; the forward value is exact. Forward goes through base(x), as PEFT does:

        y = base(x) + (m/‖V‖ − 1) ⊙ (W·x') + (m/‖V‖) ⊙ s·B·A·x',   x' = dropout(x),  W·x' = base(x') − b

    (without active dropout x' = x and W·x = base(x) − b: no second base call). ‖V‖ is computed
    from base.weight, which must be the weight base's forward uses. Saved as "lora_magnitude"
    (PEFT: "lora_magnitude_vector") next to A and B.
    """
    kind = "dora"
    title = "DoRA"
    tensor_names = ("lora_A", "lora_B", "lora_magnitude")

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0,
                 use_rslora: bool = False):
        super().__init__(base, r, alpha, dropout, use_rslora)
        self.lora_magnitude = nn.Parameter(self._original_weight_oi().to(self._dtype()).norm(dim=1))   # (out,)

    def _row_norm(self) -> torch.Tensor:
        """‖W + s·B·A‖ per output row, (out,), treated as a constant (no graph)."""
        with torch.no_grad():
            w = self._original_weight_oi().to(self._dtype())
            return (w + self._lora_delta_oi()).norm(dim=1)

    def delta_weight(self) -> torch.Tensor:
        """W' − W, shaped like base.weight (from the original W also while merged). Pure."""
        w = self._original_weight_oi().to(self._dtype())
        v = w + self._lora_delta_oi()                                                 # out × in
        delta = (self.lora_magnitude.to(w.dtype) / v.norm(dim=1))[:, None] * v - w    # out × in
        return self._as_stored(delta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or self.disabled:
            return self.base(x)
        scale = (self.lora_magnitude / self._row_norm()).to(x.dtype)                 # (out,)
        bias = getattr(self.base, "bias", None)
        bias = None if bias is None else bias.to(x.dtype)
        y = self.base(x)                                                              # (..., out)
        dropping = self.training and self.dropout_p > 0
        xd = self.dropout(x) if dropping else x
        wx = self.base(xd) if dropping else y                                         # W x' + b
        wx = wx if bias is None else wx - bias
        return y + (scale - 1) * wx + scale * self.lora_branch(xd)

    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        """{"lora_A", "lora_B", "lora_magnitude"} (float32)."""
        if self.init_offset() is not None:
            raise ValueError("PiSSA + DoRA is not linear in B·A: it cannot be saved relative to the original W; "
                             "only plain LoRA layers convert")
        return {**super().adapter_tensors(), "lora_magnitude": self.lora_magnitude.detach().float()}

    @classmethod
    def adapter_shapes(cls, base: nn.Module, r: int) -> dict[str, tuple]:
        return {**super().adapter_shapes(base, r), "lora_magnitude": (features(base)[1],)}

    def extra_repr(self) -> str:
        return super().extra_repr() + ", dora=True"


LAYER_KINDS = {"lora": LoRALinear, "dora": DoRALinear}


def layer_class(kind: str) -> type:
    """The layer class of an adapter config's "kind" ("lora" or "dora")."""
    if kind not in LAYER_KINDS:
        raise ValueError(f"unknown adapter layer kind {kind!r}; known: {sorted(LAYER_KINDS)}")
    return LAYER_KINDS[kind]
