"""merge / unmerge / merge_and_unload / disable_lora: equivalence and bad input."""
import copy
import math

import pytest
import torch
import torch.nn as nn

from lora_mini import (LoRALinear, apply_lora, disable_lora, lora_modules, merge, merge_and_unload,
                       tiny_model, unmerge)


def trained_lora(model, r=4, seed=0, std=0.05):
    """LoRA with random (non-zero) A and B, as if trained; both drawn from `seed` alone
    (not from the global RNG), so a test sees the same adapter whatever ran before it."""
    apply_lora(model, "all-linear", r=r, alpha=2 * r)
    g = torch.Generator().manual_seed(seed)
    for layer in lora_modules(model).values():
        bound = 1 / math.sqrt(layer.in_features)          # the range of A's kaiming-uniform init
        with torch.no_grad():
            layer.lora_A.copy_((torch.rand(layer.lora_A.shape, generator=g) * 2 - 1) * bound)
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * std)
    return model


def logits(model, x):
    with torch.no_grad():
        return model(x).logits


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_merge_equivalence_tiny(kind):
    base = tiny_model(kind)
    x = torch.randint(0, 256, (2, 16))
    base_out = logits(base, x)
    model = trained_lora(copy.deepcopy(base))
    lora_out = logits(model, x)
    assert (lora_out - base_out).abs().max() > 1e-3          # the adapter does something
    merge(model)
    assert (logits(model, x) - lora_out).abs().max() <= 1e-5
    unmerge(model)
    assert (logits(model, x) - lora_out).abs().max() <= 1e-5
    with disable_lora(model):
        assert (logits(model, x) - base_out).abs().max() <= 1e-5
    assert (logits(model, x) - lora_out).abs().max() <= 1e-5  # back on after the block
    plain = merge_and_unload(model)
    assert not any(isinstance(m, LoRALinear) for m in plain.modules())
    assert (logits(plain, x) - lora_out).abs().max() <= 1e-5


def test_disable_is_exactly_base():
    base = tiny_model("llama")
    x = torch.randint(0, 256, (2, 16))
    model = trained_lora(copy.deepcopy(base))
    with disable_lora(model):
        assert torch.equal(logits(model, x), logits(base, x))


def test_unmerge_restores_weights():
    model = trained_lora(tiny_model("llama"))
    w0 = {n: m.base.weight.clone() for n, m in lora_modules(model).items()}
    unmerge(merge(model))
    for n, m in lora_modules(model).items():
        torch.testing.assert_close(m.base.weight, w0[n], atol=1e-6, rtol=0)


def test_merge_in_bf16_casts_once():
    layer = LoRALinear(nn.Linear(64, 64).to(torch.bfloat16), r=4, alpha=8)
    nn.init.normal_(layer.lora_B, std=0.1)
    want = (layer.base.weight.float() + layer.delta_weight()).to(torch.bfloat16)
    wrapper = nn.Sequential(layer)
    merge(wrapper)
    assert torch.equal(layer.base.weight, want)


@pytest.mark.slow
def test_merge_equivalence_smollm2(smollm):
    model, tok = smollm
    model = trained_lora(copy.deepcopy(model), r=16, std=0.02)
    enc = tok(["LoRA merges into W with no extra latency.", "What is 436 + 760?"],
              return_tensors="pt", padding=True)

    def out(m):
        with torch.no_grad():
            return m(**enc).logits

    # The identity W x + s·B(A x) = (W + s·B·A) x on every one of the 210 real layers, in float64.
    # (Not through the whole float64 model: its RMSNorm and rotary code compute in float32.)
    m64 = copy.deepcopy(model).double()
    before64 = out(m64)
    g = torch.Generator().manual_seed(1)
    layers = lora_modules(m64)
    xs = {n: torch.randn(3, m.in_features, generator=g, dtype=torch.float64) for n, m in layers.items()}
    with torch.no_grad():
        ys = {n: m(xs[n]) for n, m in layers.items()}
        merge(m64)
        rel = max(((m(xs[n]) - ys[n]).abs().max() / ys[n].abs().max()).item() for n, m in layers.items())
    assert rel <= 1e-12, rel
    # In float32 the two sides round differently. SmolLM2's residual stream reaches |h| ≈ 25,000
    # ("massive activations"), so one float32 forward is itself ~1e-4 from the float64 one, and
    # merged vs unmerged differ by about as much (0.9–3.3× over four random adapters, ≤ 2e-4).
    before = out(model)
    fp32_error = (before.double() - before64).abs().max().item()
    merge(model)
    err = (out(model) - before).abs().max().item()
    assert err <= 5e-4 and err <= 5 * fp32_error, (err, fp32_error)
    unmerge(model)
    assert (out(model) - before).abs().max().item() <= 2e-4
    with disable_lora(model):
        assert (out(model) - out(smollm[0])).abs().max().item() <= 2e-4


def test_bad_merge_calls():
    model = trained_lora(tiny_model("llama"))
    with pytest.raises(ValueError, match="not merged"):
        unmerge(model)
    merge(model)
    w = {n: m.base.weight.clone() for n, m in lora_modules(model).items()}
    with pytest.raises(ValueError, match="already merged"):
        merge(model)
    with pytest.raises(ValueError, match="unmerge"):
        with disable_lora(model):
            pass
    assert all(torch.equal(m.base.weight, w[n]) for n, m in lora_modules(model).items())
    with pytest.raises(ValueError, match="no LoRA layers"):
        merge(tiny_model("llama"))
