import json
import math

import pytest

from lora_mini.lab.sweep import (LR_GRID, condition_of, config_key, group, load_records, make_config, next_lr,
                             plan_regret_a, plan_regret_b, run_plan, smoke_scale)


def test_make_config_validates():
    with pytest.raises(ValueError, match="unknown config keys"):
        make_config(method="lora", rank=4, learning_rate=1e-3)
    with pytest.raises(ValueError, match="rank"):
        make_config(method="lora")
    assert make_config(method="full", rank=8)["rank"] is None


def test_config_key_ignores_float_noise_and_condition_drops_lr():
    a = make_config(method="lora", rank=4, lr=1e-3)
    b = make_config(method="lora", rank=4, lr=0.0010000000001)
    assert config_key(a) == config_key(b)
    assert condition_of(a) == condition_of(make_config(method="lora", rank=4, lr=3e-3))


def test_next_lr_brackets_the_minimum():
    def loss(lr):   # a bowl with its minimum at 1e-2 (grid index 6)
        return (math.log10(lr) + 2) ** 2
    res = {}
    while (lr := next_lr(res, start=1e-4)) is not None:
        res[lr] = loss(lr)
    best = min(res, key=res.get)
    assert best == 1e-2 and 3e-2 in res and 3e-3 in res
    assert len(res) <= 7


def test_next_lr_stops_at_grid_edge_and_treats_nan_as_worst():
    res = {lr: -lr for lr in LR_GRID[-3:]}           # keeps improving toward the top of the grid
    assert next_lr(res, start=LR_GRID[-2]) is None
    res = {1e-4: 1.0, 3e-4: float("inf"), 3e-5: 2.0}
    assert next_lr(res, start=1e-4) is None


def test_plans_build_valid_configs():
    for plan in (plan_regret_a, plan_regret_b):
        for scale in (None, smoke_scale):
            groups = plan(scale)
            assert groups and all(g["conditions"] for g in groups)
    a = plan_regret_a()
    assert {c["rank"] for c in a[0]["conditions"]} == {None, 1, 4, 16, 64, 256}


def test_run_plan_skips_done_configs_and_respects_budget(tmp_path):
    """A tiny CPU sweep: records appear as JSON lines, a second call runs nothing new."""
    cfgs = [make_config(**smoke_scale(dict(method="lora", rank=2, steps=100)))]
    groups = [group("t", cfgs, [1e-3, 3e-3])]
    out = tmp_path / "t.jsonl"
    new = run_plan(groups, out, log=lambda *_: None)
    assert len(new) == 2
    recs = load_records(tmp_path)
    assert [r["config"]["lr"] for r in recs] == [1e-3, 3e-3]
    r = recs[0]
    assert r["final"]["heldout_loss"] < r["heldout_loss_init"]          # 2 steps of LoRA help a bit
    assert r["corpus"]["python"] and len(r["curve"]["train_loss"]) == r["config"]["steps"]
    assert json.loads(out.read_text().splitlines()[0])["key"] == config_key(cfgs[0] | {"lr": 1e-3})
    assert run_plan(groups, out, log=lambda *_: None) == []              # nothing recomputed
    more = [group("t", cfgs, [1e-2, 3e-2])]   # budget: the 1st runs (no estimate yet), the 2nd cannot fit
    skipped = []
    new = run_plan(more, out, budget_s=0.01, log=skipped.append)
    assert [r["config"]["lr"] for r in new] == [1e-2]
    assert any("skip" in line for line in skipped)
