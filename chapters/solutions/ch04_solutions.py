"""Reference solutions for chapter 4's exercises."""


def count_lora(config, r):
    h, i = config.hidden_size, config.intermediate_size
    hd = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q, kv = config.num_attention_heads * hd, config.num_key_value_heads * hd
    shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]   # q k v o gate up down
    return config.num_hidden_layers * sum(r * (a + b) for a, b in shapes)


SOLUTIONS = {
    "4_1": 30 * 8 * ((576 + 576) + (576 + 192)),
    "4_2": count_lora,
    "4_3": 4,
    "4_4": 8 * 32 * 16 * (2 * (4096 + 4096) * 2 + 3 * (4096 + 11008)),
}
