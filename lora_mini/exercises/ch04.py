"""Self-checks for chapter 4 (LoRA in a transformer: counting parameters and memory)."""
from lora_mini.memory import SHAPES, ModelShape, base_params, lora_params


def check_exercise_4_1(answer):
    """Trainable parameters of LoRA r=8 on q_proj and v_proj of SmolLM2-135M (30 layers)."""
    want = lora_params(SHAPES["smollm2-135m"], 8, ["q_proj", "v_proj"])
    assert isinstance(answer, int), f"answer should be an int, got {type(answer).__name__}"
    wrong_v = 30 * 8 * 2 * (576 + 576)
    assert answer != wrong_v, "v_proj maps 576 -> 192 (3 kv heads × 64), not 576 -> 576: grouped-query attention"
    assert answer == want, f"got {answer:,}; per layer r·(in+out) for q_proj (576→576) and v_proj (576→192), times 30 layers"
    print(f"✓ {answer:,} trainable parameters ({100 * answer / base_params(SHAPES['smollm2-135m']):.2f}% of the model)")


def check_exercise_4_2(count_lora):
    """count_lora(config, r) -> trainable parameters of all-linear LoRA for a Llama-style config."""
    from transformers import LlamaConfig
    configs = [LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                           num_key_value_heads=3, vocab_size=49152),
               LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                           num_key_value_heads=32, vocab_size=32000),
               LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                           num_key_value_heads=8, vocab_size=32000)]
    for cfg in configs:
        for r in (1, 16):
            want = lora_params(ModelShape.from_config(cfg), r, "all-linear")
            got = count_lora(cfg, r)
            assert got == want, (f"hidden={cfg.hidden_size}, kv_heads={cfg.num_key_value_heads}, r={r}: got {got:,}, "
                                 f"want {want:,}. Seven layers per block; k_proj and v_proj output kv_heads·head_dim")
    print("✓ count_lora matches for SmolLM2-135M, Llama-2-7B and Llama-2-70B shapes")


def check_exercise_4_3(answer):
    """The largest power-of-two rank with all-linear LoRA on SmolLM2-135M at most 1% of its parameters."""
    shape = SHAPES["smollm2-135m"]
    ok = [r for r in (1, 2, 4, 8, 16, 32, 64) if lora_params(shape, r) <= 0.01 * base_params(shape)]
    assert answer in (1, 2, 4, 8, 16, 32, 64), "answer with a power of two between 1 and 64"
    pct = 100 * lora_params(shape, answer) / base_params(shape)
    assert answer == max(ok), f"r={answer} gives {pct:.2f}% of the parameters; find the largest r that stays ≤ 1%"
    print(f"✓ r={answer}: {pct:.2f}% — the '0.5–1%' rule of thumb needs a much lower rank on a small model")


def check_exercise_4_4(answer):
    """Bytes of Adam's state (m and v in fp32) for all-linear LoRA r=16 on Llama-2-7B."""
    want = 8 * lora_params(SHAPES["llama-2-7b"], 16)
    assert isinstance(answer, int), f"answer should be an int number of bytes, got {type(answer).__name__}"
    assert answer != 8 * base_params(SHAPES["llama-2-7b"]), "that is Adam's state for full fine-tuning; LoRA has state only for A and B"
    assert answer != 4 * lora_params(SHAPES["llama-2-7b"], 16), "Adam keeps two tensors (m and v) per parameter"
    assert answer == want, f"got {answer:,}; 2 states × 4 bytes × trainable parameters"
    print(f"✓ {answer / 1e9:.2f} GB, against {8 * base_params(SHAPES['llama-2-7b']) / 1e9:.1f} GB for full fine-tuning")
