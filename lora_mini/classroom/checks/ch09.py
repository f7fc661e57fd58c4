"""Checks for chapter 9 (appendix: making LoRA fast)."""
import math

import torch

from . import call, close, exercise, integer, no_autograd, number, rand, same

SHAPES = [(576, 576, 16), (576, 1536, 16), (4096, 4096, 16), (4096, 14336, 64), (1536, 576, 1), (768, 3072, 8)]


@exercise("9.1")
def flop_ratio_test(lora_flop_ratio):
    """lora_flop_ratio(d_in, d_out, r) -> LoRA's matmul FLOPs per token over full FT's, one layer, fwd + bwd."""
    for d_in, d_out, r in SHAPES:
        dense, thin = 2 * d_in * d_out, 2 * r * d_in + 2 * r * d_out      # one product with W; one with A and one with B
        full, lora = 3 * dense, 2 * dense + 3 * thin                      # fwd, grad_x, grad_W | no grad_W; A, B: fwd + 2 bwd
        got = number(call(lora_flop_ratio, d_in, d_out, r), "lora_flop_ratio's result")
        if not math.isclose(got, lora / full, rel_tol=1e-6):           # 1e-6: a float32 answer is fine
            assert not math.isclose(got, 2 / 3, rel_tol=1e-6), "2/3 leaves out the cost of A and B"
            assert not math.isclose(got, (lora + 2 * d_in * d_out) / full, rel_tol=1e-9), \
                "LoRA has no weight gradient for the frozen W: drop that GEMM"
            assert not math.isclose(got, (2 * 2 * d_in * d_out + 2 * r * (d_in + d_out)) / full, rel_tol=1e-9), \
                "A and B also run in the backward pass: count their forward and their two backward products"
            assert False, (f"d_in={d_in}, d_out={d_out}, r={r}: your ratio {got:.5f} is off; count per token the "
                           "products of full FT (forward, grad_x, grad_W) and of LoRA (forward, grad_x, and A, B "
                           "forward and backward), 2 FLOPs per multiply-add")
    return "the FLOP ratio is right for six layer shapes and ranks"


@exercise("9.2")
def fp32_copy_test(fp32_copy_bytes):
    """fp32_copy_bytes(n_tokens, in_features) -> bytes of the float32 copies of x, summed over the layers."""
    cases = [(16 * 1024, [576] * 6 + [1536]), (256, [576, 1536]), (4096, [4096] * 6 + [14336]), (1000, [7])]
    for n, ins in cases:
        want = 4 * n * sum(ins)
        got = integer(call(fp32_copy_bytes, n, list(ins)), "fp32_copy_bytes's result")
        if got != want:
            assert got != 2 * n * sum(ins), "that is the size of the bf16 x itself; the copy is float32, 4 bytes an element"
            assert got != 4 * n * max(ins) * len(ins) and got != 4 * n * ins[0] * len(ins), \
                "each layer's copy has its own width: sum over the layers' in_features"
            assert False, (f"n_tokens={n}, in_features={ins}: your answer {got:,} bytes is off; each adapted layer "
                           "keeps a float32 copy of its input, n_tokens × in_features elements")
    return "the float32 copies are counted right for four sets of layers"


def _reference(x, g, A, B, s, W):
    """Autograd's gradients (run by the check, in float64)."""
    x, A, B = (t.detach().double().requires_grad_(True) for t in (x, A, B))
    y = x @ W.double().T + s * (x @ A.T) @ B.T
    y.backward(g.double())
    return x.grad, A.grad, B.grad


@exercise("9.3")
def lora_grads_test(lora_grads):
    """lora_grads(x, g, A, B, s, W) -> (grad_x, grad_A, grad_B) of y = x Wᵀ + s (x Aᵀ) Bᵀ, by hand."""
    for seed, (n, d_in, d_out, r, s, dtype) in enumerate([(7, 5, 6, 3, 2.0, torch.float64), (9, 8, 8, 2, 0.5, torch.float64),
                                                          (32, 24, 40, 4, 4.0, torch.float32), (5, 12, 3, 1, 16, torch.float32)]):
        W, x, A, B, g = (rand(*shape, seed=10 * seed + k, dtype=dtype)
                         for k, shape in enumerate([(d_out, d_in), (n, d_in), (r, d_in), (d_out, r), (n, d_out)]))
        wants = _reference(x, g, A, B, s, W)
        with no_autograd():
            got = call(lora_grads, x, g, A, B, s, W)
        assert isinstance(got, (tuple, list)) and len(got) == 3, "return three tensors: (grad_x, grad_A, grad_B)"
        fixed = [_reference(x, g, A, B, k, W) for k in (1.0, 2.0) if k != s]
        assert not any(all(torch.is_tensor(a) and same(a.double(), f, tol=1e-4) for a, f in zip(got, ref)) for ref in fixed), \
            "use the argument s: your gradients are those of a fixed scale"
        for name, a, b in zip(("grad_x", "grad_A", "grad_B"), got, wants):
            assert torch.is_tensor(a) and tuple(a.shape) == tuple(b.shape), \
                f"{name} should be a tensor of shape {tuple(b.shape)}, got {tuple(getattr(a, 'shape', ()))}"
            if name != "grad_x" and s != 1:
                assert not (torch.allclose(a.double(), b / s, rtol=1e-3, atol=1e-5)), f"{name}: multiply by the scale s"
            if name == "grad_x":
                assert not torch.allclose(a.double(), b - g.double() @ W.double(), rtol=1e-3, atol=1e-5), \
                    "grad_x also flows through the frozen W: add g W"
            close(a.double(), b.to(torch.float64), f"{name} (n={n}, in={d_in}, out={d_out}, r={r}, s={s:g}, {str(dtype)[6:]})",
                  tol=1e-10 if dtype == torch.float64 else 2e-5)
    return "grad_x, grad_A and grad_B match autograd for four shapes, scales and dtypes"
