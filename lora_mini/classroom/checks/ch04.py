"""Checks for chapter 4 (LoRA in a transformer: counting parameters and memory)."""
import functools

import torch
import torch.nn as nn

from . import call, exercise, integer

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _configs():
    """Llama-style configs: SmolLM2-135M, Llama-2-7B, Llama-2-70B and a small GQA model."""
    from transformers import LlamaConfig
    return [LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                        num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
            LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=32, vocab_size=32000),
            LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                        num_key_value_heads=8, vocab_size=32000),
            LlamaConfig(hidden_size=96, intermediate_size=200, num_hidden_layers=3, num_attention_heads=6,
                        num_key_value_heads=2, vocab_size=1000)]


@functools.lru_cache(maxsize=None)
def _model_facts(i):
    """(linear layers' (name, in, out), parameter count) of config i, read off a model built on the meta device."""
    from transformers import LlamaForCausalLM
    with torch.device("meta"):
        model = LlamaForCausalLM(_configs()[i])
    linears = tuple((n, m.in_features, m.out_features) for n, m in model.named_modules()
                    if isinstance(m, nn.Linear) and n.split(".")[-1] in ALL)
    return linears, sum(p.numel() for p in model.parameters())


def _lora_count(i, r, targets):
    linears, _ = _model_facts(i)
    return sum(r * (fan_in + fan_out) for n, fan_in, fan_out in linears if n.split(".")[-1] in targets)


@exercise("4.1")
def count_lora_test(count_lora):
    """count_lora(config, r, targets) -> trainable parameters of LoRA on the named projections of every block."""
    for i, cfg in enumerate(_configs()):
        for targets in (["q_proj", "v_proj"], ALL, ["k_proj", "o_proj"], ["down_proj"]):
            for r in (1, 8):
                want = _lora_count(i, r, targets)
                got = integer(call(count_lora, cfg, r, list(targets)), "count_lora's result")
                where = f"hidden={cfg.hidden_size}, heads={cfg.num_attention_heads}, " \
                        f"kv_heads={cfg.num_key_value_heads}, r={r}, targets={targets}"
                assert got == want, (f"({where}) got {got:,}: count r·(in + out) for each targeted projection of "
                                     "each block; k_proj and v_proj output only the key/value heads")
    return "count_lora is right for four Llama-style shapes, four target sets and two ranks"


@exercise("4.2")
def largest_rank_within_test(largest_rank_within):
    """largest_rank_within(config, n_params, frac) -> the largest r with all-linear LoRA ≤ frac·n_params."""
    for i, cfg in enumerate(_configs()):
        _, n_params = _model_facts(i)
        for frac in (0.01, 0.005, 0.03):
            per_rank = _lora_count(i, 1, ALL)                     # the count is r times this
            want = max((r for r in range(1, 4097) if r * per_rank <= frac * n_params), default=0)
            got = integer(call(largest_rank_within, cfg, n_params, frac), "largest_rank_within's result")
            assert got == want, (f"(hidden={cfg.hidden_size}, frac={frac}) got r = {got}: at that rank all-linear "
                                 f"LoRA is {'over' if got > want else 'still under'} the budget "
                                 f"({'not the largest' if got < want else 'too large'})")
    return "largest_rank_within is right for four models and three budgets"


def _measured_bytes(r):
    """(parameters, trainable, bytes of weights + gradients + Adam state) after one real AdamW step."""
    from lora_mini import apply_lora, tiny_model
    model = tiny_model("llama", seed=r)
    if r:
        apply_lora(model, "all-linear", r=r, alpha=2 * r)
    else:
        model.requires_grad_(True)                                     # r = 0 stands for full fine-tuning
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    ids = torch.randint(0, model.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    model(ids, labels=ids).loss.backward()
    opt.step()
    nbytes = lambda t: t.numel() * t.element_size()
    total = sum(nbytes(p) for p in model.parameters()) + sum(nbytes(p.grad) for p in params if p.grad is not None)
    total += sum(nbytes(v) for s in opt.state.values() for k, v in s.items() if k != "step")
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in params), total


@exercise("4.3")
def training_bytes_test(training_bytes):
    """training_bytes(n_params, n_trainable) -> bytes of fp32 weights, gradients and Adam state (no activations)."""
    for r in (0, 2, 8):
        n, t, want = _measured_bytes(r)
        got = integer(call(training_bytes, n, t), "training_bytes's result")
        kind = "full fine-tuning" if r == 0 else f"LoRA r={r}"
        assert got == want, (f"({kind}: {n:,} parameters, {t:,} trainable) you say {got:,} bytes, one AdamW step "
                             f"measures {want:,}: which tensors exist for every parameter, and which only for the "
                             "trainable ones? (Adam keeps two running averages; 4 bytes per float32)")
    return "training_bytes matches the bytes measured after a real AdamW step, for full fine-tuning and LoRA"
