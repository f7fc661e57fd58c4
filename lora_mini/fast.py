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
    backward   [gx | s·gB] = g [W' | s·B] one GEMM gives grad_x = g W + s (g B) A and s·g B
               grad_A = (s·gB)ᵀ x          (r × in)    sums over N tokens: split into chunks
               grad_B = gᵀ hs              (out × r)   for large N (tn_matmul); no grad for W

W' is merged on the fly from the frozen W and the float32 masters A, B: the same maths as
W x + s·B(A x), rounded once instead of at each step. Nothing of size (N × out) is saved
or added besides what the base layer needs. Set `lora_mini.fast.ENABLED = False` (or
LORA_MINI_FAST=0) to use the straightforward `lora_forward` instead, e.g. to compare them.
"""
from __future__ import annotations

import contextlib
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

try:  # GPT-2's transposed linear layer (see layers.py)
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    Conv1D = None

ENABLED = os.environ.get("LORA_MINI_FAST", "1").strip().lower() not in ("0", "false", "no", "off")

# grad_A = (s·gB)ᵀ x and grad_B = gᵀ hs are reductions over all N tokens with a tiny (r × in,
# out × r) result. One GEMM gives the GPU only a few output tiles, each looping over N rows, so
# for large N we split the rows into chunks of about SPLIT_ROWS, multiply the chunks in one
# batched GEMM and add the partial products in float32 ("split-K"). 0 turns splitting off;
# CPUs never split (their BLAS threads already divide the work).
SPLIT_ROWS = int(os.environ.get("LORA_MINI_SPLIT_ROWS", "2048"))


def tn_matmul(a: torch.Tensor, b: torch.Tensor, split_rows: int | None = None) -> torch.Tensor:
    """aᵀ b in float32 for a: N × m, b: N × n (a sum over N rows; m or n is small).

    With N ≥ 2·split_rows on a GPU: S = N // split_rows chunks in one bmm, partial sums added in fp32.
    """
    rows = SPLIT_ROWS if split_rows is None else split_rows
    N = a.shape[0]
    S = N // rows if rows > 0 and (a.device.type == "cuda" or split_rows is not None) else 1
    if S < 2:
        return (a.t() @ b).float()
    k = N // S
    head = torch.bmm(a[:S * k].view(S, k, a.shape[1]).transpose(1, 2),
                     b[:S * k].view(S, k, b.shape[1])).sum(0, dtype=torch.float32)   # m × n
    if S * k < N:                                                                    # leftover rows
        head = head + (a[S * k:].t() @ b[S * k:]).float()
    return head


@contextlib.contextmanager
def fast_path(enabled: bool):
    """Switch the fast path on or off inside a block:  with fast_path(False): ref = model(x)."""
    global ENABLED
    before, ENABLED = ENABLED, bool(enabled)
    try:
        yield
    finally:
        ENABLED = before


class LoRALinearFunction(torch.autograd.Function):
    """y = x Wᵀ + b + s · (x Aᵀ) Bᵀ with W (out × in) frozen; grads for x, A (r × in), B (out × r)."""

    @staticmethod
    def forward(ctx, x, W, bias, A, B, scaling: float):
        dt = x.dtype
        sA = (A * scaling).to(dt)                  # r × in: s folded into A (exact for s = 2^k)
        B_ = B.to(dt)                              # out × r
        W_eff = torch.addmm(W, B_, sA)             # out × in: W + s·B·A
        y = F.linear(x, W_eff, bias)               # (..., out): the base GEMM's cost
        hs = F.linear(x, sA)                       # (..., r)
        ctx.save_for_backward(x, W, sA, B_, hs)
        ctx.scaling = scaling
        ctx.a_dtype, ctx.b_dtype = A.dtype, B.dtype
        return y

    @staticmethod
    def backward(ctx, g):
        x, W, sA, B_, hs = ctx.saved_tensors
        s = ctx.scaling
        need_x, _, _, need_A, need_B, _ = ctx.needs_input_grad
        out, d_in = W.shape
        g2 = g.reshape(-1, out)                    # N × out
        x2 = x.reshape(-1, d_in)                   # N × in
        grad_x = grad_A = grad_B = None
        if need_x:
            W_eff = torch.addmm(W, B_, sA)                      # recomputed, bit-for-bit as forward
            W_g = torch.cat([W_eff, B_ * s], dim=1)             # out × (in + r)
            G = g2 @ W_g                                        # N × (in + r) = [gx | s·gB]
            grad_x = G[:, :d_in].view(x.shape)                  # g W' = g W + s (g B) A
            sgB = G[:, d_in:]                                   # N × r
        elif need_A:
            sgB = g2 @ (B_ * s)                                 # N × r
        if need_A:
            grad_A = tn_matmul(sgB, x2).to(ctx.a_dtype)                          # r × in
        if need_B:
            grad_B = tn_matmul(g2, hs.reshape(-1, hs.shape[-1])).to(ctx.b_dtype)  # out × r
        return grad_x, None, None, grad_A, grad_B, None


def can_use(layer: nn.Module, x: torch.Tensor) -> bool:
    """True when the fast path computes exactly what layer.base(x) + layer.lora_forward(x) does.

    The caller (LoRALinear.forward) also checks that lora_forward is not overridden by a variant.
    Falls back (False) when: switched off; dropout is active (p > 0 in training); the base
    layer is trainable or has hooks, or is a subclass with its own forward; dtypes differ or
    autocast is on; no gradient is wanted (inference: rebuilding W' on every call would cost
    a whole out × in pass per generated token, more than the two thin GEMMs it replaces).
    """
    if not ENABLED:
        return False
    if not torch.is_grad_enabled() or not (layer.lora_A.requires_grad or layer.lora_B.requires_grad):
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
    return LoRALinearFunction.apply(x, W, layer.base.bias, layer.lora_A, layer.lora_B, layer.scaling)
