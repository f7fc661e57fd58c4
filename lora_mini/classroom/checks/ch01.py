"""Checks for chapter 1 (SVD and low rank)."""
import torch

from lora_mini import lowrank

from . import call, exercise, integer, rand


def _matrix(d, k, seed, dtype):
    """A d × k matrix with a decaying spectrum (so every rank matters)."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(d, min(d, k), generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(k, min(d, k), generator=g, dtype=torch.float64))
    S = 3 * 0.8 ** torch.arange(min(d, k), dtype=torch.float64)
    return ((U * S) @ V.T).to(dtype)


@exercise("1.1")
def best_rank_r_test(best_rank_r):
    """best_rank_r(W, r) -> the closest rank-r matrix to W, from torch.linalg.svd."""
    for seed, (d, k, r, dtype) in enumerate([(12, 9, 1, torch.float64), (9, 12, 3, torch.float32),
                                             (20, 20, 7, torch.float64), (15, 6, 6, torch.float32),
                                             (30, 17, 2, torch.float32)]):
        W = _matrix(d, k, seed, dtype)
        Wr = call(best_rank_r, W, r)
        assert torch.is_tensor(Wr), f"best_rank_r should return a tensor, got {type(Wr).__name__}"
        assert Wr.shape == W.shape, f"best_rank_r(W, {r}) has shape {tuple(Wr.shape)}, but W is {tuple(W.shape)}"
        assert Wr.dtype == W.dtype, f"for a {W.dtype} W, return a {W.dtype} matrix (got {Wr.dtype})"
        S = torch.linalg.svdvals(W.double())
        tol = 1e-9 if dtype == torch.float64 else 1e-4
        rank = int((torch.linalg.svdvals(Wr.double()) > tol * S[0]).sum())
        assert rank <= r, f"best_rank_r(W, {r}) has rank {rank}: keep only r singular triplets (the largest)"
        err = float(torch.linalg.matrix_norm((W - Wr).double()))
        best = float(S[r:].pow(2).sum().sqrt())
        assert err <= best + tol * float(S[0]), (
            f"on a {d} × {k} matrix at r = {r}, your error ‖W − W_r‖_F = {err:.4f} but a rank-{r} matrix can "
            f"reach {best:.4f}: did you keep the largest singular values, with their σ's, in the right order?")
    return "best_rank_r reaches the Eckart–Young error on five matrices (float32 and float64)"


@exercise("1.2")
def rank_for_energy_test(rank_for_energy):
    """rank_for_energy(S, frac) -> the smallest r whose top-r singular values keep ≥ frac of Σσ²."""
    cases = [([4.0, 1, 1, 1, 1], 0.8), ([4.0, 1, 1, 1, 1], 0.81), ([3.0, 2, 1], 0.5), ([3.0, 2, 1], 0.95),
             ([1.0] * 10, 0.5), ([1.0] * 10, 0.55), ([2.0, 2.0], 1.0), ([5.0, 0.1, 0.1], 0.99)]
    spectra = [(torch.tensor(S, dtype=torch.float64), f) for S, f in cases]
    spectra += [(lowrank.singular_values(_matrix(40, 30, 7, torch.float64)).float(), f) for f in (0.5, 0.9, 0.99)]
    for S, frac in spectra:
        want = lowrank.rank_for_energy(S, frac)
        got = integer(call(rank_for_energy, S, frac), "rank_for_energy's result")
        shown = [round(v, 3) for v in S.tolist()][:6]
        assert got == want, (f"rank_for_energy({shown}{'...' if len(S) > 6 else ''}, {frac}) = {got}, which is not "
                             "the smallest rank keeping that share: is it the share of the squared singular values, "
                             "counted from 1, and does exactly reaching frac count?")
    return "rank_for_energy finds the smallest rank keeping the requested energy (eleven spectra)"


@exercise("1.3")
def largest_rank_test(largest_rank):
    """largest_rank(d, k, budget) -> the largest r at which B·A has fewer than budget·d·k parameters."""
    for d, k, budget in [(4096, 4096, 0.01), (100, 100, 0.1), (576, 1536, 0.05), (1000, 10, 0.5), (768, 768, 0.02), (512, 64, 0.1)]:
        ok = [r for r in range(1, min(d, k) + 1) if lowrank.lora_params(d, k, r) < budget * lowrank.full_params(d, k)]
        want = max(ok) if ok else 0
        got = integer(call(largest_rank, d, k, budget), "largest_rank's result")
        assert got == want, (f"largest_rank({d}, {k}, {budget}) = {got}: " +
                             ("at that rank B·A is not under the budget (strictly fewer)" if got > want else
                              "a larger rank still fits: count A (r × k) and B (d × r) against d·k"))
    return "largest_rank is right for six shapes and budgets"
