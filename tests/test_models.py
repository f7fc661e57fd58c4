"""load_model (offline GGUF, explicit path, errors) and tiny_model."""
import pytest
import torch

from lora_mini import count_parameters, tiny_model
from lora_mini.models import default_dtype, find_gguf, load_model


def test_tiny_models():
    for kind in ("llama", "gpt2"):
        model = tiny_model(kind)
        out = model(torch.randint(0, 256, (1, 8))).logits
        assert out.shape == (1, 8, 256)
        assert not model.training
    assert torch.equal(tiny_model("llama").lm_head.weight, tiny_model("llama").lm_head.weight)  # seeded
    with pytest.raises(ValueError, match="llama' or 'gpt2"):
        tiny_model("bert")


def test_default_dtype():
    assert default_dtype("cpu") == torch.float32 and default_dtype("cuda") == torch.bfloat16


def test_gguf_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("LORA_MINI_GGUF", str(tmp_path / "nope.gguf"))
    with pytest.raises(FileNotFoundError, match="LORA_MINI_GGUF"):
        find_gguf()
    monkeypatch.delenv("LORA_MINI_GGUF")
    assert find_gguf().name == "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_smollm2_offline(smollm):
    model, tok = smollm
    assert model.config.name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert model.dtype == torch.float32 and not model.training
    assert count_parameters(model)[1] == 134_515_008
    assert not getattr(model, "is_quantized", False)   # dequantized: a plain dense model
    enc = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        logits = model(**enc).logits
    assert torch.isfinite(logits).all() and logits.shape[-1] == 49152


@pytest.mark.parametrize("name, words", [("/no/such/SmolLM2.gguf", "no such model file"),
                                         ("./no-such-folder", "no such model folder"),
                                         ("~/no-such-folder-either", "no such model folder"),
                                         ("", "non-empty")])
def test_a_model_that_is_not_there_fails_at_once_and_says_what_to_use(name, words):
    import time
    t0 = time.perf_counter()
    with pytest.raises((FileNotFoundError, ValueError), match=words) as e:
        load_model(name)
    assert "smollm2-135m-instruct" in str(e.value) and time.perf_counter() - t0 < 2


def test_a_hub_id_that_cannot_be_loaded_names_the_choices(monkeypatch):
    import transformers

    def offline(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(FileNotFoundError, match="no such model 'does-not/exist'.*hub id"):
        load_model("does-not/exist")
