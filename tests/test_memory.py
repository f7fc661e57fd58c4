"""lora_mini.memory: the training-memory arithmetic agrees with tensors measured in a real step."""
import pytest
import torch

from lora_mini import apply_lora, count_parameters, tiny_model
from lora_mini.memory import (SHAPES, ModelShape, activation_bytes, base_params, lora_params,
                              measure_training_step, training_memory)

TARGETS = [None, "all-linear", ["q_proj", "v_proj"], ["gate_proj", "up_proj", "down_proj"],
           ["o_proj"], ["up_proj"], ["k_proj", "down_proj"]]


def _model():
    # distinct sizes so that a wrong term cannot hide: h=96, i=160, 6 heads × 20, 2 kv heads, GQA
    return tiny_model("llama", vocab_size=1000, hidden_size=96, intermediate_size=160, num_attention_heads=6,
                      num_key_value_heads=2, head_dim=20, num_hidden_layers=3)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain"])
@pytest.mark.parametrize("targets", TARGETS, ids=str)
def test_formula_matches_measured_step(targets, fused):
    from lora_mini.fast import fast_path
    torch.manual_seed(0)
    model = _model()
    method = "full" if targets is None else "lora"
    if targets is not None:
        apply_lora(model, targets, r=8, alpha=16)
    shape = ModelShape.from_config(model.config)
    with fast_path(fused):
        measured = measure_training_step(model, torch.randint(0, 1000, (2, 40)))
    formula = training_memory(shape, method, r=8, targets=targets or "all-linear", batch=2, seq=40,
                              dtype="fp32", fused=fused)
    for key in ("weights", "gradients", "activations"):
        assert measured[key] == formula[key], (key, measured[key], formula[key])
    # AdamW also keeps one 4-byte step counter per parameter tensor
    assert 0 <= measured["optimizer"] - formula["optimizer"] <= 4 * 200
    assert measured["trainable"] == formula["trainable"]


def test_param_counts_of_published_models():
    assert base_params(SHAPES["llama-2-7b"]) == 6_738_415_616          # Llama-2-7B model card: 6.74B
    assert base_params(SHAPES["smollm2-135m"]) == 134_515_008
    assert 174e9 < base_params(SHAPES["gpt3-175b"]) < 176e9
    # Hu et al. Table 4: GPT-3 LoRA on Wq, Wv with r=1 -> 4.7M trainable parameters
    assert round(lora_params(SHAPES["gpt3-175b"], 1, ["q_proj", "v_proj"]) / 1e6, 1) == 4.7


def test_lora_params_match_apply_lora():
    model = tiny_model("llama")
    apply_lora(model, "all-linear", r=4, alpha=8)
    trainable, total = count_parameters(model)
    shape = ModelShape.from_config(model.config)
    assert trainable == lora_params(shape, 4, "all-linear")
    assert total - trainable == base_params(shape)


def test_bad_input_names_the_problem():
    shape = SHAPES["smollm2-135m"]
    with pytest.raises(ValueError, match="targets"):
        lora_params(shape, 4, "attn")
    with pytest.raises(ValueError, match="c_attn"):
        lora_params(shape, 4, ["c_attn"])
    with pytest.raises(ValueError, match="method"):
        training_memory(shape, "qlora")
    with pytest.raises(NotImplementedError):
        activation_bytes(SHAPES["gpt3-175b"], "full", 1, 16)


def test_lora_needs_far_less_memory_at_7b():
    full = training_memory(SHAPES["llama-2-7b"], "full", batch=1, seq=512)
    lora = training_memory(SHAPES["llama-2-7b"], "lora", r=16, batch=1, seq=512)
    assert full["weights"] + full["gradients"] + full["optimizer"] == 16 * full["params"]
    assert lora["total"] < full["total"] / 3
