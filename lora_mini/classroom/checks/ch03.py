"""Checks for chapter 3 (a LoRA layer from scratch)."""
import contextlib
import copy
import math

import torch
import torch.nn as nn
from transformers.pytorch_utils import Conv1D

from lora_mini import LoRALinear

from . import call, close, exercise, integer, no_library, rand, same


def _layers():
    """nn.Linear and GPT-2 Conv1D layers of several shapes (Conv1D stores its weight as in × out)."""
    return [nn.Linear(576, 1536), nn.Linear(64, 64, bias=False), Conv1D(192, 64), Conv1D(10, 24), nn.Linear(7, 3)]


@exercise("3.1")
def lora_param_count_test(lora_param_count):
    """lora_param_count(layer, r) -> trainable parameters LoRA adds to an nn.Linear or a GPT-2 Conv1D."""
    for layer in _layers():
        for r in (1, 4, 16):
            wrapped = LoRALinear(copy.deepcopy(layer), r=r, alpha=2 * r)      # the library's layer, counted
            want = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
            got = integer(call(lora_param_count, layer, r), "lora_param_count's result")
            kind = type(layer).__name__
            assert got != r * layer.weight.numel(), f"{kind}: you counted r copies of W; LoRA trains A and B only"
            assert got != want + (layer.bias.numel() if layer.bias is not None else -1), \
                f"{kind}: the bias stays frozen; count A and B only"
            assert got == want, (f"lora_param_count({kind} with weight {tuple(layer.weight.shape)}, r={r}) = {got:,}: "
                                 "count A (r × in) and B (out × r); which dimension of the weight is `in` "
                                 "depends on the layer type")
    return "lora_param_count is right for nn.Linear and Conv1D layers at r = 1, 4, 16"


@contextlib.contextmanager
def _no_init():
    saved = nn.init.kaiming_uniform_, nn.init.uniform_

    def refuse(*a, **k):
        raise AssertionError("write the initialisation with torch.rand (or Tensor.uniform_), not nn.init")
    nn.init.kaiming_uniform_ = nn.init.uniform_ = refuse
    try:
        yield
    finally:
        nn.init.kaiming_uniform_, nn.init.uniform_ = saved


@exercise("3.2")
def init_lora_test(init_lora):
    """init_lora(in_features, out_features, r) -> (A, B) as nn.Parameters: A ~ U(±1/√in) (r × in), B = 0 (out × r)."""
    draws = []
    for seed, (fan_in, fan_out, r) in enumerate([(300, 40, 8), (64, 64, 4), (1000, 3, 16), (96, 200, 32)]):
        torch.manual_seed(seed)
        with _no_init():
            out = call(init_lora, fan_in, fan_out, r)
        assert isinstance(out, (tuple, list)) and len(out) == 2, "return two parameters: (A, B)"
        A, B = out
        assert isinstance(A, nn.Parameter) and isinstance(B, nn.Parameter), "return nn.Parameter objects so they train"
        assert tuple(A.shape) == (r, fan_in), f"A is r × in = {(r, fan_in)}, got {tuple(A.shape)}"
        assert tuple(B.shape) == (fan_out, r), f"B is out × r = {(fan_out, r)}, got {tuple(B.shape)}"
        assert A.dtype == torch.float32 and B.dtype == torch.float32, "use the default float32"
        assert torch.all(B == 0), "B must start at zero, so that the wrapped layer starts as exactly W"
        bound = fan_in ** -0.5                         # the interval the text asks for
        a = A.detach().double()
        assert a.abs().max() <= bound * (1 + 1e-6), f"A's entries should lie within ±1/√in; the largest is {a.abs().max():.4f}"
        assert abs(a.std() - bound / math.sqrt(3)) < 0.1 * bound, \
            "A should spread uniformly over the whole interval ±1/√in (a uniform law, not a normal or a constant)"
        assert abs(a.mean()) < 5 * bound / math.sqrt(3 * a.numel()), "A should be centred on zero"
        assert int(torch.linalg.matrix_rank(a)) == r, "A's rows should be independent draws (A has rank r)"
        torch.manual_seed(seed)
        with _no_init():
            again = call(init_lora, fan_in, fan_out, r)[0]
        assert torch.equal(A, again), "draw A from torch's global generator, so that torch.manual_seed makes it reproducible"
        draws.append(A.detach())
    torch.manual_seed(99)
    with _no_init():
        other = call(init_lora, 300, 40, 8)[0]
    assert not torch.equal(other, draws[0]), "A should be random: another seed must give another A"
    return "A ~ U(±1/√in) with shape r × in, B = 0 with shape out × r, for four shapes"


def _conv(fan_in, fan_out, seed):
    torch.manual_seed(seed)
    conv = Conv1D(fan_out, fan_in)                   # Conv1D(nf=out, nx=in): weight (in, out)
    nn.init.normal_(conv.weight)
    nn.init.normal_(conv.bias)
    return conv


@exercise("3.3")
def lora_conv1d_test(LoRAConv1D):
    """LoRAConv1D(base, r, alpha): LoRA around a GPT-2 Conv1D (weight in × out), built from torch alone."""
    for seed, (fan_in, fan_out, r, alpha) in enumerate([(10, 24, 3, 6.0), (16, 16, 4, 3.0), (8, 40, 2, 5)]):
        base = _conv(fan_in, fan_out, seed)
        W0, b0 = base.weight.detach().clone(), base.bias.detach().clone()
        x = rand(2, 5, fan_in, seed=seed)
        with no_library():
            torch.manual_seed(seed)
            layer = LoRAConv1D(base, r, alpha)
            y0 = layer(x)
        assert isinstance(layer, nn.Module), "LoRAConv1D should be an nn.Module subclass"
        for name, shape in [("lora_A", (r, fan_in)), ("lora_B", (fan_out, r))]:
            p = getattr(layer, name, None)
            assert isinstance(p, nn.Parameter), f"store {name} as an nn.Parameter attribute"
            assert tuple(p.shape) == shape, f"{name} should have shape {shape}, got {tuple(p.shape)}"
        assert torch.all(layer.lora_B == 0), "lora_B must start at zero"
        assert not torch.all(layer.lora_A == 0), "lora_A must start random, or no gradient ever flows"
        trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
        assert trainable == {"lora_A", "lora_B"}, f"only lora_A and lora_B should train, not {sorted(trainable)}"
        assert tuple(y0.shape) == (2, 5, fan_out), f"output shape should be (2, 5, {fan_out}), got {tuple(y0.shape)}"
        close(y0, x @ W0 + b0, "a fresh layer's output (it should equal the base Conv1D)")
        with torch.no_grad():
            layer.lora_B.copy_(rand(fan_out, r, seed=seed + 1))
        with no_library():
            y = layer(x)
        A, B, s = layer.lora_A.detach(), layer.lora_B.detach(), float(alpha) / r
        want = x @ W0 + b0 + s * (x @ A.T @ B.T)
        if not same(y, want):
            for wrong, hint in [(x @ W0 + b0 + x @ A.T @ B.T, "the low-rank path is missing its scale α/r"),
                                (x @ W0 + b0 + float(alpha) * (x @ A.T @ B.T), "scale by α/r, not α")]:
                assert not same(y, wrong), hint
        close(y, want, "the output with a non-zero B")
        assert torch.equal(base.weight, W0), "the forward pass changed the base weight; W must stay as it was"
        y.sum().backward()
        assert layer.lora_A.grad is not None and base.weight.grad is None, "gradients should reach A and B only"
    return "LoRAConv1D starts as the base layer, adds (α/r)·x Aᵀ Bᵀ, and trains only A and B"


@exercise("3.4")
def conv1d_merged_weight_test(conv1d_merged_weight):
    """conv1d_merged_weight(W, A, B, scaling) -> W' (in × out) with x W' + b = the LoRA layer's output."""
    for seed, (fan_in, fan_out, r, scaling, dtype) in enumerate([(12, 12, 4, 2.5, torch.float64),
                                                                 (10, 24, 3, 0.5, torch.float32),
                                                                 (6, 9, 2, 3, torch.float32)]):
        W, A, B = rand(fan_in, fan_out, seed=seed, dtype=dtype), rand(r, fan_in, seed=seed + 1, dtype=dtype), \
            rand(fan_out, r, seed=seed + 2, dtype=dtype)
        x = rand(5, fan_in, seed=seed + 3, dtype=dtype)
        W2 = call(conv1d_merged_weight, W, A, B, scaling)
        assert torch.is_tensor(W2) and tuple(W2.shape) == (fan_in, fan_out), \
            f"the merged weight keeps Conv1D's (in, out) = {(fan_in, fan_out)} shape"
        want = x @ W + scaling * (x @ A.T @ B.T)
        assert not (fan_in == fan_out and same(x @ W2, x @ W + scaling * (x @ (B @ A)))), \
            "B·A is out × in, and Conv1D's W is in × out: transpose the update"
        assert not same(x @ W2, x @ W + x @ A.T @ B.T) or scaling == 1, "multiply the update by scaling"
        close(x @ W2, want, f"x @ W' at scaling {scaling}")
        assert W2.dtype == dtype, f"keep W's dtype ({dtype})"
    return "x W' reproduces the LoRA layer for three shapes and scalings"
