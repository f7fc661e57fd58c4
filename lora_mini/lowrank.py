"""Low-rank linear algebra for LoRA: truncated SVD, energy spectra, rank-r parameter counts.

Eckart–Young (1936): for W = U Σ Vᵀ with σ_1 ≥ σ_2 ≥ ..., the best rank-r approximation in both
the Frobenius and the spectral norm is the truncated SVD W_r = U_r Σ_r V_rᵀ, and

    ‖W - W_r‖_F = sqrt(σ_{r+1}² + σ_{r+2}² + ...)        ‖W - W_r‖_2 = σ_{r+1}

A rank-r update ΔW = B·A (B: d × r, A: r × k) stores r·(d + k) numbers instead of d·k.

    best_rank_r(W, r)            -> W_r                      (d × k)
    factorize(W, r)              -> B (d × r), A (r × k)     with B @ A == W_r
    tail_error(S, r, "fro"|"2")  -> ‖W - W_r‖ predicted from the singular values S
    energy(S)                    -> cumulative fraction of Σσ² kept by the top 1, 2, ... values
    rank_for_energy(S, 0.9)      -> smallest r that keeps 90 % of the energy
    effective_rank(S), stable_rank(W)
    full_params(d, k), lora_params(d, k, r), compression_ratio(d, k, r)
    subspace_similarity(U1, U2, i, j)   Hu et al. (2021) φ, in [0, 1]
"""
from __future__ import annotations

from numbers import Integral

import torch


def _check_matrix(W: torch.Tensor) -> None:
    if not isinstance(W, torch.Tensor) or W.ndim != 2:
        got = tuple(W.shape) if isinstance(W, torch.Tensor) else type(W).__name__
        raise ValueError(f"expected a 2-D tensor (d × k), got {got}; reshape it or pass a weight matrix")


def _check_rank(r, max_rank: int | None = None) -> int:
    if isinstance(r, bool) or not isinstance(r, Integral) or r < 0:
        raise ValueError(f"rank r must be a non-negative integer, got {r!r}")
    if max_rank is not None and r > max_rank:
        raise ValueError(f"rank r={r} exceeds min(d, k)={max_rank}; pick r <= {max_rank}")
    return int(r)


def singular_values(W: torch.Tensor) -> torch.Tensor:
    """σ_1 ≥ σ_2 ≥ ... ≥ σ_min(d,k) of W (d × k), computed in float64, returned in float64."""
    _check_matrix(W)
    return torch.linalg.svdvals(W.detach().double())


def truncated_svd(W: torch.Tensor, r: int):
    """U_r (d × r), S_r (r,), Vh_r (r × k): the top-r singular triplets of W, in W's dtype."""
    _check_matrix(W)
    r = _check_rank(r, min(W.shape))
    U, S, Vh = torch.linalg.svd(W.detach().double(), full_matrices=False)
    dtype = W.dtype if W.dtype.is_floating_point else torch.float64
    return U[:, :r].to(dtype), S[:r].to(dtype), Vh[:r].to(dtype)


def best_rank_r(W: torch.Tensor, r: int) -> torch.Tensor:
    """W_r = U_r Σ_r V_rᵀ (d × k): the closest rank-r matrix to W (Eckart–Young)."""
    U, S, Vh = truncated_svd(W, r)
    return (U * S) @ Vh


def factorize(W: torch.Tensor, r: int):
    """B (d × r), A (r × k) with B @ A = W_r, splitting √σ to each side (B = U_r√Σ_r, A = √Σ_r V_rᵀ)."""
    U, S, Vh = truncated_svd(W, r)
    root = S.sqrt()
    return U * root, root[:, None] * Vh


def tail_error(S: torch.Tensor, r: int, norm: str = "fro") -> float:
    """‖W - W_r‖ from W's singular values S: sqrt(Σ_{i>r} σ_i²) for "fro", σ_{r+1} for "2"."""
    S = torch.as_tensor(S).double()
    r = _check_rank(r, S.numel())
    if norm == "fro":
        return float(S[r:].pow(2).sum().sqrt())
    if norm in ("2", 2, "spectral"):
        return float(S[r]) if r < S.numel() else 0.0
    raise ValueError(f"norm must be 'fro' or '2' (spectral), got {norm!r}")


def energy(S: torch.Tensor) -> torch.Tensor:
    """Cumulative energy: e_r = (σ_1² + ... + σ_r²) / Σσ², for r = 1 .. len(S); e_last = 1."""
    S = torch.as_tensor(S).double()
    sq = S.pow(2)
    total = sq.sum()
    if total == 0:
        raise ValueError("all singular values are zero (W = 0): the energy spectrum is undefined")
    return sq.cumsum(0) / total


def rank_for_energy(S: torch.Tensor, frac: float = 0.9) -> int:
    """Smallest r whose top-r singular values keep at least `frac` of the energy Σσ²."""
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], e.g. 0.9 for 90 %, got {frac!r}")
    e = energy(S)
    return int(torch.searchsorted(e, torch.tensor(frac, dtype=e.dtype) - 1e-12)) + 1


def effective_rank(S: torch.Tensor) -> float:
    """exp(entropy of p_i = σ_i / Σσ) (Roy & Vetterli, 2007): between 1 and len(S)."""
    S = torch.as_tensor(S).double()
    if S.sum() == 0:
        raise ValueError("all singular values are zero (W = 0): effective rank is undefined")
    p = S / S.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def stable_rank(W: torch.Tensor) -> float:
    """‖W‖_F² / ‖W‖_2² = Σσ² / σ_1²: a smooth lower bound on rank(W)."""
    S = singular_values(W)
    if S[0] == 0:
        raise ValueError("W = 0 has no stable rank")
    return float(S.pow(2).sum() / S[0] ** 2)


def full_params(d: int, k: int) -> int:
    """Numbers in a dense d × k matrix: d·k."""
    return int(d) * int(k)


def lora_params(d: int, k: int, r: int) -> int:
    """Numbers in B (d × r) and A (r × k): r·(d + k)."""
    return _check_rank(r) * (int(d) + int(k))


def compression_ratio(d: int, k: int, r: int) -> float:
    """d·k / (r·(d + k)): how many times fewer numbers the rank-r factors store."""
    if _check_rank(r) == 0:
        raise ValueError("rank r must be >= 1 for a compression ratio")
    return full_params(d, k) / lora_params(d, k, r)


def singular_basis(M: torch.Tensor, side: str = "right") -> torch.Tensor:
    """Orthonormal columns spanning M's row space ("right": k × n, from Vᵀ) or column space ("left": d × n),
    ordered by singular value. For LoRA's A (r × k) Hu et al. use the right singular vectors."""
    _check_matrix(M)
    U, S, Vh = torch.linalg.svd(M.detach().double(), full_matrices=False)
    if side == "right":
        return Vh.T
    if side == "left":
        return U
    raise ValueError(f"side must be 'right' or 'left', got {side!r}")


def subspace_similarity(U1: torch.Tensor, U2: torch.Tensor, i: int | None = None, j: int | None = None) -> float:
    """φ(U1, U2, i, j) = ‖U1[:, :i]ᵀ U2[:, :j]‖_F² / min(i, j) (Hu et al., 2021, eq. 4), in [0, 1].

    U1: n × p, U2: n × q with orthonormal columns (e.g. from `singular_basis`). 1 means the top-i
    directions of one contain (or are contained in) the top-j of the other; for random subspaces
    of R^n it is about max(i, j) / n.
    """
    _check_matrix(U1)
    _check_matrix(U2)
    if U1.shape[0] != U2.shape[0]:
        raise ValueError(f"bases live in different spaces: {U1.shape[0]} vs {U2.shape[0]} rows")
    i = U1.shape[1] if i is None else _check_rank(i, U1.shape[1])
    j = U2.shape[1] if j is None else _check_rank(j, U2.shape[1])
    if min(i, j) == 0:
        raise ValueError("i and j must be >= 1")
    M = U1[:, :i].double().T @ U2[:, :j].double()
    return float(M.pow(2).sum() / min(i, j))


def subspace_similarity_grid(U1: torch.Tensor, U2: torch.Tensor) -> torch.Tensor:
    """φ(U1, U2, i, j) for all i = 1..p, j = 1..q, as a p × q tensor (for heatmaps)."""
    M2 = (U1.double().T @ U2.double()).pow(2)   # p × q
    cum = M2.cumsum(0).cumsum(1)                # cum[i-1, j-1] = ‖U1[:, :i]ᵀ U2[:, :j]‖_F²
    i = torch.arange(1, M2.shape[0] + 1, dtype=torch.float64)[:, None]
    j = torch.arange(1, M2.shape[1] + 1, dtype=torch.float64)[None, :]
    return cum / torch.minimum(i, j)


def random_orthonormal(n: int, p: int, seed: int = 0) -> torch.Tensor:
    """n × p with orthonormal columns spanning a uniformly random p-dim subspace of R^n."""
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(n, p, generator=g, dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R))


def projection_error(W: torch.Tensor, Q: torch.Tensor, norm: str = "fro") -> float:
    """‖W - Q Qᵀ W‖: the best approximation of W whose columns lie in span(Q) (Q: d × r orthonormal)."""
    W = W.detach().double()
    Q = Q.double()
    E = W - Q @ (Q.T @ W)
    return float(torch.linalg.matrix_norm(E, ord="fro" if norm == "fro" else 2))


__all__ = [
    "singular_values", "truncated_svd", "best_rank_r", "factorize", "tail_error", "energy",
    "rank_for_energy", "effective_rank", "stable_rank", "full_params", "lora_params",
    "compression_ratio", "singular_basis", "subspace_similarity", "subspace_similarity_grid",
    "random_orthonormal", "projection_error",
]
