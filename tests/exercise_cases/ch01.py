CASES = {
    "1.1": {"wrong": ["def best_rank_r(W, r):\n    return W",
                      "def best_rank_r(W, r):\n    U, S, Vh = torch.linalg.svd(W, full_matrices=False)\n"
                      "    return U[:, :r] @ Vh[:r]",                                   # σ's forgotten
                      "def best_rank_r(W, r):\n    U, S, Vh = torch.linalg.svd(W, full_matrices=False)\n"
                      "    return (U[:, -r:] * S[-r:]) @ Vh[-r:]",                      # smallest triplets
                      "from lora_mini.lowrank import best_rank_r as best_rank_r"],     # the library
            "right": ["def best_rank_r(W, r):\n    U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)\n"
                      "    return (U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]).to(W.dtype)"]},
    "1.2": {"wrong": ["def rank_for_energy(S, frac):\n    e = S.cumsum(0) / S.sum()\n    return int((e < frac).sum()) + 1",
                      "def rank_for_energy(S, frac):\n    e = (S ** 2).cumsum(0) / (S ** 2).sum()\n    return int((e <= frac).sum()) + 1",
                      "def rank_for_energy(S, frac):\n    e = (S ** 2).cumsum(0) / (S ** 2).sum()\n    return int((e < frac).sum())",
                      "from lora_mini.lowrank import rank_for_energy"],
            "right": ["import numpy as np\ndef rank_for_energy(S, frac):\n    e = np.cumsum(S.double().numpy() ** 2)\n"
                      "    return np.searchsorted(e / e[-1], frac - 1e-12) + 1"]},          # a numpy int
    "1.3": {"wrong": ["def largest_rank(d, k, budget):\n    return 20",
                      "def largest_rank(d, k, budget):\n    return int(budget * d * k / (d + k))",      # ≤ for <
                      "def largest_rank(d, k, budget):\n    return int(budget * d * k / (d + k)) + 1"],
            "right": ["import math\ndef largest_rank(d, k, budget):\n"
                      "    return float(min(min(d, k), math.ceil(budget * d * k / (d + k)) - 1))"]},  # a float
}
