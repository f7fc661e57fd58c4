import math

import pytest
import torch

from lora_mini.lab.analysis import (amplification, claim3, claim4, claim6, claim7, direction_overlap,
                                interp_best_lr, missing_runs, phi_grid)
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


def test_missing_claims_say_not_run():
    assert all(v["verdict"] == "not run" for v in (claim3([]), claim4([]), claim6(None), claim7(None)))


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


def test_missing_runs_lists_planned_conditions_without_records():
    everything = missing_runs([])
    assert "full FT batch=8 steps=800 seed=0" in everything
    one = _bowl(1e-3, method="full", batch_size=8, steps=800)
    assert missing_runs(one) == [m for m in everything if m != "full FT batch=8 steps=800 seed=0"]


def _two_seeds(center1, **kw):
    """Bowls at seeds 0 and 1 (seed 1's optimum at center1 times 1.1), half-decade grid."""
    out = []
    for s, c in ((0, center1), (1, center1 * 1.1)):
        out += _bowl(c, seed=s, **kw)
    return out


def test_lr_search_brackets_over_seeds_and_interpolates_each_seed():
    from lora_mini.lab.analysis import lr_search
    recs = _two_seeds(1e-3, method="lora", rank=16)
    b = lr_search(recs, method="lora", rank=16)
    assert b["best_lr"] == 1e-3 and b["bracketed"] and b["plateau"] == [1e-3]
    assert abs(b["interp"][0]["lr"] - 1e-3) < 1e-9 and abs(b["interp"][1]["lr"] - 1.1e-3) < 1e-9
    assert abs(b["interp_sigma"] - math.log10(1.1) / 2) < 1e-9 and b["interp_seeds"] == [0, 1]
    with pytest.raises(ValueError, match="regret_c"):
        lr_search(_bowl(1e-3, method="full"), method="full")          # no seed 1


def test_claim1_seeds_ratio_interval_and_rank_spread():
    from lora_mini.lab.analysis import RANKS, claim1_seeds, rank_spread
    recs = _two_seeds(1e-4, method="full")
    for r in RANKS:
        recs += _two_seeds(1e-3 * (1.5 if r == 256 else 1), method="lora", rank=r)
    c1 = claim1_seeds(recs)
    x = c1["ranks"][16]
    assert abs(x["grid"] - 10) < 1e-9 and (abs(x["low"] - 10) < 1e-9) and x["verdict"] == "supported"
    assert all(abs(v - 10) < 1e-6 for v in x["interp"].values())
    rs = rank_spread(c1)
    assert abs(rs["spread"] - 1.5) < 1e-6 and abs(rs["noise"] - 1.1) < 1e-6 and rs["one_seed"] == []


def test_batch_cells_and_gaps_mark_unbracketed_and_missing_cells():
    from lora_mini.lab.analysis import batch_cells, batch_gaps
    recs = []
    for s in (0, 1):
        recs += _bowl(1e-3, method="full", seed=s) + [
            {**r, "final": {"heldout_loss": r["final"]["heldout_loss"] + 0.1 * (1 + s)}}
            for r in _bowl(3e-3, method="lora", rank=4, seed=s)]
    edge = [_rec(lr, 1.5 - lr, method="lora", rank=4, batch_size=8, steps=800) for lr in (1e-3, 3e-3)]
    rows = batch_cells(recs + edge + _bowl(1e-3, method="full", batch_size=8, steps=800), ranks=(4,))
    cell = {(r["method"], r["batch"], r["seed"]): r for r in rows}
    assert cell[("lora", 8, 0)]["bracketed"] is False and cell[("lora", 8, 0)]["lr"] == 3e-3
    assert cell[("full", 32, 1)]["bracketed"] and ("full", 128, 0) not in cell
    g = batch_gaps(rows, 4)
    assert sorted(g) == [8, 32] and abs(g[32]["mean"] - 0.15) < 1e-9 and abs(g[32]["spread"] - 0.05) < 1e-9
    assert not g[8]["bracketed"] and list(g[8]["gaps"]) == [0]


def test_overlap_control_needs_all_four_adapters(tmp_path):
    from lora_mini.lab.analysis import overlap_control
    with pytest.raises(ValueError, match="saved adapters"):
        overlap_control([], tmp_path)
