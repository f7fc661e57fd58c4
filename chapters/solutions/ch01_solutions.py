"""Reference solutions for chapter 1 (SVD and low rank)."""
import torch


def best_rank_r(W, r):
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]


def rank_for_energy(S, frac):
    e = S.double().pow(2).cumsum(0) / S.double().pow(2).sum()
    return int((e < frac - 1e-12).sum()) + 1


def largest_rank_under_1_percent(d=4096, k=4096):
    r = 0
    while (r + 1) * (d + k) < 0.01 * d * k:
        r += 1
    return r


def rank2_error():
    W = torch.diag(torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0]))
    return float(torch.linalg.matrix_norm(W - best_rank_r(W, 2)))


SOLUTIONS = {
    "1_1": best_rank_r,
    "1_2": rank_for_energy,
    "1_3": largest_rank_under_1_percent(),
    "1_4": rank2_error(),
}
