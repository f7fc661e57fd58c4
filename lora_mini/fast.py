"""The fast path for LoRALinear: the same maths as `lora_forward`, fewer kernels and bytes.

The straightforward layer computes  y = W x + b + s · B (A x)  (s = α/r) as separate ops:
cast A and B, two thin GEMMs, a scale, an add, and autograd saves h = A x on top of x. Its
backward runs ~8 more kernels per layer, and each thin GEMM or add reads or writes a whole
(tokens × features) activation. For a small model (d = 576) those passes cost about as much as
the weight-gradient GEMM that LoRA saves, so naive LoRA ends up slower than full fine-tuning.

Here one autograd Function does the whole layer:

    forward    W' = W + B·(s·A)           tiny (out × r × in) GEMM, one rounding to x's dtype
               y  = x W'ᵀ + b             the base GEMM, unchanged in cost
               hs = x (s·A)ᵀ              (N × r), saved; x is saved too (full FT saves it as well)
    backward   gx = g W'                  grad_x = g W + s (g B) A in the base GEMM's cost
               s·gB = g (s·B)              (N × r)
               grad_A = (s·gB)ᵀ x          (r × in)    sums over N tokens: split into chunks
               grad_B = gᵀ hs              (out × r)   for large N (tn_matmul); no grad for W

grad_x is one GEMM of its own, not the first columns of g [W' | s·B]: a strided view like that,
passed down a bf16 backward, made a later full fine-tuning run under autocast in the same process
go NaN on an H200 (torch 2.11; figures/graph_nan/bisect6.py reproduces it without lora_mini).

W' is merged on the fly from the frozen W and the float32 masters A, B: the same maths as
W x + s·B(A x), rounded once instead of at each step. Nothing of size (N × out) is saved
or added besides what the base layer needs.

Settings (no module globals, no environment variables): `FastSettings(enabled, split_rows)`
lives in a context variable. `with fast_path(False): ...` uses the straightforward
`lora_forward` inside the block (e.g. to compare them); `with fast_path(split_rows=0): ...`
turns split-K off. One layer can override both: `layer.fast = False`, `layer.split_rows = 16`
(None follows fast_path). Under torch.compile the setting is read when the model is traced:
a compiled model keeps the path it was compiled with (torch._dynamo.reset() to re-trace).
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

try:  # GPT-2's transposed linear layer (see layers.py)
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    Conv1D = None


@dataclass(frozen=True)
class FastSettings:
    """enabled: use the fused Function where it computes the same thing.

    split_rows: grad_A = (s·gB)ᵀ x and grad_B = gᵀ hs are reductions over all N tokens with a
    tiny (r × in, out × r) result. One GEMM gives the GPU only a few output tiles, each looping
    over N rows, so for large N the rows are split into chunks of about split_rows, multiplied
    in one batched GEMM and the partial products added in float32 ("split-K"). 0 turns splitting
    off; CPUs never split by default (their BLAS threads already divide the work).
    """
    enabled: bool = True
    split_rows: int = 2048
    no_grad: bool = False          # also without grad mode (a checkpointed forward that is recomputed later)

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            raise TypeError(f"fast_path: enabled must be True or False, got {self.enabled!r}")
        if isinstance(self.split_rows, bool) or not isinstance(self.split_rows, int) or self.split_rows < 0:
            raise ValueError(f"fast_path: split_rows must be an integer >= 0 (0: no split), got {self.split_rows!r}")


_SETTINGS: contextvars.ContextVar[FastSettings] = contextvars.ContextVar("lora_mini_fast", default=FastSettings())


def settings() -> FastSettings:
    """The fast-path settings in effect here (see fast_path)."""
    return _SETTINGS.get()


@torch.compiler.assume_constant_result
def _enabled_now() -> bool:
    return _SETTINGS.get().enabled


@torch.compiler.assume_constant_result
def _split_rows_now() -> int:
    return _SETTINGS.get().split_rows


@torch.compiler.assume_constant_result
def _no_grad_now() -> bool:
    return _SETTINGS.get().no_grad


@contextlib.contextmanager
def fast_path(enabled: bool | None = None, split_rows: int | None = None, no_grad: bool | None = None):
    """Switch the fast path (and split-K) inside a block; None leaves a setting as it is.

        with fast_path(False): ref = model(x)          # the straightforward path
        with fast_path(split_rows=0): loss.backward()  # no split-K
        with torch.no_grad(), fast_path(no_grad=True): y = model(x)   # the training kernels, no graph
    """
    now = _SETTINGS.get()
    new = replace(now, **{k: v for k, v in (("enabled", enabled), ("split_rows", split_rows), ("no_grad", no_grad))
                          if v is not None})
    token = _SETTINGS.set(new)
    try:
        yield new
    finally:
        _SETTINGS.reset(token)


def tn_matmul(a: torch.Tensor, b: torch.Tensor, split_rows: int | None = None) -> torch.Tensor:
    """aᵀ b in float32 for a: N × m, b: N × n (a sum over N rows; m or n is small).

    split_rows None: fast_path's split_rows, on a GPU only; a number: that, on any device.
    With N ≥ 2·split_rows: S = N // split_rows chunks in one bmm, partial sums added in fp32.
    """
    if split_rows is None:
        rows = _split_rows_now() if a.device.type == "cuda" else 0
    else:
        rows = split_rows
    N = a.shape[0]
    S = N // rows if rows > 0 else 1
    if S < 2:
        return (a.t() @ b).float()
    k = N // S
    head = torch.bmm(a[:S * k].view(S, k, a.shape[1]).transpose(1, 2),
                     b[:S * k].view(S, k, b.shape[1])).sum(0, dtype=torch.float32)   # m × n
    if S * k < N:                                                                    # leftover rows
        head = head + (a[S * k:].t() @ b[S * k:]).float()
    return head


class LoRALinearFunction(torch.autograd.Function):
    """y = x Wᵀ + b + s · (x Aᵀ) Bᵀ with W (out × in) frozen; grads for x, A (r × in), B (out × r)."""

    @staticmethod
    def forward(ctx, x, W, bias, A, B, scaling: float, options: tuple = (None, True)):
        split_rows, save = options                 # split-K rows (None: fast_path's); save for backward?
        dt = x.dtype
        sA = (A * scaling).to(dt)                  # r × in: s folded into A (exact for s = 2^k)
        B_ = B.to(dt)                              # out × r
        W_eff = torch.addmm(W, B_, sA)             # out × in: W + s·B·A
        y = F.linear(x, W_eff, bias)               # (..., out): the base GEMM's cost
        if not save:                               # no grad mode (fast_path(no_grad=True)): nothing for backward
            return y
        hs = F.linear(x, sA)                       # (..., r)
        ctx.save_for_backward(x, W, sA, B_, hs)
        ctx.scaling = scaling
        ctx.split_rows = split_rows                # None: fast_path's setting (GPUs only)
        ctx.a_dtype, ctx.b_dtype = A.dtype, B.dtype
        return y

    @staticmethod
    def backward(ctx, g):
        x, W, sA, B_, hs = ctx.saved_tensors
        need = ctx.needs_input_grad               # (x, W, bias, A, B, scaling[, split_rows])
        grad_x, grad_A, grad_B = lora_grads(g, (x, W, sA, B_, hs), ctx.scaling, (need[0], need[3], need[4]),
                                            ctx.split_rows)
        grad_A = None if grad_A is None else grad_A.to(ctx.a_dtype)
        grad_B = None if grad_B is None else grad_B.to(ctx.b_dtype)
        return grad_x, None, None, grad_A, grad_B, None, None


def lora_grads(g, saved: tuple, s: float, need=(True, True, True), split_rows: int | None = None):
    """(grad_x, grad_A, grad_B) of y = x W'ᵀ + b, W' = W + B·sA, for the output gradient g (None where
    not needed; grad_A, grad_B in float32). sA = s·A and B_ in x's dtype, hs = x sAᵀ (..., r).
    Shared by LoRALinearFunction and the low-memory mode's recomputation (lowmem.py).
    saved = (x, W, sA, B_, hs)."""
    x, W, sA, B_, hs = saved
    need_x, need_A, need_B = need
    out, d_in = W.shape
    g2 = g.reshape(-1, out)                        # N × out
    x2 = x.reshape(-1, d_in)                       # N × in
    grad_x = grad_A = grad_B = None
    if need_x:
        W_eff = torch.addmm(W, B_, sA)                          # recomputed, bit-for-bit as forward
        grad_x = (g2 @ W_eff).view(x.shape)                     # g W' = g W + s (g B) A, contiguous
    if need_A:
        sgB = g2 @ (B_ * s)                                     # N × r
        grad_A = tn_matmul(sgB, x2, split_rows)                 # r × in
    if need_B:
        grad_B = tn_matmul(g2, hs.reshape(-1, hs.shape[-1]), split_rows)   # out × r
    return grad_x, grad_A, grad_B


def can_use(layer: nn.Module, x: torch.Tensor) -> bool:
    """True when the fast path computes exactly what layer.base(x) + layer.lora_forward(x) does.

    The caller (LoRALinear.forward) also checks that lora_forward is not overridden by a variant.
    Falls back (False) when: switched off (layer.fast, else fast_path); dropout is active (p > 0 in training); the base
    layer is trainable or has hooks, or is a subclass with its own forward; dtypes differ or
    autocast is on; no gradient is wanted (inference: rebuilding W' on every call would cost
    a whole out × in pass per generated token, more than the two thin GEMMs it replaces).
    """
    own = getattr(layer, "fast", None)
    if not (own if own is not None else _enabled_now()):
        return False
    if not (layer.lora_A.requires_grad or layer.lora_B.requires_grad):
        return False
    if not torch.is_grad_enabled() and not _no_grad_now():
        return False
    base = layer.base
    if layer.dropout_p > 0 and layer.training:
        return False
    w = base.weight
    if w.requires_grad or (base.bias is not None and base.bias.requires_grad):
        return False
    if base._forward_hooks or base._forward_pre_hooks:
        return False
    plain = Conv1D.forward if layer.fan_in_fan_out else nn.Linear.forward
    if type(base).forward is not plain:             # a subclass with its own forward (quantized, ...)
        return False
    if x.dtype != w.dtype or not x.is_floating_point() or x.shape[-1] != layer.in_features:
        return False
    if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
        return False                                # (autocast has no "meta" device to ask about)
    return True


def lora_linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The fast forward of a LoRALinear (nn.Linear or GPT-2 Conv1D base).  x: (..., in) -> (..., out)."""
    w = layer.base.weight
    W = w.t() if layer.fan_in_fan_out else w        # out × in (Conv1D stores in × out)
    rows = getattr(layer, "split_rows", None)                  # None: fast_path's setting
    return LoRALinearFunction.apply(x, W, layer.base.bias, layer.lora_A, layer.lora_B, layer.scaling,
                                    (rows, torch.is_grad_enabled()))
