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


def test_gguf_cache_folder(monkeypatch, tmp_path):
    """One folder per GGUF content, under LORA_MINI_CACHE; "off" means none."""
    from lora_mini.models import gguf_cache_folder
    f = tmp_path / "m.gguf"
    f.write_bytes(b"weights v1")
    monkeypatch.setenv("LORA_MINI_CACHE", str(tmp_path / "cache"))
    first = gguf_cache_folder(f)
    assert first.parent == tmp_path / "cache" and first.name.startswith("m-") and len(first.name) == 2 + 12
    f.write_bytes(b"weights v2")
    assert gguf_cache_folder(f) != first                 # a changed file is never served from the old copy
    monkeypatch.setenv("LORA_MINI_CACHE", "off")
    assert gguf_cache_folder(f) is None


@pytest.mark.slow
def test_the_dequantized_gguf_is_cached(smollm, monkeypatch, tmp_path):
    """The first load writes the float32 model to the cache (whole, or not at all); later loads read it
    instead of parsing the GGUF, with the same weights and tokenizer; an unwritable cache is skipped."""
    import copy
    from lora_mini import models
    base, tok = smollm
    parsed = []

    def parse(gguf, dtype):                               # stands in for the 20-s dequantization
        parsed.append(dtype)
        return copy.deepcopy(tok), copy.deepcopy(base)
    monkeypatch.setattr(models, "_parse_gguf", parse)
    monkeypatch.setenv("LORA_MINI_CACHE", str(tmp_path / "cache"))
    first, tok1 = load_model(device="cpu")
    (folder,) = (tmp_path / "cache").iterdir()
    assert parsed == [torch.float32] and (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]      # no temporary folder left
    again, tok2 = load_model(device="cpu", dtype=torch.bfloat16)
    assert len(parsed) == 1 and again.dtype == torch.bfloat16                              # read, not parsed
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), base.state_dict().values()))
    assert all(torch.equal(a.bfloat16(), b) for a, b in zip(base.state_dict().values(), again.state_dict().values()))
    chat = [{"role": "user", "content": "What is 3 + 4?"}]
    assert tok2.apply_chat_template(chat, tokenize=False) == tok.apply_chat_template(chat, tokenize=False)
    assert tok2("def f(x):\n    return x")["input_ids"] == tok("def f(x):\n    return x")["input_ids"]
    assert again.config.name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "not_a_folder").write_text("")
    monkeypatch.setenv("LORA_MINI_CACHE", str(tmp_path / "not_a_folder"))
    model, _ = load_model(device="cpu")
    assert len(parsed) == 2 and model.dtype == torch.float32


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
