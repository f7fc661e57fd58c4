CASES = {
    "9.1": {"wrong": ["def lora_flop_ratio(d_in, d_out, r):\n    return 2 / 3",
                      "def lora_flop_ratio(d_in, d_out, r):\n    return (4 * d_in * d_out + 2 * r * (d_in + d_out)) / (6 * d_in * d_out)",
                      "def lora_flop_ratio(d_in, d_out, r):\n    return (6 * d_in * d_out + 6 * r * (d_in + d_out)) / (6 * d_in * d_out)",
                      "def lora_flop_ratio(d_in, d_out, r):\n    return 0.7222222222222222"],
            "right": ["import numpy as np\ndef lora_flop_ratio(d_in, d_out, r):\n"
                      "    return np.float32(2) / 3 + np.float64(r) * (d_in + d_out) / (d_in * d_out)"]},
    "9.2": {"wrong": ["def fp32_copy_bytes(n_tokens, in_features):\n    return 2 * n_tokens * sum(in_features)",
                      "def fp32_copy_bytes(n_tokens, in_features):\n    return 4 * n_tokens * in_features[0] * len(in_features)",
                      "def fp32_copy_bytes(n_tokens, in_features):\n    return 7.4 * 2 ** 30"],
            "right": ["import numpy as np\ndef fp32_copy_bytes(n_tokens, in_features):\n"
                      "    return np.int64(n_tokens) * np.sum(in_features) * np.dtype(np.float32).itemsize",
                      "def fp32_copy_bytes(n_tokens, in_features):\n"
                      "    return float(sum(torch.empty(n_tokens, i, dtype=torch.float32, device='meta').nbytes for i in in_features))"]},
    "9.3": {"wrong": ["def lora_grads(x, g, A, B, s, W):\n    return g @ W + 2.0 * (g @ B) @ A, 2.0 * (g @ B).T @ x, 2.0 * g.T @ (x @ A.T)",   # s hard-coded
                      "def lora_grads(x, g, A, B, s, W):\n    return s * (g @ B) @ A, s * (g @ B).T @ x, s * g.T @ (x @ A.T)",              # no g W
                      "def lora_grads(x, g, A, B, s, W):\n    return g @ W + s * (g @ B) @ A, (g @ B).T @ x, g.T @ (x @ A.T)",              # no s on A, B
                      "def lora_grads(x, g, A, B, s, W):\n    x = x.clone().requires_grad_(True); A = A.clone().requires_grad_(True)\n"
                      "    B = B.clone().requires_grad_(True)\n    y = x @ W.T + s * (x @ A.T) @ B.T\n"
                      "    return torch.autograd.grad(y, (x, A, B), g)"],
            "right": ["def lora_grads(x, g, A, B, s, W):\n    gB = s * (g @ B)\n    return g @ W + gB @ A, gB.T @ x, s * g.T @ (x @ A.T)",   # float32 in, float32 out
                      "def lora_grads(x, g, A, B, s, W):\n    x, g, A, B, W = (t.double() for t in (x, g, A, B, W))\n"
                      "    return g @ (W + s * B @ A), s * (g @ B).T @ x, s * g.T @ (x @ A.T)"]},
}
