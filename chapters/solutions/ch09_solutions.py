"""Reference solutions for appendix 9's exercises."""


def lora_grads(x, g, A, B, s, W):
    gB = g @ B                                   # N × r
    return g @ W + s * gB @ A, s * gB.T @ x, s * g.T @ (x @ A.T)


def breakeven_d(flops_per_s, bytes_per_s, passes, bytes_per_elem):
    # 2·N·d² / F = passes·N·d·e / BW  ->  d = passes·e·F / (2·BW)
    return passes * bytes_per_elem * flops_per_s / (2 * bytes_per_s)


SOLUTIONS = {
    "9_1": (4 * 4096 ** 2 + 12 * 4096 * 16) / (6 * 4096 ** 2),
    "9_2": 4 * 16 * 1024 * 576,
    "9_3": lora_grads,
    "9_4": breakeven_d,
}
