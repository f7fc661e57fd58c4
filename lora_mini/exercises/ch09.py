"""Self-checks for appendix 9 (why naive LoRA is slow on small models, and a fast path)."""
import torch


def check_exercise_9_1(answer):
    """LoRA/full FLOP ratio for one d×d matrix, d = 4096, r = 16 (per token, forward + backward)."""
    d, r = 4096, 16
    want = (4 * d * d + 12 * d * r) / (6 * d * d)
    assert isinstance(answer, float), f"answer should be a float (a ratio), got {type(answer).__name__}"
    assert abs(answer - 2 / 3) > 1e-4, "2/3 forgets the cost of A and B: 6·d·r multiply-adds per token"
    assert abs(answer - want) < 1e-6, (
        f"got {answer:.4f}; full FT: forward + grad_x + grad_W = 3 GEMMs of d² multiply-adds; LoRA: forward "
        "+ grad_x (2 d²) plus A and B: 2·r·d forward and 4·r·d backward")
    print(f"✓ LoRA costs {answer:.4f} of full fine-tuning per d×d matrix at d={d}, r={r} (→ 2/3 as d grows)")


def check_exercise_9_2(answer):
    """Extra bytes PEFT saves per adapted layer when it casts bf16 x (N × in) to float32: N=16384, in=576."""
    n, d = 16 * 1024, 576
    want = 4 * n * d
    assert isinstance(answer, int), f"answer should be an int (bytes), got {type(answer).__name__}"
    assert answer != 2 * n * d, "that is the bf16 x itself, which the layer saves anyway; the copy is float32"
    assert answer == want, f"got {answer:,}; a float32 copy of x has N·in elements of 4 bytes"
    print(f"✓ {answer / 2**20:.0f} MiB per layer; × 7 layers × 30 blocks = {210 * answer / 2**30:.1f} GiB for SmolLM2")


def check_exercise_9_3(lora_grads):
    """lora_grads(x, g, A, B, s, W) -> (grad_x, grad_A, grad_B) of y = x Wᵀ + s (x Aᵀ) Bᵀ, upstream grad g."""
    gen = torch.Generator().manual_seed(9)
    W = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    x = torch.randn(7, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    A = torch.randn(3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    B = torch.randn(6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(7, 6, generator=gen, dtype=torch.float64)
    y = x @ W.T + 2.0 * (x @ A.T) @ B.T
    y.backward(g)
    got = lora_grads(x.detach(), g, A.detach(), B.detach(), 2.0, W)
    assert len(got) == 3, "return (grad_x, grad_A, grad_B)"
    for name, a, b in zip(("grad_x", "grad_A", "grad_B"), got, (x.grad, A.grad, B.grad)):
        assert tuple(a.shape) == tuple(b.shape), f"{name} should have shape {tuple(b.shape)}, got {tuple(a.shape)}"
        err = (a - b).abs().max().item()
        assert err < 1e-9, f"{name} is off by {err:.2e}; remember the scale s and that grad_x includes W"
    print("✓ grad_x = g W + s (g B) A,  grad_A = s (g B)ᵀ x,  grad_B = s gᵀ (x Aᵀ)")


def check_exercise_9_4(breakeven_d):
    """breakeven_d(flops_per_s, bytes_per_s, passes, bytes_per_elem) -> d where a d×d weight-grad GEMM
    (2·N·d² FLOPs) takes as long as `passes` extra reads/writes of an N×d activation."""
    for f, bw, k, e in ((989e12, 4.8e12, 4, 2), (312e12, 2.0e12, 6, 2), (100e12, 1e12, 3, 4)):
        want = k * e * f / (2 * bw)
        got = breakeven_d(f, bw, k, e)
        assert abs(got - want) / want < 1e-6, (
            f"for {f:.0e} FLOP/s, {bw:.0e} B/s, {k} passes of {e}-byte elements expected d = {want:.0f}, got {got}; "
            "solve 2·N·d² / flops = passes·N·d·bytes / bandwidth for d")
    print(f"✓ on an H200 (989 TFLOP/s, 4.8 TB/s) 4 extra bf16 passes cost as much as a {breakeven_d(989e12, 4.8e12, 4, 2):.0f}-wide weight gradient")
