"""apply_lora: target matching, freezing, parameter counts (= PEFT's), all-or-nothing errors."""
import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from lora_mini import LoRALinear, apply_lora, count_parameters, lora_modules, parameter_report, tiny_model


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert not lora_modules(model)


@pytest.mark.parametrize("kind,targets,expected", [
    ("llama", ["q_proj", "v_proj"], 4),
    ("llama", "all-linear", 14),
    ("llama", r"model\.layers\.\d+\.mlp\.(gate|up)_proj", 4),
    ("gpt2", ["c_attn"], 2),
    ("gpt2", "all-linear", 8),
])
def test_targets(kind, targets, expected):
    model = apply_lora(tiny_model(kind), targets, r=2, alpha=4)
    assert len(lora_modules(model)) == expected
    assert "lm_head" not in " ".join(lora_modules(model))


def test_freezes_all_but_lora_and_starts_at_base():
    model = tiny_model("llama")
    x = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        want = model(x).logits
    apply_lora(model, "all-linear", r=4, alpha=8)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    with torch.no_grad():
        assert torch.equal(model(x).logits, want)          # B = 0
    model(x, labels=x).loss.backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, n


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("targets", ["all-linear", "attn"])
@pytest.mark.parametrize("r", [1, 8])
def test_counts_equal_peft(kind, targets, r):
    if targets == "attn":
        targets = ["q_proj", "k_proj", "v_proj", "o_proj"] if kind == "llama" else ["c_attn"]
    ours = count_parameters(apply_lora(tiny_model(kind), targets, r=r, alpha=2 * r))
    peft_model = get_peft_model(tiny_model(kind), LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets))
    assert ours == peft_model.get_nb_trainable_parameters()


@pytest.mark.slow
def test_smollm2_r16_all_linear_count(smollm):
    model = copy.deepcopy(smollm[0])
    assert count_parameters(model) == (134_515_008, 134_515_008)
    apply_lora(model, "all-linear", r=16, alpha=32)
    trainable, total = count_parameters(model)
    assert trainable == 4_884_480
    peft_model = get_peft_model(copy.deepcopy(smollm[0]), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    assert (trainable, total) == peft_model.get_nb_trainable_parameters()


def test_parameter_report():
    text = parameter_report(apply_lora(tiny_model("llama"), "all-linear", r=2, alpha=2))
    assert "LoRALinear.lora_A" in text and "Embedding" in text
    trainable, total = count_parameters(apply_lora(tiny_model("llama"), "all-linear", r=2, alpha=2))
    assert f"{trainable:,} of {total:,}" in text


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(target_modules=["q_prj"]), ValueError, r"match no module.*'q_prj' \(closest: 'q_proj'"),
    (dict(target_modules=["mlp"]), TypeError, "LlamaMLP"),
    (dict(target_modules=["embed_tokens"]), TypeError, "Embedding"),
    (dict(target_modules="model.(", ), ValueError, "not a valid regex"),
    (dict(target_modules=[]), ValueError, "empty"),
    (dict(target_modules=42), TypeError, "module-name suffixes"),
    (dict(target_modules=["q_proj"], r=0), ValueError, "positive integer"),
    (dict(target_modules=["q_proj"], alpha=0), ValueError, "alpha"),
    (dict(target_modules=["q_proj"], dropout=1.5), ValueError, "dropout"),
    (dict(target_modules=["q_proj", "mlp"]), TypeError, "LlamaMLP"),   # partly valid: still nothing changes
])
def test_bad_input_leaves_model_unchanged(kwargs, error, match):
    model = tiny_model("llama")
    before = state(model)
    kwargs = {"r": 2, "alpha": 4, **kwargs}
    with pytest.raises(error, match=match):
        apply_lora(model, **kwargs)
    assert_unchanged(model, before)
    assert all(p.requires_grad for p in model.parameters())


def test_applying_twice_is_an_error_and_changes_nothing():
    model = apply_lora(tiny_model("llama"), ["q_proj"], r=2, alpha=4)
    before = state(model)
    for targets in (["q_proj"], "all-linear", r".*q_proj\.base"):
        with pytest.raises(ValueError, match="already has LoRA"):
            apply_lora(model, targets, r=2, alpha=4)
    assert model.state_dict().keys() == before.keys()
    assert sum(isinstance(m, LoRALinear) for m in model.modules()) == 2
    # adding LoRA to *other* modules of the same model is fine
    apply_lora(model, ["v_proj"], r=2, alpha=4)
    assert len(lora_modules(model)) == 4
