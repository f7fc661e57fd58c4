"""LoRALinear: shapes, init, the forward formula, gradients, Conv1D, bad input."""
import math

import pytest
import torch
import torch.nn as nn
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
