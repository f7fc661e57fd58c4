"""Checks for chapter 7 (LoRA Without Regret, at small scale)."""
import math
import random

import numpy as np
import torch

from ...lab.sweep import LR_GRID, next_lr
from . import call, exercise, integer, number, rand

UNEVEN = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2]


def _losses(grid, center, shape):
    """{lr: loss} for a convex curve in log10 LR that is *not* a parabola, keys in shuffled order."""
    c = math.log10(center)
    f = {"cosh": lambda x: math.cosh(1.7 * (x - c)) + 0.15 * x,
         "abs": lambda x: abs(x - c) ** 1.4 + 0.05 * (x - c),
         "quartic": lambda x: (x - c) ** 4 + 0.3 * (x - c) ** 2 + 0.02 * x}[shape]
    items = [(lr, 2.0 + f(math.log10(lr))) for lr in grid]
    random.Random(len(grid) + int(1000 * center)).shuffle(items)
    return dict(items)


def _vertex(points):
    """The expected answer: a parabola through the lowest point and its two neighbours (numpy solve)."""
    pts = sorted(points.items())
    i = min(range(len(pts)), key=lambda k: pts[k][1])
    if i in (0, len(pts) - 1):
        return pts[i][0]
    x = np.log10([p[0] for p in pts[i - 1:i + 2]])
    coef = np.linalg.solve(np.vander(x, 3), [p[1] for p in pts[i - 1:i + 2]])
    return float(np.power(10.0, -0.5 * coef[1] / coef[0]))


@exercise("7.1")
def best_lr_test(best_lr):
    """best_lr({lr: loss}) -> the vertex (in log10 LR) of the parabola through the lowest point and its
    two neighbours; at the grid's edge, the edge LR itself."""
    cases = [(LR_GRID, 3.3e-4, "cosh"), (LR_GRID, 2e-3, "abs"), (UNEVEN, 7e-4, "quartic"),
             (UNEVEN, 3e-3, "cosh"), (LR_GRID[2:7], 1.5e-4, "abs")]
    for grid, center, shape in cases:
        pts = _losses(grid, center, shape)
        got = number(call(best_lr, dict(pts)), "best_lr's result")
        want = _vertex(pts)
        assert got > 0, f"best_lr returned {got:g}; return a learning rate (10 ** x), not log10 of it"
        if abs(math.log10(got) - math.log10(want)) > 1e-6:
            best = min(pts, key=pts.get)
            assert got != best, ("you returned the best grid LR; the exercise asks for the vertex of the parabola "
                                 "between grid points")
            assert abs(math.log10(got) - math.log10(want)) < 1e-6, (
                f"on a grid {sorted(pts)[:3]}… with its lowest loss at {best:g}, best_lr gave {got:.4g}: fit the "
                "parabola through exactly three points (the lowest and its two neighbours, neighbours in LR order, "
                "whatever order the dict has), in x = log10(lr), and return 10 ** (its vertex)")
    for edge in (0, -1):                          # the lowest loss at the first / last grid point
        pts = {lr: 1.0 + (i if edge == 0 else -i) * 0.1 for i, lr in enumerate(LR_GRID)}
        got = number(call(best_lr, pts), "best_lr's result")
        assert math.isclose(got, LR_GRID[edge], rel_tol=1e-9), \
            f"when the lowest loss is at the grid's {'first' if edge == 0 else 'last'} point, return that LR"
    return "best_lr finds the vertex between grid points (uneven grids, any dict order) and keeps an edge LR"


def _matched(r_attn, d, d_ff, d_kv):
    attn = r_attn * sum(i + o for i, o in [(d, d), (d, d_kv), (d, d_kv), (d, d)])     # q, k, v, o
    per_rank = 3 * (d + d_ff)                                  # gate, up: d -> d_ff; down: d_ff -> d
    return min(range(1, 4 * r_attn + 8), key=lambda r: abs(r * per_rank - attn)), attn, per_rank


@exercise("7.2")
def mlp_rank_test(mlp_rank_to_match):
    """mlp_rank_to_match(r_attn, d, d_ff, d_kv) -> the MLP-only rank whose LoRA parameter count is closest
    to attention-only LoRA at r_attn (per transformer block)."""
    for r_attn, d, d_ff, d_kv in [(64, 576, 1536, 192), (16, 4096, 14336, 1024), (8, 768, 3072, 768),
                                  (32, 2048, 8192, 512), (100, 1000, 3000, 250)]:
        want, attn, per_rank = _matched(r_attn, d, d_ff, d_kv)
        got = integer(call(mlp_rank_to_match, r_attn, d, d_ff, d_kv), "mlp_rank_to_match's result")
        if got != want:
            naive = min(range(1, 4 * r_attn + 8), key=lambda r: abs(r * per_rank - r_attn * 4 * 2 * d))
            assert not (got == naive and d_kv != d), "k_proj and v_proj map d to d_kv (grouped-query attention), not d to d"
            assert got != math.floor(attn / per_rank), "take the closest rank (round), not the rank just below (floor)"
            assert False, (f"r_attn={r_attn}, d={d}, d_ff={d_ff}, d_kv={d_kv}: your rank {got} gives {got * per_rank:,} "
                           "MLP parameters per block; count A (r × in) and B (out × r) for each of the three MLP "
                           "matrices and each of the four attention matrices, and pick the closest rank")
    return "the matched MLP rank is right for five model shapes"


def _bowl(center, skew):
    return lambda lr: (math.log10(lr) - math.log10(center)) ** 2 + skew * (math.log10(lr) - math.log10(center))


def _search(loss, start, grid, max_runs):
    """The expected trace, from the library's next_lr (run by the check, never by the answer)."""
    tried = {}
    while (lr := next_lr(tried, start=start, grid=grid, max_runs=max_runs)) is not None:
        tried[lr] = loss(lr)
    order = list(tried)
    idx = sorted(grid.index(x) for x in order)
    best = min(order, key=lambda x: (tried[x], grid.index(x)))
    return order, idx[0] < grid.index(best) < idx[-1]


@exercise("7.3")
def bracket_search_test(bracket_search):
    """bracket_search(loss, start, grid, max_runs) -> (LRs tried in order, bracketed?)."""
    cases = [(_bowl(3e-3, 0.1), 1e-3, LR_GRID, 7), (_bowl(2e-5, -0.2), 1e-3, LR_GRID, 7),
             (_bowl(5e-2, 0.0), 1e-3, LR_GRID, 7), (_bowl(1e-6, 0.0), 1e-4, LR_GRID, 7),
             (_bowl(4e-4, 0.3), 5e-3, UNEVEN, 7), (_bowl(1e-7, 0.0), 3e-3, LR_GRID, 4),
             (_bowl(1e-3, 0.0), 1e-5, LR_GRID, 7)]
    for loss, start, grid, max_runs in cases:
        want, bracketed = _search(loss, start, grid, max_runs)
        out = call(bracket_search, loss, start, list(grid), max_runs)
        assert isinstance(out, (tuple, list)) and len(out) == 2, "return two things: (list of LRs tried, bracketed)"
        tried, got_b = out
        tried = [number(x, "each LR tried") for x in tried]
        same = len(tried) == len(want) and all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(tried, want))
        if not same:
            assert len(tried) != len(grid) or len(want) == len(grid), "the search should stop, not try the whole grid"
            assert not (len(tried) >= 3 and math.isclose(tried[1], grid[min(grid.index(want[0]) + 1, len(grid) - 1)])), \
                "after the start, try one step down first, then one step up"
            assert False, (f"from start {start:g} on a grid {grid[0]:g}…{grid[-1]:g} (max_runs={max_runs}) you tried "
                           f"{len(tried)} LRs, the search tries {len(want)}: start, one step down, one step up, then "
                           "keep stepping toward the better side until the best LR has a worse neighbour on each "
                           "side, the grid ends, or max_runs LRs are tried")
        assert isinstance(got_b, (bool, np.bool_)), f"bracketed should be True or False, got {type(got_b).__name__}"
        if bool(got_b) and not bracketed:
            at_edge = min(want, key=loss) in (grid[0], grid[-1])
            assert False, ("the search stopped at the grid's edge: the best LR has no worse neighbour beyond it, so it "
                           "is not bracketed" if at_edge else
                           "the search stopped after max_runs LRs with its best LR at the end of those tried: not bracketed")
        assert bool(got_b) == bracketed, "the best LR is bracketed here: it has a worse neighbour on both sides"
    return "the search tries the right LRs and says bracketed only when it is (seven searches, two grids)"


def _factor(W, dW, r):
    """The expected factor, in float64 from a full SVD (torch.linalg, not lora_mini)."""
    W, dW = W.double(), dW.double()
    U, _, Vh = torch.linalg.svd(dW, full_matrices=False)
    return float(torch.linalg.matrix_norm(dW) / torch.linalg.matrix_norm(U[:, :r].T @ W @ Vh[:r].T))


@exercise("7.4")
def amplification_test(amplification_factor):
    """amplification_factor(W, dW, r) -> ‖ΔW‖_F / ‖Uᵀ W V‖_F, U and V the top-r singular vectors of ΔW."""
    for seed, (out, inp, r, true_rank, dtype) in enumerate([(40, 30, 4, 8, torch.float64), (30, 30, 2, 5, torch.float64),
                                                           (64, 48, 8, 8, torch.float32), (20, 50, 1, 3, torch.float32)]):
        W = rand(out, inp, seed=seed, dtype=dtype)
        dW = (rand(out, true_rank, seed=seed + 10, dtype=torch.float64)
              @ rand(true_rank, inp, seed=seed + 20, dtype=torch.float64)).to(dtype)
        got = number(call(amplification_factor, W, dW, r), "amplification_factor's result")
        want = _factor(W, dW, r)
        tol = 1e-8 if dtype == torch.float64 else 1e-4           # float32 inputs: a float32 SVD is fine
        if abs(got - want) > tol * want:
            Uw, _, Vhw = torch.linalg.svd(W.double(), full_matrices=False)
            from_w = float(torch.linalg.matrix_norm(dW.double()) / torch.linalg.matrix_norm(Uw[:, :r].T @ W.double() @ Vhw[:r].T))
            assert abs(got - from_w) > 1e-3 * from_w, "take U and V from the SVD of ΔW, not of W"
            assert abs(got - float(torch.linalg.matrix_norm(dW.double()) / torch.linalg.matrix_norm(W.double()))) > 1e-3 * want, \
                "keep only the top r singular vectors of ΔW (U: out × r, V: in × r)"
            assert False, (f"W {out} × {inp}, ΔW of rank {true_rank}, r = {r} ({str(dtype)[6:]}): your factor is off by "
                           f"{abs(got - want) / want:.2%}; project W as Uᵀ W V (r × r) with V the right singular vectors "
                           "(the rows of Vh, transposed) and use Frobenius norms")
    return "the factor matches Hu et al.'s definition for four shapes, ranks and dtypes"
