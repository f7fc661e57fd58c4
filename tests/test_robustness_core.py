"""Regression tests for the core's bugs of the redesign and reliability work (tiny models, CPU).

Each test failed on the code before the fix (DoRA's impure delta_weight, DoRA bypassing base(x),
silent partial target lists, dropout on in eval mode, NaN adapters, mixed formats in a folder,
missing modules, tied lm_head, merged bases, oversized ranks, DoRA precision and drift,
half-written saves).
"""
import copy
import json
import warnings

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from lora_mini import LoRALinear, apply_lora, load_adapter, lora_modules, merge, merge_and_unload, save_adapter, tiny_model, unmerge
from lora_mini.variants import DoRALinear, apply_variant

X = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(0))


def logits(model):
    with torch.no_grad():
        return model(X).logits


def perturbed(model, seed=1, std=0.1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.requires_grad:
                p.add_(std * torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype))
    return model


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(model, before):
    after = model.state_dict()
    return after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


# ----------------------------------------------------------------------------- issue 13, items 1 and 2: DoRA

def test_dora_delta_weight_is_pure_merged_and_unmerged():
    model = perturbed(apply_variant(tiny_model(), ["q_proj", "v_proj"], r=4, alpha=8, variant="dora"))
    layer = next(iter(lora_modules(model).values()))
    w0 = layer.base.weight.clone()
    attrs = set(vars(layer))
    d1 = layer.delta_weight()
    assert set(vars(layer)) == attrs and torch.equal(layer.delta_weight(), d1)   # no copy kept "in case"
    merge(model)
    torch.testing.assert_close(layer.delta_weight(), d1, atol=1e-6, rtol=0)      # inspecting ΔW while merged...
    torch.testing.assert_close(layer.delta_weight(), d1, atol=1e-6, rtol=0)
    unmerge(model)                                                               # ...does not break unmerge
    assert torch.equal(layer.base.weight, w0)


class ShiftedLinear(nn.Linear):
    """A base with its own forward (as a quantized or wrapped layer has): W x + b + 0.5."""

    def forward(self, x):
        return super().forward(x) + 0.5


@pytest.mark.parametrize("cls", ["lora", "dora"])
def test_forward_goes_through_the_base_layer(cls):
    torch.manual_seed(0)
    base = ShiftedLinear(8, 6)
    layer = (DoRALinear if cls == "dora" else LoRALinear)(copy.deepcopy(base), r=2, alpha=4)
    x = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), base(x), atol=1e-6, rtol=0)         # B = 0: exactly the base


# ----------------------------------------------------------------------------- issue 14, items 1-2: targets

def test_every_listed_target_must_match_and_nothing_changes():
    model = tiny_model()
    before = state(model)
    for spec in (["q_proj", "v_prj"], "q_proj,v_prj"):
        with pytest.raises(ValueError, match=r"'v_prj' \(closest: 'v_proj'"):
            apply_lora(model, spec, r=2, alpha=4)
    assert same_state(model, before) and not lora_modules(model)


def test_comma_list_and_plain_name_strings_are_names():
    both = apply_lora(tiny_model(), "q_proj, v_proj", r=2, alpha=4)
    assert sorted({n.rsplit(".", 1)[-1] for n in lora_modules(both)}) == ["q_proj", "v_proj"]
    assert len(lora_modules(apply_lora(tiny_model(), "q_proj", r=2, alpha=4))) == 2


def test_no_layer_indices_as_suggestions():
    with pytest.raises(ValueError) as err:
        apply_lora(tiny_model(), ["nonexistent"], r=2, alpha=4)
    msg = str(err.value)
    assert "'0'" not in msg and "'1'" not in msg and "q_proj" in msg


# ----------------------------------------------------------------------------- item 3: dropout follows the mode

def test_new_layers_take_the_models_mode(tmp_path):
    from peft import LoraConfig, get_peft_model
    model = apply_lora(tiny_model().eval(), "all-linear", r=4, alpha=8, dropout=0.5)
    perturbed(model)
    assert not any(m.training for m in lora_modules(model).values())
    torch.testing.assert_close(logits(model), logits(model), atol=0, rtol=0)
    peft_model = get_peft_model(tiny_model(), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05,
                                                         target_modules=["q_proj", "v_proj"]))
    perturbed(peft_model)
    peft_model.save_pretrained(tmp_path)
    ours = load_adapter(tiny_model().eval(), tmp_path)
    first, second = logits(ours), logits(ours)
    assert torch.equal(first, second)
    torch.testing.assert_close(first, logits(peft_model.eval()), atol=1e-5, rtol=0)
    trained = load_adapter(tiny_model().train(), tmp_path)
    assert all(m.training for m in lora_modules(trained).values())


# ----------------------------------------------------------------------------- item 4: non-finite, checksum

def trained(seed=1, targets="all-linear"):
    return perturbed(apply_lora(tiny_model(), targets, r=4, alpha=8), seed)


def test_non_finite_adapters_are_refused(tmp_path):
    bad = trained()
    with torch.no_grad():
        next(iter(lora_modules(bad).values())).lora_B[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        save_adapter(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    save_adapter(trained(), tmp_path / "ok", format="peft")
    file = tmp_path / "ok" / "adapter_model.safetensors"
    tensors = load_file(str(file))
    key = next(k for k in tensors if k.endswith("lora_B.weight"))
    tensors[key][0, 0] = float("inf")
    save_file(tensors, str(file), metadata={"format": "pt"})
    model = tiny_model()
    before = state(model)
    with pytest.raises(ValueError, match="NaN or Inf"):
        load_adapter(model, tmp_path / "ok")
    assert same_state(model, before) and not lora_modules(model)


@pytest.mark.parametrize("fmt,file", [("lora_mini", "adapter.safetensors"), ("peft", "adapter_model.safetensors")])
def test_corrupt_data_region_is_refused(tmp_path, fmt, file):
    save_adapter(trained(), tmp_path, format=fmt)
    data = bytearray((tmp_path / file).read_bytes())
    data[-64:] = b"\xff" * 64                                        # 64 bytes of 0xFF in the data region
    (tmp_path / file).write_bytes(bytes(data))
    model = tiny_model()
    with pytest.raises(ValueError, match="checksum|sha256|NaN"):
        load_adapter(model, tmp_path)
    assert not lora_modules(model)


def test_tensors_of_another_save_do_not_pair_with_this_config(tmp_path):
    save_adapter(trained(seed=1), tmp_path / "a")
    save_adapter(trained(seed=2), tmp_path / "b")
    (tmp_path / "a" / "adapter.safetensors").write_bytes((tmp_path / "b" / "adapter.safetensors").read_bytes())
    with pytest.raises(ValueError, match="does not match lora_config.json"):
        load_adapter(tiny_model(), tmp_path / "a")


# ----------------------------------------------------------------------------- item 6: one format per folder, complete files

def test_saving_the_other_format_into_a_folder_replaces_it(tmp_path):
    old, new = trained(seed=1), trained(seed=2)
    save_adapter(old, tmp_path)
    save_adapter(new, tmp_path, format="peft")
    assert torch.equal(logits(load_adapter(tiny_model(), tmp_path)), logits(new))
    save_adapter(old, tmp_path)
    assert torch.equal(logits(load_adapter(tiny_model(), tmp_path)), logits(old))


def test_both_formats_in_one_folder_is_an_error(tmp_path):
    save_adapter(trained(), tmp_path / "a")
    save_adapter(trained(), tmp_path / "b", format="peft")
    for f in (tmp_path / "b").iterdir():
        (tmp_path / "a" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ValueError, match="both"):
        load_adapter(tiny_model(), tmp_path / "a")


@pytest.mark.parametrize("fmt", ["lora_mini", "peft"])
def test_a_file_missing_one_module_is_refused(tmp_path, fmt):
    save_adapter(trained(targets=["q_proj", "v_proj"]), tmp_path, format=fmt)
    file = tmp_path / ("adapter.safetensors" if fmt == "lora_mini" else "adapter_model.safetensors")
    tensors = load_file(str(file))
    gone = "model.layers.1.self_attn.v_proj"
    save_file({k: v for k, v in tensors.items() if gone not in k}, str(file), metadata={"format": "pt"})
    if fmt == "peft":   # as PEFT writes it: suffixes, not full names
        cfg_file = tmp_path / "adapter_config.json"
        cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "target_modules": ["q_proj", "v_proj"]}))
    else:               # a version-1 file (no checksum): the module list alone must catch it
        cfg_file = tmp_path / "lora_config.json"
        cfg = {**json.loads(cfg_file.read_text()), "version": 1}
        del cfg["tensors_sha256"]
        cfg_file.write_text(json.dumps(cfg))
    model = tiny_model()
    with pytest.raises(ValueError, match="incomplete"):
        load_adapter(model, tmp_path)
    assert not lora_modules(model)


def test_unknown_version_is_refused(tmp_path):
    save_adapter(trained(), tmp_path)
    cfg_file = tmp_path / "lora_config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        load_adapter(tiny_model(), tmp_path)


# ----------------------------------------------------------------------------- item 7: tied lm_head

def test_lora_on_a_tied_head_is_refused():
    model = tiny_model(tie_word_embeddings=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    before = state(model)
    with pytest.raises(ValueError, match="shares its weight with 'model.embed_tokens'"):
        apply_lora(model, ["lm_head"], r=2, alpha=4)
    assert same_state(model, before) and not lora_modules(model)


# ----------------------------------------------------------------------------- item 8: adapters on a merged base

def test_adapter_trained_after_merge_and_unload_does_not_load_on_the_original(tmp_path):
    merged = merge_and_unload(trained())
    save_adapter(trained_on(merged), tmp_path)
    with pytest.raises(ValueError, match="trained on 'tiny-llama\\+merged-lora'"):
        load_adapter(tiny_model(), tmp_path)
    load_adapter(copy.deepcopy(merged), tmp_path)          # the merged model itself is fine


def trained_on(model):
    return perturbed(apply_lora(copy.deepcopy(model), ["q_proj"], r=2, alpha=4), seed=3)


# ----------------------------------------------------------------------------- item 9: oversized rank

def test_a_rank_bigger_than_the_layers_warns():
    with pytest.warns(UserWarning, match="r=64 is too big"):
        apply_lora(tiny_model(), "all-linear", r=64, alpha=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_lora(tiny_model(), "all-linear", r=8, alpha=16)


# ----------------------------------------------------------------------------- item 10: DoRA precision, drift, unmerge

def test_dora_merges_float64_at_float64_precision():
    model = perturbed(apply_variant(tiny_model().double(), ["q_proj"], r=4, alpha=8, variant="dora"))
    layer = next(iter(lora_modules(model).values()))
    w = layer.base.weight.clone()
    v = w + layer.scaling * layer.lora_B.double() @ layer.lora_A.double()
    want = layer.lora_magnitude.double()[:, None] * v / v.norm(dim=1, keepdim=True)
    merge(model)
    torch.testing.assert_close(layer.base.weight, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("variant", ["dora", "lora"])
def test_repeated_merges_in_bf16_do_not_drift(variant):
    model = perturbed(apply_variant(tiny_model().to(torch.bfloat16), ["q_proj", "down_proj"], r=4, alpha=8,
                                    variant=variant))
    w0 = {n: m.base.weight.clone() for n, m in lora_modules(model).items()}
    for _ in range(101):
        unmerge(merge(model))
    assert all(torch.equal(m.base.weight, w0[n]) for n, m in lora_modules(model).items())


@pytest.mark.parametrize("variant", ["dora", "lora"])
def test_unmerge_after_B_changed_restores_W(variant):
    model = perturbed(apply_variant(tiny_model(), ["q_proj"], r=4, alpha=8, variant=variant))
    w0 = {n: m.base.weight.clone() for n, m in lora_modules(model).items()}
    merge(model)
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_B.add_(1.0)
    unmerge(model)
    assert all(torch.equal(m.base.weight, w0[n]) for n, m in lora_modules(model).items())


# ----------------------------------------------------------------------------- item 14: no half-written save

def test_a_crash_while_saving_leaves_the_previous_adapter(tmp_path, monkeypatch):
    old = trained(seed=1)
    save_adapter(old, tmp_path)
    import lora_mini.io as io_mod

    def boom(*a, **k):
        raise KeyboardInterrupt("killed while saving")

    new = trained(seed=2)
    monkeypatch.setattr(io_mod.json, "dumps", boom)   # the config is written after the tensors
    with pytest.raises(KeyboardInterrupt):
        save_adapter(new, tmp_path)
    monkeypatch.undo()
    assert torch.equal(logits(load_adapter(tiny_model(), tmp_path)), logits(old))


@pytest.mark.parametrize("existing", [True, False])
def test_a_crash_between_the_two_files_leaves_no_wrong_pair(tmp_path, monkeypatch, existing):
    """Killed after the tensors file is written: the old adapter (or nothing) loads, never a mix."""
    old = trained(seed=1)
    if existing:
        save_adapter(old, tmp_path / "a")
    import lora_mini.io as io_mod
    real, calls = io_mod._write, []

    def dies_second(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed while saving")
        real(path, data)

    new = trained(seed=2)
    monkeypatch.setattr(io_mod, "_write", dies_second)
    with pytest.raises(KeyboardInterrupt):
        save_adapter(new, tmp_path / "a")
    monkeypatch.undo()
    if existing:   # new tensors + old config: refused by the checksum, not loaded silently
        with pytest.raises(ValueError, match="does not match lora_config.json"):
            load_adapter(tiny_model(), tmp_path / "a")
    else:          # a new folder appears whole or not at all
        assert not (tmp_path / "a").exists() and not list(tmp_path.iterdir())
