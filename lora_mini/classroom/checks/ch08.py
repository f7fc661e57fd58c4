"""Checks for chapter 8 (alternatives and variants of LoRA)."""
import copy

import torch
import torch.nn as nn

from . import call, close, exercise, integer, number, rand, same


def _dora_reference(W, A, B, m, s):
    """DoRA's merged weight in float64, written row by row from the definition."""
    V = W.double() + s * torch.einsum("or,ri->oi", B.double(), A.double())
    lengths = torch.linalg.vector_norm(V, dim=-1, keepdim=True)
    return m.double().unsqueeze(-1) * (V / lengths)


@exercise("8.1")
def dora_weight_test(dora_weight):
    """dora_weight(W, A, B, m, scaling) -> m ⊙ (W + s·B·A) / ‖W + s·B·A‖_row, a new tensor in W's dtype."""
    from lora_mini.variants import DoRALinear
    cases = [(5, 7, 2, 1.5, torch.float32), (8, 3, 1, 0.25, torch.float64), (6, 6, 4, 3.0, torch.float32),
             (9, 9, 3, 2, torch.float64)]
    for seed, (out, inp, r, s, dtype) in enumerate(cases):
        W, A, B = rand(out, inp, seed=seed, dtype=dtype), rand(r, inp, seed=seed + 1, dtype=dtype), \
            rand(out, r, seed=seed + 2, dtype=dtype)
        m = (1 + torch.rand(out, generator=torch.Generator().manual_seed(seed + 3), dtype=torch.float64)).to(dtype)
        got = call(dora_weight, W, A, B, m, s)
        assert torch.is_tensor(got) and tuple(got.shape) == (out, inp), f"W' has W's shape, out × in = {(out, inp)}"
        assert got.dtype == dtype, f"keep W's dtype ({dtype}), got {got.dtype}"
        want = _dora_reference(W, A, B, m, s).to(dtype)
        if not same(got, want):
            for wrong, hint in [(_dora_reference(W, A, B, m, 1.0), "the low-rank update is missing its scale s"),
                                (_dora_reference(W, A, B, torch.ones_like(m), s), "multiply each row's direction by its magnitude m"),
                                (m.double()[:, None] * (W.double() + s * B.double() @ A.double()) / W.double().norm(dim=1, keepdim=True),
                                 "divide by the row norms of V = W + s·B·A, not of W")]:
                assert not same(got, wrong.to(dtype)), f"(scaling {s}) {hint}"
            V = W.double() + s * B.double() @ A.double()
            cols = m.double()[:, None] * V / V.norm(dim=0, keepdim=True)
            assert not same(got, cols.to(dtype)), "normalise each output ROW of V (out × in), not each column"
        close(got, want, f"W' at scaling {s} ({dtype})")
    # the same as lora_mini's DoRA layer, merged
    layer = DoRALinear(nn.Linear(7, 5, bias=False), r=2, alpha=3.0)
    with torch.no_grad():
        layer.lora_B.copy_(rand(5, 2, seed=11))
        layer.lora_magnitude.mul_(1.7)
    want = (layer.base.weight + layer.delta_weight()).detach()
    got = call(dora_weight, layer.base.weight.detach().clone(), layer.lora_A.detach().clone(),
               layer.lora_B.detach().clone(), layer.lora_magnitude.detach().clone(), layer.scaling)
    close(got, want, "W' of a DoRALinear layer (α = 3, r = 2)", tol=1e-4)
    return "W' matches DoRA's merged weight for four shapes, scales and dtypes; W untouched"


def _adapter_count_reference(d, m, n_layers):
    """Count what lora_mini's BottleneckAdapter trains, for the two adapters of each layer."""
    from lora_mini.adapters import BottleneckAdapter
    after_attention = BottleneckAdapter(nn.Linear(d, d, bias=False), bottleneck=m)
    after_mlp = BottleneckAdapter(nn.Linear(2 * d, d, bias=False), bottleneck=m)
    per_layer = sum(p.numel() for a in (after_attention, after_mlp) for p in a.parameters() if p.requires_grad)
    return n_layers * per_layer


@exercise("8.2")
def adapter_param_count_test(adapter_param_count):
    """adapter_param_count(d, m, n_layers) -> trainable parameters of Houlsby adapters after o_proj and down_proj."""
    for d, m, n_layers in [(576, 16, 30), (64, 8, 2), (960, 32, 32), (100, 1, 5), (7, 3, 1)]:
        want = _adapter_count_reference(d, m, n_layers)
        got = integer(call(adapter_param_count, d, m, n_layers), "adapter_param_count's result")
        if got != want:
            assert got != want // 2, "there are TWO adapters per layer: after o_proj and after down_proj"
            assert got != want - 2 * n_layers * (m + d), "each adapter also has two bias vectors (sizes m and d)"
            assert got != want - 2 * n_layers * d and got != want - 2 * n_layers * m, \
                "count both biases: b_down (m numbers) and b_up (d numbers)"
            raise AssertionError(f"adapter_param_count({d}, {m}, {n_layers}) = {got:,}: count W_down, b_down, W_up "
                                 "and b_up of one adapter, then the adapters of every layer")
    return "the adapter count is right for five model sizes and bottlenecks"


def _pissa_parts(W, r):
    u, sv, vh = torch.linalg.svd(W.double(), full_matrices=False)
    return u[:, :r], sv[:r], vh[:r]


@exercise("8.3")
def pissa_test(pissa):
    """pissa(W, r, scaling) -> (A, B, W_res): top-r SVD part split evenly, s·B·A = that part, W_res = W − s·B·A."""
    for seed, (out, inp, r, s, dtype) in enumerate([(12, 9, 2, 2.0, torch.float32), (9, 12, 4, 0.5, torch.float64),
                                                    (20, 20, 3, 1, torch.float32), (16, 10, 5, 4.0, torch.float64)]):
        W = rand(out, inp, seed=seed, dtype=dtype)
        res = call(pissa, W, r, s)
        assert isinstance(res, (tuple, list)) and len(res) == 3, "return three tensors: (A, B, W_res)"
        A, B, W_res = res
        assert torch.is_tensor(A) and torch.is_tensor(B) and torch.is_tensor(W_res), "A, B and W_res should be tensors"
        assert tuple(A.shape) == (r, inp) and tuple(B.shape) == (out, r), \
            f"A is r × in = {(r, inp)} and B is out × r = {(out, r)}; got A {tuple(A.shape)}, B {tuple(B.shape)}"
        assert A.dtype == B.dtype == W_res.dtype == dtype, f"keep W's dtype ({dtype})"
        u, sv, vh = _pissa_parts(W, r)
        top = (u * sv) @ vh                                          # W's best rank-r part
        update = s * B.double() @ A.double()
        if not same(update, top, tol=1e-4):
            assert not same(B.double() @ A.double(), top, tol=1e-4) or s == 1, \
                f"B·A is W's top-r part, so s·B·A is {s}× too large: put 1/s inside the square roots"
            assert not same(update, W.double(), tol=1e-4), "A and B should hold only the top-r part of W, not all of it"
            raise AssertionError(f"scaling·B@A should be W's best rank-{r} approximation (U_r S_r V_rᵀ)")
        assert same(A.double().norm(dim=1), B.double().norm(dim=0), tol=1e-4), \
            "split the singular values evenly: each of A's rows and B's columns should carry √(S_i / s)"
        assert not same(W_res.double(), W.double(), tol=1e-4), "W_res is what remains: W minus the part in the adapter"
        close(W_res.double() + update, W.double(), "W_res + scaling·B@A (it should equal W)", tol=1e-4)
    return "A, B hold W's top-r singular directions split evenly, and W_res + s·B·A = W, for four shapes"


def _stored_bits(code_bits, block, scale_bits, block2, scale2_bits):
    """Average bits per weight, counted over a whole tensor of weights laid out in blocks."""
    groups = 3
    n_weights = block * (block2 or 1) * groups
    n_scales = n_weights // block
    n_constants = n_scales // block2 if block2 else 0
    return (n_weights * code_bits + n_scales * scale_bits + n_constants * scale2_bits) / n_weights


@exercise("8.4")
def bits_per_weight_test(bits_per_weight):
    """bits_per_weight(code_bits, block, scale_bits, block2=None, scale2_bits=32) -> average bits per weight."""
    for args in [(4, 64, 32), (4, 32, 16), (8, 128, 16), (3, 16, 32), (4, 64, 8, 256), (4, 64, 8, 256, 16),
                 (2, 8, 16, 4, 32)]:
        code_bits, block, scale_bits = args[:3]
        block2 = args[3] if len(args) > 3 else None
        scale2_bits = args[4] if len(args) > 4 else 32
        want = _stored_bits(code_bits, block, scale_bits, block2, scale2_bits)
        got = number(call(bits_per_weight, *args), "bits_per_weight's result")
        if abs(got - want) > 1e-9 * want:
            assert got != code_bits, "each block also stores its scale: add its bits, shared by the block's weights"
            assert abs(got - (code_bits + block / scale_bits)) > 1e-12, "one scale of scale_bits is shared by block weights"
            if block2:
                assert abs(got - (code_bits + scale_bits / block)) > 1e-12, \
                    "with block2, each group of block2 scales also stores one scale2_bits constant"
                assert abs(got - (code_bits + scale_bits / block + scale2_bits / block2)) > 1e-12, \
                    "one constant serves block2 scales, and each scale serves block weights"
            raise AssertionError(f"bits_per_weight{args} = {got:g}: divide each stored number by the count of "
                                 "weights that share it")
    return "bits per weight are right with and without double quantization, for seven layouts"
