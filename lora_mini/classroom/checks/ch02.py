"""Checks for chapter 2 (low-rank updates)."""
import math

import numpy as np
import torch

from lora_mini import lowrank

from . import call, close, exercise, no_autograd, number, rand, same

# (n, d, k, r, alpha, dtype): α/r is 4, 0.75, 2.5, 1 and 0.875; one case is square (d = k) so that a
# transposed product still runs and must be caught by its values.
FORWARD_CASES = [(4, 6, 6, 4, 3.0, torch.float64), (5, 7, 6, 3, 12.0, torch.float32),
                 (3, 5, 8, 2, 5, torch.float32), (2, 4, 3, 1, 1.0, torch.float64),
                 (6, 9, 9, 8, np.float64(7.0), torch.float32)]


def _mistake(got, x, W0, B, A, alpha, r):
    """A hint for the usual wrong forms of the LoRA forward pass, or None."""
    base, path = x @ W0.T, x @ A.T @ B.T
    for s, hint in [(1.0, "the low-rank path has no scale: multiply it by α/r"),
                    (float(alpha), "you scaled by α; LoRA scales by α divided by the rank"),
                    (float(alpha) / math.sqrt(r), "you used α/√r (rsLoRA's variant); plain LoRA uses α/r"),
                    (float(alpha // r), "α // r is integer division (3 // 4 = 0): use true division"),
                    (float(r) / float(alpha), "the scale is upside down: α over r")]:
        if not math.isclose(s, float(alpha) / r) and same(got, base + s * path):
            return hint
    if same(got, base):
        return "your output is the base model's: add the low-rank path through A then B"
    if B.shape[0] == A.shape[1] and same(got, base + (float(alpha) / r) * (x @ B @ A)):
        return "A and B are the wrong way round: the input meets A (r × k) first, then B (d × r)"
    return None


@exercise("2.1")
def lora_forward_test(lora_forward):
    """lora_forward(x, W0, B, A, alpha) -> x W0ᵀ + (α/r) x Aᵀ Bᵀ, r = A.shape[0]."""
    for seed, (n, d, k, r, alpha, dtype) in enumerate(FORWARD_CASES):
        x, W0 = rand(n, k, seed=seed, dtype=dtype), rand(d, k, seed=seed + 10, dtype=dtype)
        A, B = rand(r, k, seed=seed + 20, dtype=dtype), rand(d, r, seed=seed + 30, dtype=dtype)
        y0 = call(lora_forward, x, W0, torch.zeros_like(B), A, alpha)
        close(y0, x @ W0.T, "with B = 0 the output")
        y = call(lora_forward, x, W0, B, A, alpha)
        assert torch.is_tensor(y) and y.dtype == dtype, f"for {dtype} inputs return a {dtype} tensor"
        hint = _mistake(y, x, W0, B, A, alpha, r)
        assert hint is None, f"(n={n}, d={d}, k={k}, r={r}, α={alpha}) {hint}"
        try:
            close(y, x @ W0.T + (float(alpha) / r) * (x @ A.T @ B.T), f"the output at r={r}, α={alpha}")
        except AssertionError as err:
            raise AssertionError(f"{err}: is the scale computed from alpha and r = A.shape[0]?") from None
    return "lora_forward is right for five shapes, α/r ∈ {4, 0.75, 2.5, 1, 0.875}, float32 and float64"


@exercise("2.2")
def loss_floor_test(loss_floor):
    """loss_floor(delta_w, r) -> the lowest ‖ΔW − ΔW*‖²_F / d over rank-r ΔW, ΔW* = delta_w (d × k)."""
    for seed, (d, k, r, dtype) in enumerate([(8, 6, 1, torch.float64), (6, 9, 3, torch.float32),
                                             (10, 10, 10, torch.float64), (12, 5, 2, torch.float32)]):
        dW = rand(d, k, seed=seed, dtype=dtype)
        S = lowrank.singular_values(dW)
        want = lowrank.tail_error(S, r) ** 2 / d
        got = number(call(loss_floor, dW, r), "loss_floor's result")
        tol = 1e-6 if dtype == torch.float64 else 1e-5
        if math.isclose(got, want, rel_tol=tol, abs_tol=tol):
            continue
        sq = S.pow(2)
        for wrong, hint in [(want * d, "the loss is a mean over the d outputs"),
                            (want * d / k, "divide by d (the number of outputs, delta_w.shape[0])"),
                            (math.sqrt(want * d), "the loss is a squared norm"),
                            (float(sq[r - 1:].sum()) / d, "the best rank-r update keeps σ_1 … σ_r: drop the rest")]:
            assert not math.isclose(got, wrong, rel_tol=1e-4), f"(d={d}, k={k}, r={r}) {hint}"
        raise AssertionError(f"loss_floor(ΔW* of shape {d} × {k}, r={r}) = {got:.6g}, which is not the floor; "
                             "what does Eckart–Young say is left after the best rank-r approximation?")
    return "loss_floor is right for four shapes and ranks"


@exercise("2.3")
def lora_grads_test(lora_grads):
    """lora_grads(x, y, W0, A, B, alpha) -> (∂L/∂A, ∂L/∂B) for L = ½‖x W0ᵀ + (α/r) x Aᵀ Bᵀ − y‖²_F, by hand."""
    for seed, (n, d, k, r, alpha, dtype, zero_b) in enumerate([
            (5, 7, 6, 3, 12.0, torch.float64, True), (5, 7, 6, 3, 12.0, torch.float64, False),
            (4, 6, 6, 4, 3.0, torch.float32, False), (8, 3, 5, 2, 5.0, torch.float64, False)]):
        x, y = rand(n, k, seed=seed, dtype=dtype), rand(n, d, seed=seed + 1, dtype=dtype)
        W0, A = rand(d, k, seed=seed + 2, dtype=dtype), rand(r, k, seed=seed + 3, dtype=dtype)
        B = torch.zeros(d, r, dtype=dtype) if zero_b else rand(d, r, seed=seed + 4, dtype=dtype)
        A_, B_ = A.clone().requires_grad_(), B.clone().requires_grad_()
        loss = 0.5 * (x @ W0.T + (alpha / r) * (x @ A_.T @ B_.T) - y).pow(2).sum()
        want_A, want_B = torch.autograd.grad(loss, (A_, B_))
        with no_autograd():
            out = call(lora_grads, x, y, W0, A, B, alpha)
        assert isinstance(out, (tuple, list)) and len(out) == 2, "return two tensors: (grad_A, grad_B)"
        gA, gB = out
        where = f"(r={r}, α={alpha}{', B = 0' if zero_b else ''})"
        for g, want, name, shape in [(gA, want_A, "grad_A", "r × k, like A"), (gB, want_B, "grad_B", "d × r, like B")]:
            assert torch.is_tensor(g) and tuple(g.shape) == tuple(want.shape), f"{name} should be {shape}"
            if not same(g, want) and same(g, want * r / alpha):
                raise AssertionError(f"{where} {name} is missing the factor α/r of the low-rank path")
            close(g, want, f"{where} {name}")
    return "your hand-derived gradients equal autograd's, at B = 0 and after"
