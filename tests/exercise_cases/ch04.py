_GOOD = ("    h, i, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers\n"
         "    hd = h // config.num_attention_heads\n"
         "    q, kv = config.num_attention_heads * hd, config.num_key_value_heads * hd\n")
_COUNT = ("def count_lora(config, r, targets):\n" + _GOOD +
          "    io = dict(q_proj=h + q, k_proj=h + kv, v_proj=h + kv, o_proj=q + h, gate_proj=h + i, up_proj=h + i, down_proj=i + h)\n"
          "    return L * r * sum(io[t] for t in targets)\n")     # exercise 4.1's answer, which 4.2 may use
CASES = {
    "4.1": {"wrong": ["def count_lora(config, r, targets):\n    h = config.hidden_size\n"
                      "    return config.num_hidden_layers * r * 2 * h * len(targets)",               # no GQA, no MLP width
                      "def count_lora(config, r, targets):\n" + _GOOD +
                      "    io = dict(q_proj=h + q, k_proj=h + h, v_proj=h + h, o_proj=q + h, gate_proj=h + i, up_proj=h + i, down_proj=i + h)\n"
                      "    return L * r * sum(io[t] for t in targets)",                                # kv = h
                      "def count_lora(config, r, targets):\n" + _GOOD +
                      "    io = dict(q_proj=h + q, k_proj=h + kv, v_proj=h + kv, o_proj=q + h, gate_proj=h + i, up_proj=h + i, down_proj=i + h)\n"
                      "    return r * sum(io[t] for t in targets)"],                                   # one layer
            "right": ["def count_lora(config, r, targets):\n" + _GOOD +
                      "    io = dict(q_proj=(h, q), k_proj=(h, kv), v_proj=(h, kv), o_proj=(q, h), gate_proj=(h, i), up_proj=(h, i), down_proj=(i, h))\n"
                      "    return float(sum(L * r * sum(io[t]) for t in targets))"]},
    "4.2": {"wrong": ["def largest_rank_within(config, n_params, frac):\n    return 4",
                      _COUNT + "import math\ndef largest_rank_within(config, n_params, frac):\n"
                      "    return math.ceil(frac * n_params / count_lora(config, 1, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']))"],
            "right": [_COUNT + "def largest_rank_within(config, n_params, frac):\n    r = 0\n"
                      "    allin = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']\n"
                      "    while count_lora(config, r + 1, allin) <= frac * n_params:\n        r += 1\n    return r"]},
    "4.3": {"wrong": ["def training_bytes(n_params, n_trainable):\n    return 16 * n_params",
                      "def training_bytes(n_params, n_trainable):\n    return 4 * n_params + 8 * n_trainable",
                      "def training_bytes(n_params, n_trainable):\n    return 8 * n_params + 8 * n_trainable"],
            "right": ["def training_bytes(n_params, n_trainable):\n    return float(4 * (n_params + 3 * n_trainable))"]},
}
