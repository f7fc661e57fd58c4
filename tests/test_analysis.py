import math

import torch

from lora_mini.lab.analysis import (amplification, claim1, claim2, claim5, direction_overlap, interp_best_lr,
                                missing_runs, phi_grid, verdicts)
from lora_mini.lab.sweep import LR_GRID, config_key, make_config


def test_interp_best_lr_finds_a_parabola_minimum():
    pts = {lr: (math.log10(lr) + 3.3) ** 2 for lr in LR_GRID}
    b = interp_best_lr(pts)
    assert abs(math.log10(b["lr"]) + 3.3) < 1e-9 and b["grid_lr"] == 3e-4 and not b["edge"]
    edge = interp_best_lr({1e-5: 1.0, 3e-5: 2.0})
    assert edge["edge"] and edge["lr"] == 1e-5
    assert interp_best_lr({}) is None


def _rec(lr, loss, **kw):
    cfg = make_config(lr=lr, **kw)
    return {"config": cfg, "key": config_key(cfg), "final": {"heldout_loss": loss, "train_loss": loss},
            "diverged": False, "heldout_loss_init": 2.0,
            "curve": {"eval_step": [0, 25, 200], "heldout_loss": [2.0, 1.5, loss]}}


def _bowl(center, **kw):
    return [_rec(lr, 1.0 + 0.1 * (math.log10(lr) - math.log10(center)) ** 2, **kw) for lr in LR_GRID[1:7]]


def test_claim1_ratio_and_verdict_come_from_records():
    recs = _bowl(1e-4, method="full") + _bowl(1e-3, method="lora", rank=16) + _bowl(1e-3, method="lora", rank=64)
    v = claim1(recs)
    assert v["verdict"] == "agrees" and abs(v["numbers"]["median_r>=4"] - 10) < 1e-6
    assert abs(v["numbers"]["grid_median_r>=4"] - 10) < 1e-9 and "on the half-decade grid" in v["text"]
    same = _bowl(1e-4, method="full") + _bowl(1e-4, method="lora", rank=16)
    assert claim1(same)["verdict"] == "disagrees"


def test_claim2_spread_between_ranks():
    recs = _bowl(1e-3, method="lora", rank=4) + _bowl(3e-3, method="lora", rank=64) + _bowl(3e-4, method="lora", rank=1)
    v = claim2(recs)
    assert abs(v["numbers"]["spread"] - 3) < 1e-6 and v["numbers"]["rank1_lower"] is True
    assert v["verdict"] == "partly"


def test_missing_claims_say_not_run():
    assert all(v["verdict"] == "not run" for v in verdicts([]))


def test_direction_overlap_identical_vs_random():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(8, 500, generator=g)
    assert abs(direction_overlap(A, A)[0] - 1) < 1e-9
    other = torch.randn(64, 500, generator=g)
    assert max(direction_overlap(A, other)) < 0.2     # random level ≈ 8 / 500
    G = phi_grid(A, A)
    assert G.shape == (8, 8) and torch.allclose(torch.diagonal(G), torch.ones(8, dtype=G.dtype))


def test_amplification_small_along_w_large_elsewhere():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(64, 48, generator=g)
    U, S, Vh = torch.linalg.svd(W)
    along = amplification(W, U[:, :4] @ Vh[:4] * 0.1, 4)
    assert along["factor"] < 0.1 and abs(along["proj_dW"] - along["proj_W"]) < 1e-9
    across = amplification(W, U[:, -4:] @ Vh[-4:48][:4] * 0.1, 4)
    assert across["factor"] > 3 * along["factor"]
    assert across["proj_W"] >= across["proj_dW"] and across["proj_W"] >= across["proj_random"]


def test_claim5_names_the_batch_sizes_not_run():
    recs = []
    for b, gap in ((32, 0.1), (128, 0.3)):
        steps = 200 * 32 // b
        recs += _bowl(1e-3, method="full", batch_size=b, steps=steps)
        recs += [{**r, "final": {"heldout_loss": r["final"]["heldout_loss"] + gap, "train_loss": 0.0}}
                 for r in _bowl(3e-3, method="lora", rank=64, batch_size=b, steps=steps)]
    v = claim5(recs)
    assert v["numbers"]["missing_batches"] == [8] and "batch 8 not run" in v["text"]
    assert abs(v["numbers"]["gap"][128] - v["numbers"]["gap"][32] - 0.2) < 1e-9 and v["verdict"] == "agrees"


def test_missing_runs_lists_planned_conditions_without_records():
    everything = missing_runs([])
    assert "full FT batch=8 steps=800 seed=0" in everything
    one = _bowl(1e-3, method="full", batch_size=8, steps=800)
    assert missing_runs(one) == [m for m in everything if m != "full FT batch=8 steps=800 seed=0"]
