"""Self-checks for chapter 1 (SVD and low rank)."""
import math

import torch

from .. import lowrank


def _rand(d, k, seed, decay=0.8):
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(d, min(d, k), generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(k, min(d, k), generator=g, dtype=torch.float64))
    S = 3 * decay ** torch.arange(min(d, k), dtype=torch.float64)
    return (U * S) @ V.T


def check_exercise_1_1(best_rank_r):
    """best_rank_r(W, r) -> the closest rank-r matrix to W (d × k)."""
    assert callable(best_rank_r), "pass your function best_rank_r(W, r), not its result"
    for seed, (d, k, r) in enumerate([(12, 9, 1), (9, 12, 3), (20, 20, 7), (15, 6, 6)]):
        W = _rand(d, k, seed)
        Wr = torch.as_tensor(best_rank_r(W, r)).double()
        assert Wr.shape == W.shape, f"best_rank_r(W, {r}) has shape {tuple(Wr.shape)}, expected {tuple(W.shape)} (same as W)"
        rank = int(torch.linalg.matrix_rank(Wr, atol=1e-8))
        assert rank <= r, f"best_rank_r(W, {r}) has rank {rank} > {r}: keep only the top-{r} singular triplets"
        err = float(torch.linalg.matrix_norm(W - Wr))
        best = lowrank.tail_error(lowrank.singular_values(W), r)
        assert err <= best + 1e-8, (f"‖W - W_r‖_F = {err:.6f} but Eckart–Young says {best:.6f} is reachable: "
                                    "use U[:, :r] diag(S[:r]) Vh[:r] from torch.linalg.svd")
    print("✓ best_rank_r reaches the Eckart–Young error on every test matrix")


def check_exercise_1_2(rank_for_energy):
    """rank_for_energy(S, frac) -> smallest r with (σ_1² + ... + σ_r²) / Σσ² >= frac."""
    assert callable(rank_for_energy), "pass your function rank_for_energy(S, frac), not its result"
    cases = [(torch.tensor([3.0, 2.0, 1.0]), 0.5, 1), (torch.tensor([3.0, 2.0, 1.0]), 0.9, 2),
             (torch.tensor([3.0, 2.0, 1.0]), 1.0, 3), (torch.ones(10), 0.55, 6), (torch.tensor([1.0, 1.0]), 0.5, 1)]
    for S, frac, want in cases:
        got = int(rank_for_energy(S, frac))
        assert got == want, (f"rank_for_energy({S.tolist()}, {frac}) = {got}, expected {want}: square the singular "
                             "values, take the cumulative sum over the total, and find the first r reaching frac")
    S = lowrank.singular_values(_rand(40, 30, 7, decay=0.9))
    for frac in (0.5, 0.9, 0.99):
        assert int(rank_for_energy(S, frac)) == lowrank.rank_for_energy(S, frac), f"wrong answer at frac={frac}"
    print("✓ rank_for_energy finds the smallest rank keeping the requested energy")


def check_exercise_1_3(r):
    """The largest rank r at which LoRA on one 4096 × 4096 matrix trains < 1 % of its parameters."""
    assert isinstance(r, int), f"answer with an integer rank, got {type(r).__name__}"
    assert lowrank.lora_params(4096, 4096, r) < 0.01 * 4096 * 4096, (
        f"r={r} trains {lowrank.lora_params(4096, 4096, r):,} numbers, not < 1 % of {4096 * 4096:,}: "
        "r·(d + k) < 0.01·d·k")
    assert lowrank.lora_params(4096, 4096, r + 1) >= 0.01 * 4096 * 4096, (
        f"r={r} is under 1 %, but so is r={r + 1}: find the largest")
    print(f"✓ r = {r}: {lowrank.lora_params(4096, 4096, r):,} of {4096 * 4096:,} parameters "
          f"({lowrank.compression_ratio(4096, 4096, r):.0f}× fewer)")


def check_exercise_1_4(err):
    """‖W - W_2‖_F for W = diag(5, 4, 3, 2, 1) and W_2 its best rank-2 approximation."""
    want = math.sqrt(3 ** 2 + 2 ** 2 + 1 ** 2)
    assert isinstance(err, (int, float)) or torch.is_tensor(err), "answer with a number"
    assert abs(float(err) - want) < 1e-4, (
        f"got {float(err):.4f}; Eckart–Young: the error is the root of the sum of the squared singular "
        "values you drop (here 3, 2, 1)")
    print(f"✓ ‖W - W_2‖_F = √(3² + 2² + 1²) = {want:.4f}")
