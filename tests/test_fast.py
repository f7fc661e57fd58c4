"""The fast path (lora_mini/fast.py) computes what the straightforward LoRALinear computes."""
import copy

import pytest
import torch
import torch.nn as nn

from lora_mini import LoRALinear, apply_lora, lora_modules, merge, tiny_model
from lora_mini import fast
from lora_mini.merge import disable_lora


def _layer(base, r=4, alpha=8, seed=0, **kw):
    torch.manual_seed(seed)
    layer = LoRALinear(base, r, alpha, **kw)
    nn.init.normal_(layer.lora_B, std=0.5)          # non-zero B, so the adapter matters
    return layer


def _run(layer, x, enabled):
    """Output and grads (x, A, B) with the fast path on or off."""
    x = x.detach().clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    with fast.fast_path(enabled):
        y = layer(x)
        (y.float().sin().sum()).backward()
    return [t.detach().float() for t in (y, x.grad, layer.lora_A.grad, layer.lora_B.grad)]


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 5), (5,)])
def test_fast_matches_reference_fp32(bias, shape):
    layer = _layer(nn.Linear(32, 24, bias=bias))
    x = torch.randn(*shape[:-1], 32) if len(shape) > 1 else torch.randn(32)
    for got, want in zip(_run(layer, x, True), _run(layer, x, False)):
        assert got.shape == want.shape
        assert _rel(got, want) < 1e-5


def test_fast_matches_reference_bf16():
    layer = _layer(nn.Linear(64, 48).to(torch.bfloat16))          # A, B stay float32 masters
    assert layer.lora_A.dtype == torch.float32
    x = torch.randn(4, 7, 64, dtype=torch.bfloat16)
    got, want = _run(layer, x, True), _run(layer, x, False)
    assert got[0].dtype == want[0].dtype
    for g, w in zip(got, want):
        assert _rel(g, w) < 3e-2                                  # a few bf16 roundings
    assert layer.lora_A.grad.dtype == torch.float32 and layer.lora_B.grad.dtype == torch.float32


def test_grad_x_is_contiguous():
    """grad_x leaves the fused backward as its own contiguous tensor: a strided view of a wider GEMM's
    output (the first columns of g [W' | s·B]) poisoned a later autocast run on an H200 (bisect6.py)."""
    layer = _layer(nn.Linear(32, 24))
    x = torch.randn(2, 3, 32, requires_grad=True)
    seen = []
    y = fast.LoRALinearFunction.apply(x, layer.base.weight, layer.base.bias, layer.lora_A, layer.lora_B,
                                      layer.scaling, (None, True))
    y.grad_fn.register_hook(lambda grad_in, grad_out: seen.append(grad_in[0]))
    y.sum().backward()
    assert seen[0].shape == x.shape and seen[0].is_contiguous()
    assert torch.allclose(seen[0], torch.ones(2, 3, 24) @ (layer.base.weight + layer.scaling * layer.lora_B @ layer.lora_A))


def test_fast_gpt2_conv1d():
    from transformers.pytorch_utils import Conv1D
    torch.manual_seed(1)
    conv = Conv1D(24, 32)                                         # weight (in=32, out=24)
    nn.init.normal_(conv.weight, std=0.1)
    nn.init.normal_(conv.bias, std=0.1)
    layer = _layer(conv)
    x = torch.randn(2, 3, 32)
    for got, want in zip(_run(layer, x, True), _run(layer, x, False)):
        assert _rel(got, want) < 1e-5


def test_fast_is_used_and_reference_is_not():
    layer = _layer(nn.Linear(16, 8))
    x = torch.randn(2, 16, requires_grad=True)
    with fast.fast_path(True):
        assert "LoRALinearFunction" in type(layer(x).grad_fn).__name__
    with fast.fast_path(False):
        assert "LoRALinearFunction" not in type(layer(x).grad_fn).__name__


def test_fallbacks_keep_the_maths():
    """Dropout in training, a trainable W, a hook, or a dtype mismatch: the reference path runs."""
    x = torch.randn(3, 16)
    drop = _layer(nn.Linear(16, 8), dropout=0.5).train()
    assert not fast.can_use(drop, x)
    assert fast.can_use(drop.eval(), x)                           # eval: dropout is the identity
    trainable = _layer(nn.Linear(16, 8))
    trainable.base.weight.requires_grad_(True)
    assert not fast.can_use(trainable, x)
    hooked = _layer(nn.Linear(16, 8))
    hooked.base.register_forward_hook(lambda m, i, o: o * 2)
    assert not fast.can_use(hooked, x)
    torch.testing.assert_close(hooked(x), hooked.base(x) + hooked.lora_forward(x))   # hook ran
    assert not fast.can_use(_layer(nn.Linear(16, 8)), x.double())
    with fast.fast_path(False):
        assert not fast.can_use(_layer(nn.Linear(16, 8)), x)
    assert fast.can_use(_layer(nn.Linear(16, 8)), x)


def test_subclass_with_own_lora_forward_is_respected():
    class Doubled(LoRALinear):
        def lora_forward(self, x):
            return 2 * super().lora_forward(x)
    torch.manual_seed(0)
    layer = Doubled(nn.Linear(16, 8), 4, 8)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(3, 16)
    torch.testing.assert_close(layer(x), layer.base(x) + 2 * LoRALinear.lora_forward(layer, x))


def test_no_grad_for_frozen_parts_and_input():
    layer = _layer(nn.Linear(16, 8))
    layer.lora_A.requires_grad_(False)
    x = torch.randn(3, 16)                                        # x needs no grad either
    layer(x).sum().backward()
    assert layer.lora_A.grad is None and layer.lora_B.grad is not None
    assert layer.base.weight.grad is None
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer.base(x) + layer.lora_forward(x))


def test_merged_and_disabled_unchanged():
    model = tiny_model("llama")
    apply_lora(model, "all-linear", r=4, alpha=8)
    for layer in lora_modules(model).values():
        nn.init.normal_(layer.lora_B, std=0.05)
    ids = torch.randint(0, 256, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast_logits = model(ids).logits
        with fast.fast_path(False):
            ref_logits = model(ids).logits
        with disable_lora(model):
            base_logits = model(ids).logits
        merged_logits = merge(copy.deepcopy(model))(ids).logits
    torch.testing.assert_close(fast_logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged_logits, ref_logits, atol=1e-4, rtol=1e-4)
    assert (base_logits - ref_logits).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_whole_model_loss_and_grads_match(kind):
    model = tiny_model(kind)
    apply_lora(model, "all-linear", r=4, alpha=8)
    for layer in lora_modules(model).values():
        nn.init.normal_(layer.lora_B, std=0.05)
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    res = {}
    for enabled in (True, False):
        model.zero_grad(set_to_none=True)
        with fast.fast_path(enabled):
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
        res[enabled] = (loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert abs(res[True][0] - res[False][0]) < 1e-5
    assert res[True][1].keys() == res[False][1].keys() and len(res[True][1]) > 0
    for name, g in res[True][1].items():
        assert _rel(g, res[False][1][name]) < 1e-4, name


def test_compile_traces_the_function():
    """torch.compile (aot_eager: dynamo + AOTAutograd, no C++ toolchain needed) gives the same grads."""
    layer = _layer(nn.Linear(32, 16))
    x = torch.randn(2, 5, 32)
    want = _run(layer, x, True)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    xx = x.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    compiled(xx).float().sin().sum().backward()
    for got, w in zip((xx.grad, layer.lora_A.grad, layer.lora_B.grad), want[1:]):
        assert _rel(got, w) < 1e-5
    torch._dynamo.reset()


def test_settings_are_scoped_not_global():
    """fast_path nests and restores; None leaves a setting alone; no environment variable is read."""
    import inspect
    assert fast.settings() == fast.FastSettings()
    with fast.fast_path(False) as outer:
        assert outer == fast.FastSettings(enabled=False, split_rows=2048)
        with fast.fast_path(split_rows=0) as inner:
            assert inner == fast.FastSettings(enabled=False, split_rows=0)
        assert fast.settings() == outer
    assert fast.settings() == fast.FastSettings()
    src = inspect.getsource(fast)
    assert "os.environ" not in src and "getenv" not in src and "global " not in src
    assert not hasattr(fast, "ENABLED") and not hasattr(fast, "SPLIT_ROWS")
    with pytest.raises(ValueError, match="split_rows"):
        with fast.fast_path(split_rows=-1):
            pass


def test_layer_setting_overrides_the_block():
    layer = _layer(nn.Linear(16, 8))
    x = torch.randn(2, 16, requires_grad=True)
    layer.fast = False
    assert "LoRALinearFunction" not in type(layer(x).grad_fn).__name__
    with fast.fast_path(True):
        assert not fast.can_use(layer, x)
    layer.fast = None
    with fast.fast_path(False):
        assert not fast.can_use(layer, x)
    layer.fast = True
    with fast.fast_path(False):
        assert fast.can_use(layer, x)


@pytest.mark.parametrize("N,rows", [(64, 16), (70, 16), (40, 100), (50, 0)])
def test_tn_matmul_split_equals_plain(N, rows):
    """The split-K reduction (chunks + fp32 sum, leftover rows too) equals aᵀb."""
    torch.manual_seed(N)
    a, b = torch.randn(N, 5), torch.randn(N, 33)
    got = fast.tn_matmul(a, b, split_rows=rows)
    assert got.dtype == torch.float32 and got.shape == (5, 33)
    assert torch.allclose(got, a.t() @ b, atol=1e-5)
    strided = torch.randn(N, 40)[:, 7:12]                          # like G[:, in:] in backward
    assert torch.allclose(fast.tn_matmul(strided, b, split_rows=rows), strided.t() @ b, atol=1e-5)


@pytest.mark.parametrize("how", ["layer", "block"])
def test_fast_with_split_reduction_matches_reference(monkeypatch, how):
    """split-K through the layer's own setting (any device) or fast_path's (GPUs only: forced here by a wrapper)."""
    layer = _layer(nn.Linear(32, 24))
    x = torch.randn(4, 37, 32)                                     # N = 148 rows -> 9 chunks of 16 + 4
    want = _run(layer, x, False)
    calls = []
    real = fast.tn_matmul

    def spy(a, b, split_rows=None):
        calls.append(split_rows)
        return real(a, b, split_rows=16 if how == "block" and split_rows is None else split_rows)

    monkeypatch.setattr(fast, "tn_matmul", spy)
    if how == "layer":
        layer.split_rows = 16
    got = _run(layer, x, True)
    assert calls == ([16, 16] if how == "layer" else [None, None])  # grad_A and grad_B both split
    for g, w in zip(got, want):
        assert _rel(g, w) < 1e-5


def test_split_rows_comes_from_the_block_on_gpu_only():
    a, b = torch.randn(64, 3), torch.randn(64, 5)
    with fast.fast_path(split_rows=16):
        torch.testing.assert_close(fast.tn_matmul(a, b), a.t() @ b)   # CPU: no split, same result
    assert fast.tn_matmul(a, b, split_rows=16).dtype == torch.float32


def test_fast_path_without_grad_mode_gives_the_training_forward():
    """fast_path(no_grad=True) under torch.no_grad: the same kernels (same bits) as with grad, nothing saved."""
    layer = _layer(nn.Linear(32, 24))
    x = torch.randn(3, 32)
    with fast.fast_path(True):
        want = layer(x)
        with torch.no_grad():
            assert not fast.can_use(layer, x)              # inference default: the thin-GEMM path
            with fast.fast_path(no_grad=True):
                assert fast.can_use(layer, x)
                got = layer(x)
    assert torch.equal(got, want.detach()) and got.grad_fn is None
    assert fast.settings().no_grad is False
