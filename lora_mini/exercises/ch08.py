"""Self-checks for chapter 8 (beyond LoRA: adapters, prompts, variants, several adapters)."""
import torch

from ..multi import MultiLoRALinear
from ..variants import DoRALinear, fake_quantize


def _g(seed):
    return torch.Generator().manual_seed(seed)


def check_exercise_8_1(dora_weight):
    """dora_weight(W, A, B, m, scaling) -> W' = m ⊙ (W + s·B·A) / ‖W + s·B·A‖ (norm per output row)."""
    assert callable(dora_weight), "pass your function dora_weight(W, A, B, m, scaling), not its result"
    for seed, (out, inp, r) in enumerate([(5, 7, 2), (8, 3, 1), (6, 6, 4)]):
        layer = DoRALinear(torch.nn.Linear(inp, out, bias=False), r=r, alpha=2 * r)
        with torch.no_grad():
            layer.lora_B.normal_(generator=_g(seed))
            layer.lora_magnitude.mul_(1 + torch.rand(out, generator=_g(seed + 10)))
        want = layer.base.weight + layer.delta_weight()
        got = torch.as_tensor(dora_weight(layer.base.weight.detach(), layer.lora_A.detach(), layer.lora_B.detach(),
                                          layer.lora_magnitude.detach(), layer.scaling)).float()
        assert got.shape == want.shape, f"W' has shape {tuple(got.shape)}, expected {tuple(want.shape)} (out × in)"
        err = (got - want).abs().max().item()
        assert err < 1e-5, (f"W' is off by {err:.3g}: V = W + scaling·B@A, then divide each ROW of V by its norm "
                            "(V.norm(dim=1, keepdim=True)) and multiply row i by m[i]")
    print("✓ dora_weight matches DoRALinear's merged weight")


def check_exercise_8_2(n):
    """Trainable parameters of Houlsby adapters (bottleneck 16, after o_proj and down_proj) in SmolLM2-135M."""
    d, m, layers = 576, 16, 30
    want = layers * 2 * (d * m + m + m * d + d)
    assert isinstance(n, int), f"answer with an integer, got {type(n).__name__}"
    assert n != layers * 2 * 2 * d * m, "close: each adapter also has two bias vectors (m and d numbers)"
    assert n != layers * (d * m + m + m * d + d), "close: there are TWO adapters per layer (attention and MLP)"
    assert n == want, (f"got {n:,}; per adapter: W_down (m × d) + b_down (m) + W_up (d × m) + b_up (d), "
                       f"with d = 576, m = 16, two adapters per layer, 30 layers")
    print(f"✓ {n:,} trainable parameters ({100 * n / 134_515_008:.2f}% of SmolLM2-135M)")


def check_exercise_8_3(pissa):
    """pissa(W, r, scaling) -> (A, B, W_res) with s·B·A = top-r SVD part of W and W_res = W − s·B·A."""
    assert callable(pissa), "pass your function pissa(W, r, scaling), not its result"
    W = torch.randn(12, 9, generator=_g(3))
    for r, s in [(2, 2.0), (4, 0.5)]:
        A, B, W_res = (torch.as_tensor(t).float() for t in pissa(W, r, s))
        assert A.shape == (r, 9) and B.shape == (12, r), f"A must be r × in = ({r}, 9) and B out × r = (12, {r})"
        assert torch.allclose(W_res + s * B @ A, W, atol=1e-5), "W_res + scaling·B@A must equal W exactly"
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        top = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
        assert torch.allclose(s * B @ A, top, atol=1e-4), (
            "scaling·B@A must be W's best rank-r part U_r S_r V_rᵀ: use B = U_r·√(S_r/s), A = √(S_r/s)·V_rᵀ")
        assert torch.allclose(A.norm(dim=1), B.norm(dim=0), atol=1e-4), (
            "split √S_r evenly between A and B (PiSSA's init), so that A's rows and B's columns have equal norms")
    print("✓ pissa puts W's top-r singular directions into A and B and keeps the residual frozen")


def check_exercise_8_4(mixed_lora):
    """mixed_lora(x, A, B, scaling, idx) -> LoRA branch where row i uses adapter idx[i]."""
    assert callable(mixed_lora), "pass your function mixed_lora(x, A, B, scaling, idx), not its result"
    K, r, d_in, d_out, b, T = 3, 2, 6, 5, 4, 3
    g = _g(4)
    As = [torch.randn(r, d_in, generator=g) for _ in range(K)]
    Bs = [torch.randn(d_out, r, generator=g) for _ in range(K)]
    scal = [1.0, 0.5, 2.0]
    layer = MultiLoRALinear(torch.nn.Linear(d_in, d_out, bias=False), As, Bs, scal)
    x = torch.randn(b, T, d_in, generator=g)
    idx = torch.tensor([2, 0, 1, 2])
    layer.active = idx
    want = layer(x) - layer.base(x)
    got = torch.as_tensor(mixed_lora(x, layer.lora_A.detach(), layer.lora_B.detach(), layer.scaling, idx))
    assert got.shape == want.shape, f"output has shape {tuple(got.shape)}, expected {tuple(want.shape)} (b, T, out)"
    err = (got - want).abs().max().item()
    assert err < 1e-5, (f"off by {err:.3g}: gather A[idx] (b × r × in) and B[idx] (b × out × r), then "
                        "z = einsum('bti,bri->btr', x, A_i), y = einsum('btr,bor->bto', z, B_i) · scaling[idx]")
    print("✓ mixed_lora serves each row with its own adapter in one batched computation")


def check_exercise_8_5(bits):
    """Bits per weight of blockwise 4-bit absmax quantization with block 64 and a float32 absmax per block."""
    assert isinstance(bits, (int, float)), f"answer with a number, got {type(bits).__name__}"
    w = torch.randn(64 * 8)
    assert len(torch.unique(fake_quantize(w, "nf4", 64).reshape(8, 64)[0])) <= 16
    assert abs(bits - (4 + 32 / 64)) < 1e-9, (f"got {bits}; each weight has a 4-bit code, and each block of 64 "
                                              "weights shares one 32-bit absmax (32/64 bits per weight)")
    print(f"✓ {bits} bits per weight: {16 / bits:.2f}× smaller than bf16 (QLoRA's double quantization "
          "shrinks the absmax overhead further)")
