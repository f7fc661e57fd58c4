import pytest
import torch

from lora_mini import lowrank as lr


def rand(d, k, seed=0, decay=None):
    """A d × k Gaussian matrix, or one with singular values decay**i when decay is given."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, k, generator=g, dtype=torch.float64)
    if decay is None:
        return W
    U, _, Vh = torch.linalg.svd(W, full_matrices=False)
    S = decay ** torch.arange(min(d, k), dtype=torch.float64)
    return (U * S) @ Vh


@pytest.mark.parametrize("d,k", [(40, 30), (30, 40), (25, 25)])
@pytest.mark.parametrize("r", [0, 1, 5, 24])
def test_eckart_young_error_equals_tail(d, k, r):
    W = rand(d, k, seed=d + k + r)
    S = lr.singular_values(W)
    E = W - lr.best_rank_r(W, r)
    assert torch.linalg.matrix_rank(lr.best_rank_r(W, r)) == r
    assert abs(torch.linalg.matrix_norm(E, "fro") - lr.tail_error(S, r, "fro")) < 1e-9
    assert abs(torch.linalg.matrix_norm(E, 2) - lr.tail_error(S, r, "2")) < 1e-9
    assert abs(lr.tail_error(S, r, "2") - S[r]) < 1e-12


def test_full_rank_reconstructs_and_float32_keeps_dtype():
    W = rand(20, 12, seed=1).float()
    W12 = lr.best_rank_r(W, 12)
    assert W12.dtype == torch.float32
    assert torch.allclose(W12, W, atol=1e-5)
    assert lr.tail_error(lr.singular_values(W), 12) == 0.0
    assert lr.tail_error(lr.singular_values(W), 12, "2") == 0.0


@pytest.mark.parametrize("r", [1, 3, 8])
def test_truncated_svd_beats_random_rank_r(r):
    W = rand(50, 40, seed=2, decay=0.85)
    err_svd = torch.linalg.matrix_norm(W - lr.best_rank_r(W, r), "fro")
    g = torch.Generator().manual_seed(3)
    for seed in range(20):
        Q = lr.random_orthonormal(50, r, seed=seed)       # best approximation inside a random subspace
        assert lr.projection_error(W, Q) >= err_svd - 1e-12
        B, A = torch.randn(50, r, generator=g, dtype=torch.float64), torch.randn(r, 40, generator=g, dtype=torch.float64)
        c = (W * (B @ A)).sum() / (B @ A).pow(2).sum()      # best scale for a random factorization
        assert torch.linalg.matrix_norm(W - c * B @ A, "fro") > err_svd


def test_factorize_reproduces_best_rank_r():
    W = rand(30, 20, seed=4)
    B, A = lr.factorize(W, 6)
    assert B.shape == (30, 6) and A.shape == (6, 20)
    assert torch.allclose(B @ A, lr.best_rank_r(W, 6), atol=1e-10)
    U, S, Vh = lr.truncated_svd(W, 6)
    assert torch.allclose(U.T @ U, torch.eye(6, dtype=U.dtype), atol=1e-10)
    assert torch.all(S[:-1] >= S[1:])


def test_energy_and_rank_for_energy():
    S = torch.tensor([3.0, 2.0, 1.0, 0.0])          # squares 9, 4, 1, 0 -> total 14
    e = lr.energy(S)
    assert torch.allclose(e, torch.tensor([9 / 14, 13 / 14, 1.0, 1.0], dtype=torch.float64))
    assert lr.rank_for_energy(S, 0.5) == 1
    assert lr.rank_for_energy(S, 9 / 14) == 1      # exactly reached at r = 1
    assert lr.rank_for_energy(S, 0.9) == 2
    assert lr.rank_for_energy(S, 1.0) == 3
    W = rand(30, 30, seed=5, decay=0.7)
    r = lr.rank_for_energy(lr.singular_values(W), 0.99)
    rel = torch.linalg.matrix_norm(W - lr.best_rank_r(W, r)) ** 2 / torch.linalg.matrix_norm(W) ** 2
    rel_prev = torch.linalg.matrix_norm(W - lr.best_rank_r(W, r - 1)) ** 2 / torch.linalg.matrix_norm(W) ** 2
    assert rel <= 0.01 + 1e-12 < rel_prev


def test_effective_and_stable_rank():
    assert lr.effective_rank(torch.ones(7)) == pytest.approx(7.0)
    assert lr.effective_rank(torch.tensor([5.0, 0.0, 0.0])) == pytest.approx(1.0)
    W = torch.diag(torch.tensor([2.0, 1.0, 1.0]))
    assert lr.stable_rank(W) == pytest.approx(6 / 4)
    low = rand(40, 3, seed=6) @ rand(3, 40, seed=7)
    assert lr.stable_rank(low) <= 3 + 1e-9
    assert lr.effective_rank(lr.singular_values(rand(40, 40, seed=8))) > lr.effective_rank(lr.singular_values(low))


def test_parameter_counts_match_real_layers():
    for d, k, r in [(576, 576, 8), (1536, 576, 16), (192, 576, 1)]:
        A = torch.nn.Linear(k, r, bias=False)
        B = torch.nn.Linear(r, d, bias=False)
        assert lr.lora_params(d, k, r) == A.weight.numel() + B.weight.numel()
        assert lr.full_params(d, k) == torch.nn.Linear(k, d, bias=False).weight.numel()
        assert lr.compression_ratio(d, k, r) == pytest.approx(d * k / (r * (d + k)))
    assert lr.compression_ratio(4096, 4096, 8) == 256.0


def test_subspace_similarity():
    U = lr.random_orthonormal(64, 8, seed=0)
    assert lr.subspace_similarity(U, U) == pytest.approx(1.0)
    assert lr.subspace_similarity(U, U[:, :3]) == pytest.approx(1.0)       # contained
    perp = torch.linalg.qr(torch.cat([U, lr.random_orthonormal(64, 4, seed=1)], 1))[0][:, 8:]
    assert lr.subspace_similarity(U, perp) == pytest.approx(0.0, abs=1e-12)
    sims = [lr.subspace_similarity(lr.random_orthonormal(64, 4, seed=s), lr.random_orthonormal(64, 4, seed=s + 100))
            for s in range(50)]
    assert abs(sum(sims) / len(sims) - 4 / 64) < 0.02                        # random: about max(i, j)/n
    grid = lr.subspace_similarity_grid(U, perp[:, :3])
    assert grid.shape == (8, 3)
    V = lr.random_orthonormal(64, 5, seed=2)
    grid = lr.subspace_similarity_grid(U, V)
    for i, j in [(1, 1), (3, 5), (8, 2)]:
        assert grid[i - 1, j - 1] == pytest.approx(lr.subspace_similarity(U, V, i, j))
    A8 = torch.randn(8, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    basis = lr.singular_basis(A8, "right")
    assert basis.shape == (64, 8)
    assert torch.allclose(basis.T @ basis, torch.eye(8, dtype=torch.float64), atol=1e-10)
    assert lr.subspace_similarity(basis, lr.singular_basis(3 * A8[:4] - A8[4:], "right")) == pytest.approx(1.0)


def test_bad_inputs_raise_clear_errors():
    W = rand(10, 6)
    with pytest.raises(ValueError, match="exceeds min"):
        lr.best_rank_r(W, 7)
    with pytest.raises(ValueError, match="non-negative integer"):
        lr.best_rank_r(W, 2.5)
    with pytest.raises(ValueError, match="2-D"):
        lr.best_rank_r(torch.ones(3, 4, 5), 1)
    with pytest.raises(ValueError, match="frac"):
        lr.rank_for_energy(torch.ones(3), 1.5)
    with pytest.raises(ValueError, match="norm"):
        lr.tail_error(torch.ones(3), 1, "nuc")
    with pytest.raises(ValueError, match="zero"):
        lr.energy(torch.zeros(3))
    with pytest.raises(ValueError, match="different spaces"):
        lr.subspace_similarity(torch.eye(4), torch.eye(5))
