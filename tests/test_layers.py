"""LoRALinear: shapes, init, the forward formula, gradients, Conv1D, bad input."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers.pytorch_utils import Conv1D

from lora_mini import LoRALinear, lora_scaling


def test_shapes_init_and_zero_start():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    layer = LoRALinear(base, r=4, alpha=8)
    assert layer.lora_A.shape == (4, 12) and layer.lora_B.shape == (7, 4)
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) > 0
    bound = 1 / math.sqrt(12)  # kaiming_uniform(a=√5) on fan_in = 12
    assert layer.lora_A.abs().max() <= bound
    assert layer.scaling == 2.0
    x = torch.randn(3, 5, 12)
    assert torch.equal(layer(x), base(x))  # B = 0: exactly the base layer


def test_forward_formula_and_rslora():
    torch.manual_seed(0)
    base = nn.Linear(10, 6)
    layer = LoRALinear(base, r=4, alpha=6, use_rslora=True)
    nn.init.normal_(layer.lora_B)
    assert layer.scaling == pytest.approx(6 / 2)   # α / √r
    x = torch.randn(2, 10)
    want = x @ base.weight.T + base.bias + layer.scaling * (x @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(layer(x), want)
    assert lora_scaling(4, 6) == 1.5


def test_only_A_and_B_get_gradients():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 8), r=2, alpha=4)
    nn.init.normal_(layer.lora_B)
    layer(torch.randn(4, 8)).pow(2).sum().backward()
    assert layer.lora_A.grad is not None and layer.lora_B.grad is not None
    assert layer.base.weight.grad is None and layer.base.bias.grad is None
    assert not layer.base.weight.requires_grad


def test_conv1d_transposed_weight():
    torch.manual_seed(0)
    base = Conv1D(nf=6, nx=10)           # weight (in=10, out=6); y = x @ W + b
    nn.init.normal_(base.weight)
    layer = LoRALinear(base, r=3, alpha=3)
    assert layer.fan_in_fan_out and layer.lora_A.shape == (3, 10) and layer.lora_B.shape == (6, 3)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(2, 4, 10)
    want = base(x) + x @ (layer.lora_B @ layer.lora_A).T
    torch.testing.assert_close(layer(x), want)
    assert layer.delta_weight().shape == base.weight.shape


def test_dropout_only_on_lora_branch():
    torch.manual_seed(0)
    base = nn.Linear(16, 16)
    layer = LoRALinear(base, r=4, alpha=4, dropout=0.5).train()
    x = torch.randn(64, 16)
    assert torch.equal(layer(x), base(x))           # B = 0: dropout cannot touch the base path
    assert isinstance(LoRALinear(nn.Linear(4, 4), 2, 2).dropout, nn.Identity)
    nn.init.normal_(layer.lora_B)
    assert not torch.equal(layer(x), layer(x))      # train mode: random masks on the LoRA branch
    layer.eval()
    assert torch.equal(layer(x), layer(x))


def test_bf16_activations_keep_fp32_master_weights():
    layer = LoRALinear(nn.Linear(8, 8).to(torch.bfloat16), r=2, alpha=2)
    assert layer.lora_A.dtype == torch.float32
    y = layer(torch.randn(3, 8, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16


@pytest.mark.parametrize("kwargs,match", [
    (dict(r=0, alpha=1), "positive integer"),
    (dict(r=2.5, alpha=1), "positive integer"),
    (dict(r=True, alpha=1), "positive integer"),
    (dict(r=2, alpha=0), "alpha"),
    (dict(r=2, alpha=-1), "alpha"),
    (dict(r=2, alpha=2, dropout=1.0), "dropout"),
    (dict(r=2, alpha=2, dropout=-0.1), "dropout"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoRALinear(nn.Linear(4, 4), **kwargs)


def test_rejects_non_linear():
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Embedding(10, 4), r=2, alpha=2)


# ----------------------------------------------------------------------------- the one layer contract, every kind

import copy  # noqa: E402

from lora_mini.layers import LAYER_KINDS, DoRALinear, layer_class  # noqa: E402
from lora_mini.variants import fake_quantize, pissa_init_  # noqa: E402


class _OwnForward(nn.Linear):
    """A wrapped base with its own forward (stands for a quantized layer): W x + b, via a detour."""

    def forward(self, x):
        return F.linear(x, self.weight) + (0 if self.bias is None else self.bias)


def _kind(kind):
    """(original base, layer) for each adapter kind, with trained-looking A, B (and m)."""
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    if kind == "quantized":
        with torch.no_grad():
            base.weight.copy_(fake_quantize(base.weight, "nf4", block=12))
    if kind == "wrapped":
        wrapped = _OwnForward(12, 10)
        wrapped.load_state_dict(base.state_dict())
        base = wrapped
    original = copy.deepcopy(base)
    cls = DoRALinear if kind == "dora" else LoRALinear
    layer = cls(base, r=3, alpha=6, use_rslora=(kind == "rslora"))
    if kind == "pissa":
        pissa_init_(layer)
    with torch.no_grad():
        for p in layer.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape))
    return original, layer


KINDS = ["lora", "rslora", "dora", "pissa", "quantized", "wrapped"]


@pytest.mark.parametrize("kind", KINDS)
def test_delta_weight_is_pure(kind):
    _, layer = _kind(kind)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    attrs = {k: v for k, v in vars(layer).items() if not k.startswith("_")}
    d = layer.delta_weight()
    assert d.shape == layer.base.weight.shape
    assert torch.equal(layer.delta_weight(), d)
    assert all(torch.equal(layer.state_dict()[k], v) for k, v in before.items())
    assert {k: v for k, v in vars(layer).items() if not k.startswith("_")} == attrs


@pytest.mark.parametrize("kind", KINDS)
def test_merge_unmerge_on_the_layer(kind):
    _, layer = _kind(kind)
    x = torch.randn(4, 12)
    w0 = layer.base.weight.clone()
    with torch.no_grad():
        y = layer(x)
        d = layer.delta_weight()
        layer.merge()
        torch.testing.assert_close(layer(x), y, atol=1e-5, rtol=0)
        torch.testing.assert_close(layer.delta_weight(), d, atol=1e-6, rtol=0)
        with pytest.raises(ValueError, match="already merged"):
            layer.merge()
        layer.unmerge()
    assert torch.equal(layer.base.weight, w0) and not layer.merged
    with pytest.raises(ValueError, match="not merged"):
        layer.unmerge()


@pytest.mark.parametrize("kind", KINDS)
def test_saved_tensors_and_config_rebuild_the_same_layer(kind):
    original, layer = _kind(kind)
    tensors, config = layer.adapter_tensors(), layer.adapter_config()
    assert all(t.dtype == torch.float32 for t in tensors.values()) and set(tensors) == set(type(layer).tensor_names)
    assert config["kind"] in LAYER_KINDS and layer_class(config["kind"]) is type(layer)
    assert {k: tuple(t.shape) for k, t in tensors.items()} == type(layer).adapter_shapes(original, config["r"])
    rebuilt = layer_class(config["kind"]).from_adapter(copy.deepcopy(original), config)   # on the ORIGINAL W
    rebuilt.load_adapter_tensors(tensors)
    x = torch.randn(4, 12)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), layer(x), atol=1e-5, rtol=0)
    if kind == "pissa":
        assert config["r"] == 2 * layer.r and config["converted_from"] == "pissa"
