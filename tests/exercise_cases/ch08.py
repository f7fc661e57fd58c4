CASES = {
    "8.1": {"wrong": ["def dora_weight(W, A, B, m, scaling):\n    V = W + 2.0 * B @ A\n    return m[:, None] * V / V.norm(dim=1, keepdim=True)",
                      "def dora_weight(W, A, B, m, scaling):\n    V = W + scaling * B @ A\n    return m[:, None] * V / V.norm(dim=0, keepdim=True)",
                      "def dora_weight(W, A, B, m, scaling):\n    V = W + B @ A\n    return m[:, None] * V / V.norm(dim=1, keepdim=True)",
                      "def dora_weight(W, A, B, m, scaling):\n    V = W + scaling * B @ A\n    return m[:, None] * V / W.norm(dim=1, keepdim=True)",
                      "def dora_weight(W, A, B, m, scaling):\n    from lora_mini.variants import DoRALinear\n    layer = DoRALinear(torch.nn.Linear(W.shape[1], W.shape[0], bias=False), r=A.shape[0], alpha=scaling * A.shape[0])\n    with torch.no_grad():\n        layer.base.weight.copy_(W); layer.lora_A.copy_(A); layer.lora_B.copy_(B); layer.lora_magnitude.copy_(m)\n    return (layer.base.weight + layer.delta_weight()).to(W.dtype).detach()",
                      "def dora_weight(W, A, B, m, scaling):\n    W += scaling * B @ A\n    return m[:, None] * W / W.norm(dim=1, keepdim=True)"],
            "right": ["import torch.nn.functional as F\ndef dora_weight(W, A, B, m, scaling):\n"
                      "    return F.normalize(torch.addmm(W, B, A, alpha=scaling), dim=1) * m.unsqueeze(1)"]},
    "8.2": {"wrong": ["def adapter_param_count(d, m, n_layers):\n    return 2 * n_layers * 2 * d * m",
                      "def adapter_param_count(d, m, n_layers):\n    return n_layers * (2 * d * m + m + d)",
                      "def adapter_param_count(d, m, n_layers):\n    return 1_141_440",
                      "def adapter_param_count(d, m, n_layers):\n    return 2 * n_layers * (2 * d * m + d)"],
            "right": ["import numpy as np\ndef adapter_param_count(d, m, n_layers):\n    return np.int64(n_layers * 2 * (d * (2 * m + 1) + m))",
                      "def adapter_param_count(d, m, n_layers):\n    return float(n_layers * 2 * (2 * d * m + d + m))"]},
    "8.3": {"wrong": ["def pissa(W, r, scaling):\n    U, S, Vh = torch.linalg.svd(W, full_matrices=False)\n"
                      "    B = U[:, :r] * S[:r].sqrt(); A = S[:r].sqrt()[:, None] * Vh[:r]\n    return A, B, W - scaling * B @ A",
                      "def pissa(W, r, scaling):\n    U, S, Vh = torch.linalg.svd(W, full_matrices=False)\n"
                      "    B = U[:, :r] * S[:r] / scaling; A = Vh[:r]\n    return A, B, W - scaling * B @ A",
                      "def pissa(W, r, scaling):\n    U, S, Vh = torch.linalg.svd(W, full_matrices=False)\n"
                      "    root = (S[:r] / scaling).sqrt()\n    return root[:, None] * Vh[:r], U[:, :r] * root, W",
                      "def pissa(W, r, scaling):\n    U, S, Vh = torch.linalg.svd(W, full_matrices=False)\n"
                      "    root = (S[:r] / scaling).sqrt()\n    return (U[:, :r] * root).T, (root[:, None] * Vh[:r]).T, W - scaling * U[:, :r] @ torch.diag(S[:r] / scaling) @ Vh[:r]"],
            "right": ["def pissa(W, r, scaling):\n    U, S, V = torch.svd(W.double())\n    half = torch.diag((S[:r] / scaling) ** 0.5)\n"
                      "    A, B = half @ V[:, :r].T, U[:, :r] @ half\n    return A.to(W.dtype), B.to(W.dtype), (W.double() - scaling * B @ A).to(W.dtype)"]},
    "8.4": {"wrong": ["def bits_per_weight(code_bits, block, scale_bits, block2=None, scale2_bits=32):\n    return code_bits + scale_bits / block",
                      "def bits_per_weight(code_bits, block, scale_bits, block2=None, scale2_bits=32):\n    return 4.5",
                      "def bits_per_weight(code_bits, block, scale_bits, block2=None, scale2_bits=32):\n"
                      "    return code_bits + scale_bits / block + (scale2_bits / block2 if block2 else 0)",
                      "def bits_per_weight(code_bits, block, scale_bits, block2=None, scale2_bits=32):\n    return code_bits"],
            "right": ["import numpy as np\ndef bits_per_weight(code_bits, block, scale_bits, block2=None, scale2_bits=32):\n"
                      "    n = block * (block2 or 1)\n    extra = scale2_bits if block2 else 0\n"
                      "    return np.float64((n * code_bits + (block2 or 1) * scale_bits + extra) / n)"]},
}
