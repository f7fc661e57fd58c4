CASES = {
    "8b.1": {"wrong": ["def stack_adapters(As, Bs, alphas):\n    r = max(a.shape[0] for a in As)\n"
                       "    A = torch.stack([torch.cat([a, a.new_zeros(r - a.shape[0], a.shape[1])]) for a in As])\n"
                       "    B = torch.stack([torch.cat([b, b.new_zeros(b.shape[0], r - b.shape[1])], 1) for b in Bs])\n"
                       "    return A, B, torch.tensor([al / r for al in alphas])",
                       "def stack_adapters(As, Bs, alphas):\n    r = max(a.shape[0] for a in As)\n"
                       "    A = torch.stack([torch.cat([a, a.new_zeros(r - a.shape[0], a.shape[1])]) for a in As])\n"
                       "    B = torch.stack([torch.cat([b, b.new_zeros(b.shape[0], r - b.shape[1])], 1) for b in Bs])\n"
                       "    return A, B, torch.tensor([al / math.sqrt(a.shape[0]) for al, a in zip(alphas, As)])",
                       "def stack_adapters(As, Bs, alphas):\n    r = max(a.shape[0] for a in As)\n"
                       "    A = torch.stack([torch.cat([a, a.new_ones(r - a.shape[0], a.shape[1])]) for a in As])\n"
                       "    B = torch.stack([torch.cat([b, b.new_ones(b.shape[0], r - b.shape[1])], 1) for b in Bs])\n"
                       "    return A, B, torch.tensor([al / a.shape[0] for al, a in zip(alphas, As)])",
                       "def stack_adapters(As, Bs, alphas):\n    return torch.stack(As), torch.stack(Bs), torch.tensor([al / a.shape[0] for al, a in zip(alphas, As)])"],
             "right": ["import torch.nn.functional as F\ndef stack_adapters(As, Bs, alphas):\n    r = max(a.shape[0] for a in As)\n"
                       "    A = torch.stack([F.pad(a, (0, 0, 0, r - a.shape[0])) for a in As])\n"
                       "    B = torch.stack([F.pad(b, (0, r - b.shape[1])) for b in Bs])\n"
                       "    return A, B, [al / a.shape[0] for al, a in zip(alphas, As)]"]},
    "8b.2": {"wrong": ["def mixed_lora(x, A, B, scaling, idx):\n    rows = []\n    for i, k in enumerate(idx.tolist()):\n"
                       "        y = scaling[k] * (x[i] @ A[k].T @ B[k].T)\n        rows.append(y if k >= 0 else torch.zeros_like(y))\n"
                       "    return torch.stack(rows)",
                       "def mixed_lora(x, A, B, scaling, idx):\n    z = torch.einsum('bti,bri->btr', x, A[idx])\n"
                       "    return torch.einsum('btr,bor->bto', z, B[idx]) * scaling[idx][:, None, None]",
                       "def mixed_lora(x, A, B, scaling, idx):\n    from lora_mini.multi import MultiLoRALinear\n    base = torch.nn.Linear(x.shape[-1], B.shape[1], bias=False)\n    torch.nn.init.zeros_(base.weight)\n    layer = MultiLoRALinear(base, list(A), list(B), scaling.tolist())\n    layer.active = idx\n    return layer(x)",
                       "def mixed_lora(x, A, B, scaling, idx):\n    k = idx.clamp(min=0)\n    z = torch.einsum('bti,bri->btr', x, A[k])\n"
                       "    return torch.einsum('btr,bor->bto', z, B[k]) * (idx >= 0)[:, None, None]"],
             "right": ["def mixed_lora(x, A, B, scaling, idx):\n    k = idx.clamp(min=0)\n"
                       "    y = torch.bmm(torch.bmm(x, A[k].transpose(1, 2)), B[k].transpose(1, 2))\n"
                       "    return y * torch.where(idx >= 0, scaling[k], torch.zeros_like(scaling[k]))[:, None, None]"]},
    "8b.3": {"wrong": ["def pareto_front(accuracy, forgetting):\n    acc, f = list(map(float, accuracy)), list(map(float, forgetting))\n"
                       "    return [i for i in range(len(acc)) if not any(acc[j] >= acc[i] and f[j] >= f[i] and j != i for j in range(len(acc)))]",
                       "def pareto_front(accuracy, forgetting):\n    acc = [float(a) for a in accuracy]\n    return [acc.index(max(acc))]",
                       "def pareto_front(accuracy, forgetting):\n    acc, f = list(map(float, accuracy)), list(map(float, forgetting))\n"
                       "    return [i for i in range(len(acc)) if not any(acc[j] >= acc[i] and f[j] <= f[i] and j != i for j in range(len(acc)))]"],
             "right": ["import numpy as np\ndef pareto_front(accuracy, forgetting):\n    a, f = np.asarray(accuracy, float), np.asarray(forgetting, float)\n"
                       "    dom = (a[None] >= a[:, None]) & (f[None] <= f[:, None]) & ((a[None] > a[:, None]) | (f[None] < f[:, None]))\n"
                       "    return np.flatnonzero(~dom.any(1))"]},
}
