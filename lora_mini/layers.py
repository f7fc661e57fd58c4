"""The LoRA layer (Hu et al., 2021).

A frozen linear map W (out × in) gets a trainable low-rank update ΔW = B·A:

    y = W x + b + (α / r) · B (A (dropout(x)))        A: r × in,  B: out × r,  r ≪ min(in, out)

A starts kaiming-uniform and B starts at zero, so a fresh layer computes exactly W x + b.
With rsLoRA (Kalajdzievski, 2023) the scale is α / √r instead of α / r.

`base` can be an `nn.Linear` (weight: out × in) or transformers' GPT-2 `Conv1D`, which stores
its weight transposed (in × out) and computes x @ W + b; A and B have the same shapes for both.
A and B are kept in float32 ("master weights") and cast to the activation dtype in forward.
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
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not alpha > 0:
        raise ValueError(f"LoRA alpha must be a number > 0 (e.g. alpha=2*r), got {alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, Real) or not 0 <= dropout < 1:
        raise ValueError(f"LoRA dropout must be in [0, 1) (0 turns it off), got {dropout!r}")


def lora_scaling(r: int, alpha: float, use_rslora: bool = False) -> float:
    """α / r, or α / √r with rsLoRA."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


class LoRALinear(nn.Module):
    """y = base(x) + scaling · B(A(dropout(x))), with base frozen.

    base: nn.Linear (W: out × in) or GPT-2 Conv1D (W stored as in × out).
    lora_A: r × in (kaiming-uniform), lora_B: out × r (zeros), scaling = α/r (α/√r with rsLoRA).
    """

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0,
                 use_rslora: bool = False):
        super().__init__()
        if not isinstance(base, LINEAR_TYPES):
            raise TypeError(f"LoRALinear wraps nn.Linear or GPT-2 Conv1D, got {type(base).__name__}")
        check_hparams(r, alpha, dropout)
        self.base = base
        self.fan_in_fan_out = isinstance(base, Conv1D)   # weight stored as (in, out)
        if self.fan_in_fan_out:
            self.in_features, self.out_features = base.weight.shape
        else:
            self.out_features, self.in_features = base.weight.shape
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
        self.merged = False     # True while scaling·B·A is added into base's weight
        self.disabled = False   # True inside disable_lora(): forward is base(x) alone

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight W (as stored by base)."""
        return self.base.weight

    def delta_weight(self) -> torch.Tensor:
        """scaling · B·A in float32 (float64 for a float64 model), shaped like base.weight (transposed for Conv1D)."""
        dt = torch.promote_types(torch.float32, torch.promote_types(self.lora_A.dtype, self.base.weight.dtype))
        delta = (self.lora_B.to(dt) @ self.lora_A.to(dt)) * self.scaling     # out × in
        return delta.T if self.fan_in_fan_out else delta

    def lora_forward(self, x: torch.Tensor) -> torch.Tensor:
        """scaling · B(A(dropout(x))), computed in x's dtype.  x: (..., in) -> (..., out)."""
        a = self.lora_A.to(x.dtype)
        b = self.lora_B.to(x.dtype)
        return F.linear(F.linear(self.dropout(x), a), b) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or self.disabled:
            return self.base(x)
        # same maths in one autograd Function (see fast.py), unless a subclass changed lora_forward
        if type(self).lora_forward is LoRALinear.lora_forward and fast.can_use(self, x):
            return fast.lora_linear(self, x)
        return self.base(x) + self.lora_forward(x)

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, r={self.r}, alpha={self.alpha:g}, "
                f"scaling={self.scaling:g}, dropout={self.dropout_p:g}, merged={self.merged}")
