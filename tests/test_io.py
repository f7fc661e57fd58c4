"""save_adapter / load_adapter: own format, PEFT format both ways, and every bad input."""
import copy
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from lora_mini import (adapter_bytes, apply_lora, load_adapter, lora_modules, merge, save_adapter,
                       tiny_model)


def trained(kind="llama", targets="all-linear", r=4, seed=1, **kw):
    model = apply_lora(tiny_model(kind), targets, r=r, alpha=2 * r, **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_modules(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)
    return model


X = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))


def logits(model):
    with torch.no_grad():
        return model(X).logits


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("fmt", ["lora_mini", "peft"])
def test_round_trip(tmp_path, kind, fmt):
    model = trained(kind, use_rslora=(fmt == "peft"))
    save_adapter(model, tmp_path, format=fmt)
    fresh = load_adapter(tiny_model(kind), tmp_path)
    assert torch.equal(logits(fresh), logits(model))
    assert not any(p.requires_grad for n, p in fresh.named_parameters() if "lora_" not in n)
    assert adapter_bytes(tmp_path) > 0


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_peft_loads_ours(tmp_path, kind):
    model = trained(kind, targets=["q_proj", "v_proj"] if kind == "llama" else ["c_attn", "c_fc"])
    save_adapter(model, tmp_path, format="peft")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["fan_in_fan_out"] == (kind == "gpt2")
    peft_model = PeftModel.from_pretrained(tiny_model(kind), tmp_path)
    torch.testing.assert_close(logits(peft_model), logits(model), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("rslora", [False, True])
def test_we_load_peft(tmp_path, kind, rslora):
    peft_model = get_peft_model(tiny_model(kind), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                             use_rslora=rslora))
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.1)
    peft_model.save_pretrained(tmp_path)
    ours = load_adapter(tiny_model(kind), tmp_path)
    assert len(lora_modules(ours)) == (14 if kind == "llama" else 8)
    torch.testing.assert_close(logits(ours), logits(peft_model), atol=1e-6, rtol=0)


def test_switching_adapters(tmp_path):
    a, b = trained(seed=1), trained(seed=2)
    save_adapter(a, tmp_path / "a")
    save_adapter(b, tmp_path / "b")
    model = load_adapter(tiny_model("llama"), tmp_path / "a")
    assert torch.equal(logits(model), logits(a))
    load_adapter(model, tmp_path / "b")
    assert torch.equal(logits(model), logits(b))
    load_adapter(model, tmp_path / "a")
    assert torch.equal(logits(model), logits(a))


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_rank_or_shape_mismatch(tmp_path):
    save_adapter(trained(r=4), tmp_path / "r4")
    target = trained(r=8)                       # same modules, other rank
    before = snapshot(target)
    with pytest.raises(ValueError, match="r=8"):
        load_adapter(target, tmp_path / "r4")
    assert_same(target, before)
    bigger = tiny_model("llama", hidden_size=128, intermediate_size=256)   # other shapes
    before = snapshot(bigger)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_adapter(bigger, tmp_path / "r4")
    assert_same(bigger, before)
    assert not lora_modules(bigger)


def test_other_architecture_or_base(tmp_path):
    save_adapter(trained("llama"), tmp_path)
    gpt2 = tiny_model("gpt2")
    with pytest.raises(ValueError, match="trained on 'tiny-llama'"):
        load_adapter(gpt2, tmp_path)
    with pytest.raises(ValueError, match="no module"):
        load_adapter(gpt2, tmp_path, check_base=False)
    assert not lora_modules(gpt2)
    other = tiny_model("llama")
    other.config.name_or_path = "someone/else"
    with pytest.raises(ValueError, match="trained on 'tiny-llama'"):
        load_adapter(other, tmp_path)
    assert not lora_modules(other)


def test_corrupt_and_pickled_files(tmp_path):
    save_adapter(trained(), tmp_path)
    data = (tmp_path / "adapter.safetensors").read_bytes()
    (tmp_path / "adapter.safetensors").write_bytes(data[: len(data) // 2])
    model = tiny_model("llama")
    before = snapshot(model)
    with pytest.raises(ValueError, match="not a valid safetensors"):
        load_adapter(model, tmp_path)
    assert_same(model, before)
    (tmp_path / "adapter.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, tmp_path / "adapter_model.bin")
    with pytest.raises(FileNotFoundError, match="never loaded"):
        load_adapter(model, tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_adapter(model, tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="neither"):
        load_adapter(model, empty)
    assert_same(model, before)


def test_merged_model_saves_the_same_adapter(tmp_path):
    model = trained()
    save_adapter(model, tmp_path / "a")
    save_adapter(merge(copy.deepcopy(model)), tmp_path / "b")
    assert (tmp_path / "a" / "adapter.safetensors").read_bytes() == (tmp_path / "b" / "adapter.safetensors").read_bytes()


def test_save_without_lora_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no LoRA layers"):
        save_adapter(tiny_model("llama"), tmp_path)
    with pytest.raises(ValueError, match="format"):
        save_adapter(trained(), tmp_path, format="bin")


@pytest.mark.slow
def test_smollm2_peft_round_trip(smollm, tmp_path):
    model, tok = smollm
    ours = apply_lora(copy.deepcopy(model), "all-linear", r=16, alpha=32)
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in lora_modules(ours).values():
            layer.lora_B.normal_(std=0.02)
    save_adapter(ours, tmp_path, format="peft")
    assert adapter_bytes(tmp_path) < 25_000_000        # ~19.5 MB of float32 A and B, not 540 MB
    peft_model = PeftModel.from_pretrained(copy.deepcopy(model), tmp_path)
    enc = tok(["What is 436 + 760?"], return_tensors="pt")
    with torch.no_grad():
        diff = (peft_model(**enc).logits - ours(**enc).logits).abs().max().item()
    assert diff <= 1e-4, diff   # float32 noise amplified by massive activations (see test_merge)


# ----------------------------------------------------------------------------- DoRA

from safetensors.torch import load_file  # noqa: E402

from lora_mini.variants import DoRALinear, apply_variant  # noqa: E402

TARGETS = {"llama": ["q_proj", "v_proj", "down_proj"], "gpt2": ["c_attn", "c_fc"]}


def perturbed(model, seed=1):
    """Random values in every trainable tensor (A, B, DoRA's m), as if trained."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def dora_trained(kind="llama", seed=1, **kw):
    return perturbed(apply_variant(tiny_model(kind), TARGETS[kind], r=4, alpha=8, variant="dora", **kw), seed)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("fmt", ["lora_mini", "peft"])
def test_dora_round_trip(tmp_path, kind, fmt):
    model = dora_trained(kind, use_rslora=(fmt == "peft"))
    save_adapter(model, tmp_path, format=fmt)
    cfg = json.loads((tmp_path / ("lora_config.json" if fmt == "lora_mini" else "adapter_config.json")).read_text())
    assert cfg["use_dora"] is True
    keys = load_file(str(tmp_path / ("adapter.safetensors" if fmt == "lora_mini" else "adapter_model.safetensors")))
    name = next(iter(lora_modules(model)))
    key = f"{name}.lora_magnitude" if fmt == "lora_mini" else f"base_model.model.{name}.lora_magnitude_vector"
    assert torch.equal(keys[key], lora_modules(model)[name].lora_magnitude.detach())
    fresh = load_adapter(tiny_model(kind), tmp_path)
    layers = lora_modules(fresh)
    assert layers.keys() == lora_modules(model).keys() and all(isinstance(m, DoRALinear) for m in layers.values())
    assert torch.equal(logits(fresh), logits(model))
    assert {n.rsplit(".", 1)[-1] for n, p in fresh.named_parameters() if p.requires_grad} == \
        {"lora_A", "lora_B", "lora_magnitude"}
    assert not torch.allclose(logits(fresh), logits(tiny_model(kind)), atol=1e-3)   # the adapter does something


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_peft_loads_our_dora(tmp_path, kind):
    model = dora_trained(kind)
    save_adapter(model, tmp_path, format="peft")
    peft_model = PeftModel.from_pretrained(tiny_model(kind), tmp_path)
    mags = {n: p for n, p in peft_model.named_parameters() if "lora_magnitude_vector" in n}
    assert len(mags) == len(lora_modules(model))
    for name, layer in lora_modules(model).items():   # PEFT took our m, not its own ‖W + s·B·A‖ init
        assert torch.equal(mags[f"base_model.model.{name}.lora_magnitude_vector.default.weight"],
                           layer.lora_magnitude.detach())
    torch.testing.assert_close(logits(peft_model), logits(model), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind,rslora", [("llama", False), ("llama", True), ("gpt2", False)])
def test_we_load_peft_dora(tmp_path, kind, rslora):
    peft_model = get_peft_model(tiny_model(kind), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                             use_dora=True, use_rslora=rslora))
    perturbed(peft_model, seed=3)
    peft_model.save_pretrained(tmp_path)
    ours = load_adapter(tiny_model(kind), tmp_path)
    layers = lora_modules(ours)
    assert len(layers) == (14 if kind == "llama" else 8) and all(isinstance(m, DoRALinear) for m in layers.values())
    assert all(m.use_rslora == rslora for m in layers.values())
    torch.testing.assert_close(logits(ours), logits(peft_model), atol=1e-5, rtol=0)


def test_dora_and_plain_lora_do_not_mix(tmp_path):
    save_adapter(dora_trained(seed=1), tmp_path / "dora")
    save_adapter(trained(targets=TARGETS["llama"]), tmp_path / "lora")
    plain = load_adapter(tiny_model("llama"), tmp_path / "lora")
    before = snapshot(plain)
    with pytest.raises(ValueError, match="DoRA adapter but .* plain LoRA layer"):
        load_adapter(plain, tmp_path / "dora")
    assert_same(plain, before)
    dora = load_adapter(tiny_model("llama"), tmp_path / "dora")
    before = snapshot(dora)
    with pytest.raises(ValueError, match="plain LoRA adapter but .* DoRA layer"):
        load_adapter(dora, tmp_path / "lora")
    assert_same(dora, before)
    # DoRA -> DoRA switching copies A, B and m
    other = dora_trained(seed=2)
    save_adapter(other, tmp_path / "dora2")
    load_adapter(dora, tmp_path / "dora2")
    assert torch.equal(logits(dora), logits(other))


def test_dora_config_and_weights_must_agree(tmp_path):
    save_adapter(dora_trained(), tmp_path)
    cfg_file = tmp_path / "lora_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**cfg, "use_dora": False}))
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="kind='dora' but use_dora=False"):
        load_adapter(model, tmp_path)
    cfg_file.write_text(json.dumps({**cfg, "kind": "lora", "use_dora": False}))
    with pytest.raises(ValueError, match="lora_magnitude.* says kind 'lora' .use_dora: False"):
        load_adapter(model, tmp_path)
    cfg_file.write_text(json.dumps(cfg))
    tensors = load_file(str(tmp_path / "adapter.safetensors"))
    dropped = next(k for k in tensors if k.endswith("lora_magnitude"))
    from safetensors.torch import save_file
    save_file({k: v for k, v in tensors.items() if k != dropped}, str(tmp_path / "adapter.safetensors"))
    with pytest.raises(ValueError, match="incomplete"):
        load_adapter(model, tmp_path)
    assert not lora_modules(model)


# ----------------------------------------------------------------------------- PiSSA -> LoRA on the original W

def pissa_trained(kind="llama", seed=1, **kw):
    return perturbed(apply_variant(tiny_model(kind), "all-linear", r=4, alpha=8, variant="pissa", **kw), seed)


@pytest.mark.parametrize("kind,fmt,rslora", [("llama", "lora_mini", False), ("gpt2", "lora_mini", False),
                                             ("llama", "peft", True)])
def test_pissa_converted_loads_into_original_model(tmp_path, kind, fmt, rslora):
    model = pissa_trained(kind, use_rslora=rslora)
    save_adapter(model, tmp_path, format=fmt, convert_pissa=True)
    fresh = load_adapter(tiny_model(kind), tmp_path)      # the ORIGINAL W, not W_res
    layer, old = next(iter(lora_modules(fresh).values())), next(iter(lora_modules(model).values()))
    assert layer.r == 8 and layer.scaling == pytest.approx(old.scaling, rel=1e-12)
    assert layer.alpha == pytest.approx(8 * (2 ** 0.5 if rslora else 2))
    torch.testing.assert_close(logits(fresh), logits(model), atol=1e-5, rtol=0)
    assert not torch.allclose(logits(fresh), logits(tiny_model(kind)), atol=1e-3)


def test_peft_loads_converted_pissa(tmp_path):
    model = pissa_trained("llama")
    save_adapter(model, tmp_path, format="peft", convert_pissa=True)
    peft_model = PeftModel.from_pretrained(tiny_model("llama"), tmp_path)
    torch.testing.assert_close(logits(peft_model), logits(model), atol=1e-5, rtol=0)


def test_pissa_conversion_matches_peft(tmp_path):
    """PEFT's own PiSSA -> LoRA conversion (save_pretrained with path_initial_model_for_weight_conversion)."""
    ours = apply_variant(tiny_model("llama"), TARGETS["llama"], r=4, alpha=8, variant="pissa")
    theirs = get_peft_model(tiny_model("llama"), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS["llama"],
                                                            init_lora_weights="pissa"))
    theirs.peft_config["default"].init_lora_weights = True       # as PEFT's docs: save A₀, B₀ first
    theirs.save_pretrained(tmp_path / "pissa_init")
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, layer in lora_modules(ours).items():           # the same "training" step on both
            peft_layer = theirs.base_model.model.get_submodule(name)
            for which in ("lora_A", "lora_B"):
                step = 0.1 * torch.randn(getattr(layer, which).shape, generator=g)
                getattr(layer, which).add_(step)
                getattr(peft_layer, which)["default"].weight.copy_(getattr(layer, which))
    theirs.save_pretrained(tmp_path / "peft", path_initial_model_for_weight_conversion=str(tmp_path / "pissa_init"))
    save_adapter(ours, tmp_path / "ours", format="peft", convert_pissa=True)
    cfg_p, cfg_o = (json.loads((tmp_path / d / "adapter_config.json").read_text()) for d in ("peft", "ours"))
    assert (cfg_o["r"], cfg_o["lora_alpha"], cfg_o["init_lora_weights"]) == \
        (cfg_p["r"], cfg_p["lora_alpha"], cfg_p["init_lora_weights"]) == (8, 16, True)
    t_p, t_o = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in ("peft", "ours"))
    assert t_p.keys() == t_o.keys()
    for k in t_p:   # A₀, B₀ come from the same SVD up to float32 rounding
        torch.testing.assert_close(t_o[k], t_p[k], atol=1e-5, rtol=0)


def test_pissa_save_and_load_refusals(tmp_path):
    model = pissa_trained("llama")
    with pytest.raises(ValueError, match="convert_pissa=True"):
        save_adapter(model, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="no PiSSA layers"):
        save_adapter(trained(), tmp_path / "b", convert_pissa=True)
    save_adapter(trained(), tmp_path / "plain")                 # a plain r=4 adapter on W
    before = snapshot(model)
    with pytest.raises(ValueError, match="PiSSA layer"):
        load_adapter(model, tmp_path / "plain")                 # model's W is W_res
    assert_same(model, before)
    # PEFT's unconverted PiSSA adapter (init_lora_weights="pissa") is refused by name
    peft_model = get_peft_model(tiny_model("llama"), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"],
                                                                init_lora_weights="pissa"))
    peft_model.save_pretrained(tmp_path / "peft_pissa")
    fresh = tiny_model("llama")
    with pytest.raises(ValueError, match="init_lora_weights='pissa'"):
        load_adapter(fresh, tmp_path / "peft_pissa")
    assert not lora_modules(fresh)
