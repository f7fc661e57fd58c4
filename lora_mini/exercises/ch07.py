"""Self-checks for chapter 7 (LoRA Without Regret, at small scale)."""
import math

import torch

from ..lab import analysis
from ..lab.sweep import LR_GRID, next_lr


def check_exercise_7_1(best_lr):
    """best_lr({lr: loss}) -> the LR at the vertex of the parabola (in log10 LR) through the best
    grid point and its two neighbours."""
    assert callable(best_lr), "pass your function best_lr(points), not its result"
    for center, curv in [(3.3e-4, 0.1), (2e-3, 0.3), (7e-5, 0.05)]:
        pts = {lr: 1.0 + curv * (math.log10(lr) - math.log10(center)) ** 2 for lr in LR_GRID}
        got = float(best_lr(pts))
        want = analysis.interp_best_lr(pts)["lr"]
        assert abs(math.log10(got) - math.log10(want)) < 0.01, (
            f"best_lr gave {got:.3g}, expected {want:.3g}: fit y = a·x² + b·x + c with x = log10(lr) through the "
            "three points around the minimum and return 10 ** (-b / 2a)")
    print("✓ best_lr finds the parabola's vertex between grid points")


def check_exercise_7_2(r_mlp):
    """The MLP-only rank whose parameter count matches attention-only LoRA at r = 64 on SmolLM2-135M
    (hidden 576, k/v 192, MLP 1536)."""
    assert isinstance(r_mlp, int), f"answer with an integer rank, got {type(r_mlp).__name__}"
    attn = 64 * ((576 + 576) * 2 + (576 + 192) * 2)
    per_rank = 3 * (576 + 1536)
    best = min(range(1, 200), key=lambda r: abs(r * per_rank - attn))
    assert r_mlp == best, (f"r={r_mlp} gives {r_mlp * per_rank:,} MLP parameters per layer vs {attn:,} for attention "
                           f"r=64: each of gate/up/down adds r·(576 + 1536); pick the closest r")
    print(f"✓ MLP r={r_mlp}: {r_mlp * per_rank:,} vs attention r=64: {attn:,} parameters per layer")


def check_exercise_7_3(amplification_factor):
    """amplification_factor(W, dW, r) -> ‖ΔW‖_F / ‖Uᵀ W V‖_F with U, V from ΔW's top-r SVD."""
    assert callable(amplification_factor), "pass your function, not its result"
    g = torch.Generator().manual_seed(7)
    for r in (1, 4, 8):
        W = torch.randn(40, 30, generator=g, dtype=torch.float64)
        dW = torch.randn(40, r, generator=g, dtype=torch.float64) @ torch.randn(r, 30, generator=g, dtype=torch.float64)
        got = float(amplification_factor(W, dW, r))
        want = analysis.amplification(W, dW, r)["factor"]
        assert abs(got - want) < 1e-6 * want, (
            f"r={r}: got {got:.4f}, expected {want:.4f}. U = left singular vectors (40 × r), V = right ones "
            "(30 × r) of ΔW; project W: Uᵀ W V (r × r)")
    print("✓ amplification factor matches Hu et al.'s definition")


def check_exercise_7_4(lrs_tried):
    """The LRs a bracket search tries, in order, from start 1e-3 when the loss is (log10 lr + 1.5)²."""
    assert isinstance(lrs_tried, (list, tuple)), "answer with the list of LRs, in the order they are tried"
    res, order = {}, []
    while (lr := next_lr(res, start=1e-3)) is not None:
        res[lr] = (math.log10(lr) + 1.5) ** 2
        order.append(lr)
    assert [float(x) for x in lrs_tried] == order, (
        f"got {list(lrs_tried)}, expected {len(order)} LRs: start, one grid step down, one up, then keep "
        "stepping toward the better side until the best LR has a worse neighbour on each side")
    print(f"✓ the search tries {order} and stops: the best LR is bracketed")
