CASES = {
    "2.1": {"wrong": ["def lora_forward(x, W0, B, A, alpha):\n    return x @ W0.T + (alpha // A.shape[0]) * (x @ A.T @ B.T)",
                      "def lora_forward(x, W0, B, A, alpha):\n    return x @ W0.T + alpha / math.sqrt(A.shape[0]) * (x @ A.T @ B.T)",
                      "def lora_forward(x, W0, B, A, alpha):\n    return x @ W0.T + x @ A.T @ B.T",
                      "def lora_forward(x, W0, B, A, alpha):\n    return x @ W0.T + 4.0 * (x @ A.T @ B.T)",
                      "def lora_forward(x, W0, B, A, alpha):\n    return x @ W0.T + alpha / A.shape[0] * (x @ B @ A)"],
            "right": ["def lora_forward(x, W0, B, A, alpha):\n    return x @ (W0 + alpha / len(A) * B @ A).T"]},
    "2.2": {"wrong": ["def loss_floor(delta_w, r):\n    S = torch.linalg.svdvals(delta_w)\n    return float((S[r:] ** 2).sum())",
                      "def loss_floor(delta_w, r):\n    S = torch.linalg.svdvals(delta_w)\n    return float((S[r:] ** 2).sum()) / delta_w.shape[1]",
                      "def loss_floor(delta_w, r):\n    S = torch.linalg.svdvals(delta_w)\n    return float((S[r - 1:] ** 2).sum()) / delta_w.shape[0]",
                      "def loss_floor(delta_w, r):\n    from lora_mini import lowrank\n"
                      "    return lowrank.tail_error(lowrank.singular_values(delta_w), r) ** 2 / delta_w.shape[0]"],
            "right": ["def loss_floor(delta_w, r):\n    S = torch.linalg.svdvals(delta_w)\n    return (S[r:] ** 2).sum() / delta_w.shape[0]"]},
    "2.3": {"wrong": ["def lora_grads(x, y, W0, A, B, alpha):\n    G = x @ W0.T + alpha / len(A) * (x @ A.T @ B.T) - y\n"
                      "    return (G @ B).T @ x, G.T @ (x @ A.T)",                                 # no α/r
                      "def lora_grads(x, y, W0, A, B, alpha):\n    A = A.clone().requires_grad_(); B = B.clone().requires_grad_()\n"
                      "    L = 0.5 * (x @ W0.T + alpha / len(A) * (x @ A.T @ B.T) - y).pow(2).sum()\n"
                      "    L.backward()\n    return A.grad, B.grad",                                 # autograd
                      "def lora_grads(x, y, W0, A, B, alpha):\n    s = alpha / len(A)\n    G = x @ W0.T + s * (x @ A.T @ B.T) - y\n"
                      "    return s * G.T @ (x @ A.T), s * (G @ B).T @ x"],                        # swapped
            "right": ["def lora_grads(x, y, W0, A, B, alpha):\n    s = alpha / A.shape[0]\n"
                      "    G = x @ W0.T + s * torch.einsum('nk,rk,dr->nd', x, A, B) - y\n"
                      "    return s * torch.einsum('nd,dr,nk->rk', G, B, x), s * torch.einsum('nd,nk,rk->dr', G, x, A)"]},
}
