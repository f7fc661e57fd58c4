"""Self-checks for chapter 2 (low-rank updates)."""
import math

import torch

from .. import lowrank


def check_exercise_2_1(lora_forward):
    """lora_forward(x, W0, B, A, alpha) -> x W0ᵀ + (α/r) x Aᵀ Bᵀ   (x: n × k, W0: d × k, B: d × r, A: r × k)."""
    assert callable(lora_forward), "pass your function lora_forward(x, W0, B, A, alpha), not its result"
    g = torch.Generator().manual_seed(0)
    n, d, k, r, alpha = 5, 7, 6, 3, 12.0
    x, W0 = torch.randn(n, k, generator=g), torch.randn(d, k, generator=g)
    A, B = torch.randn(r, k, generator=g), torch.randn(d, r, generator=g)
    y0 = torch.as_tensor(lora_forward(x, W0, torch.zeros(d, r), A, alpha))
    assert y0.shape == (n, d), f"output shape {tuple(y0.shape)}, expected (n, d) = {(n, d)}"
    assert torch.allclose(y0, x @ W0.T, atol=1e-5), "with B = 0 the output must equal the base model x W0ᵀ"
    y = torch.as_tensor(lora_forward(x, W0, B, A, alpha))
    want = x @ W0.T + (alpha / r) * x @ A.T @ B.T
    if torch.allclose(y, x @ W0.T + alpha * x @ A.T @ B.T, atol=1e-4):
        raise AssertionError("you scaled by α; LoRA scales by α/r (r = A.shape[0])")
    assert torch.allclose(y, want, atol=1e-4), "expected x W0ᵀ + (α/r) · (x Aᵀ) Bᵀ"
    print("✓ lora_forward equals the base model at B = 0 and adds (α/r)·B·A otherwise")


def check_exercise_2_2(loss_floor):
    """loss_floor(delta_w, r) -> lowest mean-squared loss a rank-r update can reach, for whitened inputs."""
    assert callable(loss_floor), "pass your function loss_floor(delta_w, r), not its result"
    g = torch.Generator().manual_seed(1)
    for d, k, r in [(8, 6, 1), (6, 8, 3), (10, 10, 10)]:
        dW = torch.randn(d, k, generator=g, dtype=torch.float64)
        want = lowrank.tail_error(lowrank.singular_values(dW), r) ** 2 / d
        got = float(loss_floor(dW, r))
        if abs(got - want * d) < 1e-6 * max(1.0, want * d) and want > 0:
            raise AssertionError("that is ‖ΔW* − ΔW*_r‖_F²; the loss is a mean over the d outputs: divide by d")
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9), (
            f"loss_floor(ΔW*, {r}) = {got:.6g}, expected {want:.6g} = (Σ_(i>r) σ_i²) / d by Eckart–Young")
    print("✓ loss_floor = (sum of the dropped σ_i²) / d_out")


def check_exercise_2_3(answer):
    """At step 0 (B = 0, A random), which of A, B receives a non-zero gradient? Answer "A", "B" or "both"."""
    a = str(answer).strip().lower()
    assert a in {"a", "b", "both", "neither"}, 'answer "A", "B", "both" or "neither"'
    assert a == "b", ("not quite: ∂L/∂A = (α/r)·Bᵀ·(∂L/∂ΔW) is zero while B = 0, and "
                      "∂L/∂B = (α/r)·(∂L/∂ΔW)·Aᵀ is not, because A is random. B moves first; then A follows.")
    print("✓ only B gets a gradient at step 0; A starts learning once B ≠ 0")


def check_exercise_2_4(answer):
    """With plain SGD, which scale s makes ΔW's first update independent of r: "1", "alpha/r" or "alpha/sqrt(r)"?"""
    a = str(answer).replace(" ", "").replace("α", "alpha").replace("√", "sqrt").lower()
    a = a.replace("sqrt(r)", "sqrtr").replace("sqrtr", "sqrt(r)")
    assert a in {"1", "alpha/r", "alpha/sqrt(r)"}, 'answer "1", "alpha/r" or "alpha/sqrt(r)"'
    assert a == "alpha/sqrt(r)", (
        "not quite: after one SGD step B₁ = −lr·s·G·Aᵀ, so ΔW₁ = s·B₁·A = −lr·s²·G·AᵀA, and AᵀA ≈ (r/3k)·I "
        "grows ∝ r. The update is ∝ lr·s²·r: which s cancels r?")
    print("✓ α/√r (rsLoRA's scale): lr·(α²/r)·r is independent of r under SGD; with Adam, α/r does the job")
