"""LoRA variants: DoRA, PiSSA, rsLoRA, LoRA+, quantized base (tiny models, CPU)."""
import copy

import pytest
import torch

from lora_mini import lora_modules as variant_layers
from lora_mini import merge, tiny_model, unmerge
from lora_mini.variants import DoRALinear, apply_variant, fake_quantize, loraplus_optimizer, quantize_base_


def _ids(seed=0, b=2, t=7):
    return torch.randint(0, 256, (b, t), generator=torch.Generator().manual_seed(seed))


def _perturb(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("variant", ["dora", "pissa", "rslora", "lora"])
def test_variant_at_init_equals_base(kind, variant):
    base = tiny_model(kind)
    model = apply_variant(copy.deepcopy(base), "all-linear", r=4, alpha=8, variant=variant)
    x = _ids()
    with torch.no_grad():
        ref, out = base(x).logits, model(x).logits
    assert (out - ref).abs().max() < 1e-4, variant


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("variant", ["dora", "pissa"])
def test_merge_unmerge_equivalence(kind, variant):
    model = apply_variant(tiny_model(kind), "all-linear", r=4, alpha=8, variant=variant)
    _perturb(model)
    x = _ids()
    with torch.no_grad():
        before = model(x).logits
        w0 = {n: m.base.weight.clone() for n, m in variant_layers(model).items()}
        merge(model)
        merged = model(x).logits
        unmerge(model)
        after = model(x).logits
    assert (merged - before).abs().max() < 1e-4
    assert (after - before).abs().max() < 1e-4
    assert all(torch.allclose(m.base.weight, w0[n], atol=1e-5) for n, m in variant_layers(model).items())


def test_dora_changes_output_and_magnitude_trains():
    model = apply_variant(tiny_model(), ["q_proj", "v_proj"], r=4, alpha=8, variant="dora")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(n.endswith(("lora_A", "lora_B", "lora_magnitude")) for n in names)
    assert sum(n.endswith("lora_magnitude") for n in names) == 4   # 2 layers × (q, v)
    loss = model(_ids(), labels=_ids()).loss
    loss.backward()
    mags = [p for n, p in model.named_parameters() if n.endswith("lora_magnitude")]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mags)


def test_dora_matches_formula():
    layer = DoRALinear(torch.nn.Linear(6, 5), r=2, alpha=4)
    _perturb(layer)
    x = torch.randn(3, 6)
    W = layer.base.weight + layer.scaling * layer.lora_B @ layer.lora_A
    W = layer.lora_magnitude[:, None] * W / W.norm(dim=1, keepdim=True)
    assert torch.allclose(layer(x), x @ W.T + layer.base.bias, atol=1e-5)


def test_pissa_puts_top_singular_directions_in_BA():
    model = apply_variant(tiny_model(), ["q_proj"], r=4, alpha=8, variant="pissa")
    layer = variant_layers(model)["model.layers.0.self_attn.q_proj"]
    w = tiny_model().model.layers[0].self_attn.q_proj.weight
    S = torch.linalg.svdvals(w)
    delta = layer.delta_weight()
    assert torch.allclose(torch.linalg.svdvals(delta)[:4], S[:4], atol=1e-4)
    # the residual has W's remaining singular values
    assert torch.allclose(torch.linalg.svdvals(layer.base.weight)[:4], S[4:8], atol=1e-4)


def test_rslora_scaling_and_bad_variant():
    model = apply_variant(tiny_model(), ["q_proj"], r=16, alpha=8, variant="rslora")
    assert all(abs(m.scaling - 2.0) < 1e-9 for m in variant_layers(model).values())
    with pytest.raises(ValueError, match="variant must be one of"):
        apply_variant(tiny_model(), ["q_proj"], r=4, alpha=8, variant="qlora")


def test_loraplus_optimizer_groups():
    model = apply_variant(tiny_model(), "all-linear", r=4, alpha=8, variant="loraplus")
    opt = loraplus_optimizer(model, lr=1e-3, ratio=16)
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == [1e-3, 16e-3]
    b_group = max(opt.param_groups, key=lambda g: g["lr"])
    b_params = {id(p) for n, p in model.named_parameters() if n.endswith("lora_B")}
    assert {id(p) for p in b_group["params"]} == b_params
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="no trainable lora_B"):
        loraplus_optimizer(tiny_model(), lr=1e-3)


def test_fake_quantize_levels_and_error():
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))
    for kind, n_levels in [("nf4", 16), ("int4", 15)]:
        q = fake_quantize(w, kind, block=64)
        blocks, qb = w.reshape(-1, 64), q.reshape(-1, 64)
        c = blocks.abs().amax(1, keepdim=True)
        assert max(len(torch.unique(r)) for r in (qb / c).round(decimals=5)) <= n_levels
        assert torch.allclose(qb.abs().amax(1, keepdim=True), c)   # absmax is kept exactly
        rel = ((q - w).norm() / w.norm()).item()
        assert 0.01 < rel < 0.15, (kind, rel)
    # NF4 fits normal weights better than uniform int4
    e_nf4 = (fake_quantize(w, "nf4") - w).norm()
    e_int4 = (fake_quantize(w, "int4") - w).norm()
    assert e_nf4 < e_int4
    with pytest.raises(ValueError, match="multiple of block"):
        fake_quantize(torch.randn(10), block=64)


def test_quantize_base_then_lora():
    base = tiny_model()
    model = copy.deepcopy(base)
    info = quantize_base_(model, kind="nf4")
    assert info["layers"] == 14 and 0 < info["rel_error"] < 0.2 and info["bits_per_param"] == 4.5
    quantized = copy.deepcopy(model)
    for name, m in base.named_modules():
        if name.endswith("_proj"):                                  # every targeted W is its 4-bit copy
            assert torch.equal(model.get_submodule(name).weight, fake_quantize(m.weight, "nf4"))
    apply_variant(model, "all-linear", r=4, alpha=8)
    x = _ids()
    with torch.no_grad():
        lora, q, ref = model(x).logits, quantized(x).logits, base(x).logits
    assert torch.equal(lora, q)                                     # LoRA at init = the quantized base
    rel = ((q - ref).norm() / ref.norm()).item()
    assert 1e-3 < rel < 0.5, rel                                    # which differs from the original


def test_pissa_to_lora_is_the_update_relative_to_W():
    from lora_mini.variants import is_pissa, pissa_init_, pissa_to_lora
    from lora_mini.layers import LoRALinear

    base = torch.nn.Linear(12, 10)
    w0 = base.weight.detach().clone()
    layer = LoRALinear(base, r=3, alpha=6)
    keys = set(layer.state_dict())
    pissa_init_(layer)
    assert is_pissa(layer) and set(layer.state_dict()) == keys    # A₀, B₀ are not saved in state_dict
    _perturb(layer)                                                # "training"
    a, b = pissa_to_lora(layer)
    assert a.shape == (6, 12) and b.shape == (10, 6)
    trained_w = layer.base.weight + layer.scaling * layer.lora_B @ layer.lora_A   # W_res + s·B·A
    assert torch.allclose(w0 + layer.scaling * b @ a, trained_w, atol=1e-5)
    assert torch.linalg.matrix_rank(b @ a) <= 6
    with pytest.raises(ValueError, match="already PiSSA"):
        pissa_init_(layer)
    with pytest.raises(ValueError, match="not PiSSA-initialized"):
        pissa_to_lora(LoRALinear(torch.nn.Linear(12, 10), r=3, alpha=6))


def test_dora_with_rslora():
    model = apply_variant(tiny_model(), ["q_proj"], r=16, alpha=8, variant="dora", use_rslora=True)
    layers = variant_layers(model)
    assert all(isinstance(m, DoRALinear) and abs(m.scaling - 2.0) < 1e-9 for m in layers.values())
