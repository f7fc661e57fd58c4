"""Checks for chapter 8b (several adapters, overfitting, forgetting)."""
import math

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from . import call, close, exercise, rand, same


def _adapters(ranks, fan_in, fan_out, seed, dtype=torch.float32):
    As = [rand(r, fan_in, seed=seed + 2 * k, dtype=dtype) for k, r in enumerate(ranks)]
    Bs = [rand(fan_out, r, seed=seed + 2 * k + 1, dtype=dtype) for k, r in enumerate(ranks)]
    return As, Bs


@exercise("8b.1")
def stack_adapters_test(stack_adapters):
    """stack_adapters(As, Bs, alphas) -> (A: K × r_max × in, B: K × out × r_max, scaling: (K,)), zero-padded."""
    for seed, (ranks, alphas, fan_in, fan_out, dtype) in enumerate([
            ([2, 4, 1], [4.0, 8.0, 3.0], 6, 5, torch.float32), ([8, 8], [16, 4], 10, 3, torch.float64),
            ([3, 1, 5, 2], [1.0, 2.0, 32.0, 5.0], 7, 9, torch.float32)]):
        As, Bs = _adapters(ranks, fan_in, fan_out, 10 * seed, dtype)
        copies = [t.clone() for t in As + Bs]
        out = call(stack_adapters, As, Bs, list(alphas))
        assert all(torch.equal(t, c) for t, c in zip(As + Bs, copies)), "stack_adapters changed an input adapter"
        assert isinstance(out, (tuple, list)) and len(out) == 3, "return three things: (A, B, scaling)"
        A, B, scaling = out
        K, r_max = len(ranks), max(ranks)
        assert torch.is_tensor(A) and tuple(A.shape) == (K, r_max, fan_in), \
            f"A should be K × r_max × in = {(K, r_max, fan_in)}, got {tuple(A.shape) if torch.is_tensor(A) else A}"
        assert torch.is_tensor(B) and tuple(B.shape) == (K, fan_out, r_max), \
            f"B should be K × out × r_max = {(K, fan_out, r_max)}, got {tuple(B.shape) if torch.is_tensor(B) else B}"
        scaling = torch.as_tensor(scaling, dtype=torch.float64).reshape(-1)
        assert scaling.numel() == K, f"one scale per adapter: {K} numbers"
        for k, r in enumerate(ranks):
            assert torch.all(A[k, r:] == 0) and torch.all(B[k, :, r:] == 0), \
                f"adapter {k} (rank {r}): pad A's extra rows and B's extra columns with zeros"
            want = alphas[k] / r * (Bs[k].double() @ As[k].double())
            got = scaling[k] * (B[k].double() @ A[k].double())
            if not same(got, want, tol=1e-6):
                assert not same(got, alphas[k] / r_max * (Bs[k].double() @ As[k].double()), tol=1e-6) or r == r_max, \
                    f"adapter {k} has rank {r}: its scale is α_k / r_k, not α_k / r_max (zeros add no rank)"
                assert not same(got, alphas[k] / math.sqrt(r) * (Bs[k].double() @ As[k].double()), tol=1e-6), \
                    "α/√r is rsLoRA's scale; these adapters use α/r"
            close(got, want, f"scaling[{k}]·B[{k}]@A[{k}] (adapter {k}'s ΔW)", tol=1e-6)
    return "three sets of adapters with mixed ranks stack, zero-padded, with scales α_k / r_k"


class _CountOps(TorchFunctionMode):
    """Counts the torch functions and tensor methods called inside it."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def _mixed_reference(x, A, B, scaling, idx):
    rows = []
    for i, k in enumerate(idx.tolist()):
        if k < 0:
            rows.append(torch.zeros(x.shape[1], B.shape[1], dtype=torch.float64))
        else:
            rows.append(float(scaling[k]) * (x[i].double() @ A[k].double().T @ B[k].double().T))
    return torch.stack(rows)


@exercise("8b.2")
def mixed_lora_test(mixed_lora):
    """mixed_lora(x, A, B, scaling, idx) -> (b, T, out): row i gets s[k]·B[k]·A[k]·x_i, zeros where idx = −1."""
    K, r, d_in, d_out, T = 3, 2, 6, 5, 4
    A, B = rand(K, r, d_in, seed=1), rand(K, d_out, r, seed=2)
    scaling = torch.tensor([1.0, 0.5, 2.5])
    ops = {}
    for b, idx in [(4, [2, 0, -1, 1]), (24, [(3 * i) % 4 - 1 for i in range(24)])]:
        x, idx = rand(b, T, d_in, seed=b), torch.tensor(idx)
        counter = _CountOps()
        with counter:
            got = call(mixed_lora, x, A, B, scaling, idx)
        ops[b] = counter.n
        want = _mixed_reference(x, A, B, scaling, idx)
        assert torch.is_tensor(got) and tuple(got.shape) == (b, T, d_out), f"the output is (b, T, out) = {(b, T, d_out)}"
        got64 = got.double()
        if not same(got64, want, tol=2e-5):
            use = (idx >= 0).double()[:, None, None]
            last = _mixed_reference(x, A, B, scaling, torch.where(idx < 0, K - 1, idx))
            assert not same(got64, last, tol=2e-5), "idx = −1 means no adapter (zeros), not the last adapter A[-1]"
            assert not same(got64 * use, want, tol=2e-5) or torch.all(idx >= 0), "rows with idx = −1 must be zero"
            assert not same(got64, _mixed_reference(x, A, B, torch.ones(K), idx), tol=2e-5), "multiply each row by its adapter's scaling"
        close(got64, want, f"the mixed batch of {b} rows", tol=2e-5)
    assert ops[4] == ops[24], (f"your code runs {ops[4]} torch operations for 4 rows and {ops[24]} for 24: "
                               "it loops over the rows in Python; gather the adapters with idx instead")
    return "each row gets its own adapter (or none) in one batched computation, at two batch sizes"


def _front_reference(acc, fgt):
    """Indices of the non-dominated runs, by sorting on accuracy (best first)."""
    order = sorted(range(len(acc)), key=lambda i: (-acc[i], fgt[i]))
    keep, best_forgetting, group = [], math.inf, []
    i = 0
    while i < len(order):                        # runs with equal accuracy form a group
        j = i
        while j < len(order) and acc[order[j]] == acc[order[i]]:
            j += 1
        group = order[i:j]
        lowest = min(fgt[g] for g in group)
        keep += [g for g in group if fgt[g] == lowest and lowest < best_forgetting]
        best_forgetting = min(best_forgetting, lowest)
        i = j
    return sorted(keep)


@exercise("8b.3")
def pareto_front_test(pareto_front):
    """pareto_front(accuracy, forgetting) -> sorted indices of the runs no other run dominates."""
    g = np.random.default_rng(0)
    cases = [([0.9, 0.8, 0.95, 0.7], [0.5, 0.1, 0.6, 0.05]),
             ([0.9, 0.9, 0.5], [0.2, 0.2, 0.1]),                              # two identical runs: both kept
             ([0.9, 0.9, 0.8], [0.3, 0.2, 0.2]),                              # equal accuracy: lower forgetting wins
             ([0.94], [0.51]),
             (list(np.round(g.uniform(0, 1, 12), 2)), list(np.round(g.uniform(0, 1, 12), 2))),
             (list(np.round(g.uniform(0, 1, 30), 1)), list(np.round(g.uniform(0, 1, 30), 1)))]
    forms = [list, np.array, torch.tensor, list, np.array, list]
    for (acc, fgt), form in zip(cases, forms):
        want = _front_reference([float(a) for a in acc], [float(f) for f in fgt])
        got = call(pareto_front, form(acc), form(fgt))
        got = sorted(int(i) for i in got)
        if got != want:
            assert not (len(got) == 1 and len(want) > 1), \
                "the front is more than the most accurate run: a less accurate run that forgets less is not dominated"
            worst = _front_reference([float(a) for a in acc], [-float(f) for f in fgt])
            assert got != worst or worst == want, "lower forgetting is better: a run with more forgetting is worse"
            assert len(got) == len(set(got)), "list each index once"
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            raise AssertionError(f"for {len(acc)} runs: {len(missing)} non-dominated run(s) missing and {len(extra)} "
                                 "dominated run(s) included; check ties (equal accuracy or equal forgetting)")
    return "the front is right for six sets of runs, ties and duplicates included"
