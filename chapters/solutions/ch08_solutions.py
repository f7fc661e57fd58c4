"""Reference solutions for chapter 8's exercises (checked by tests/test_exercises.py)."""
import torch


def dora_weight(W, A, B, m, scaling):
    V = W + scaling * B @ A                               # out × in
    return m[:, None] * V / V.norm(dim=1, keepdim=True)


def pissa(W, r, scaling):
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    root = torch.sqrt(S[:r] / scaling)
    B = U[:, :r] * root                                   # out × r
    A = root[:, None] * Vh[:r]                            # r × in
    return A, B, W - scaling * B @ A


def mixed_lora(x, A, B, scaling, idx):
    z = torch.einsum("bti,bri->btr", x, A[idx])           # b × T × r
    return torch.einsum("btr,bor->bto", z, B[idx]) * scaling[idx][:, None, None]


SOLUTIONS = {
    "8_1": dora_weight,
    "8_2": 30 * 2 * (576 * 16 + 16 + 16 * 576 + 576),
    "8_3": pissa,
    "8_4": mixed_lora,
    "8_5": 4 + 32 / 64,
}
