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
    new = run_plan(more, out, budget=0.01, log=skipped.append)
    assert [r["config"]["lr"] for r in new] == [1e-2]
    assert any("skip" in line for line in skipped)


def test_plan_b_starts_from_recorded_best_lrs_without_module_state():
    """The start LRs of plan b come from the records run_plan passes in (no module-level record list)."""
    from lora_mini.lab import sweep
    layers, batch = plan_regret_b()
    rec = lambda lr, loss, **c: {"config": make_config(lr=lr, **c), "final": {"heldout_loss": loss}}  # noqa: E731
    records = [rec(1e-3, 2.5, method="lora", rank=64), rec(3e-3, 2.0, method="lora", rank=64),
               rec(3e-4, 1.5, method="full", batch_size=32, steps=200)]
    assert sweep.search_start(layers, layers["conditions"][0], []) == 1e-3          # nothing recorded: the default
    assert sweep.search_start(layers, layers["conditions"][0], records) == 3e-3     # r=64's best LR
    full128 = next(c for c in batch["conditions"] if c["method"] == "full" and c["batch_size"] == 128)
    assert sweep.search_start(batch, full128, []) == 1e-4
    assert sweep.search_start(batch, full128, records) == 3e-4                      # full FT at batch 32
    assert not hasattr(sweep, "_RECORDS")


@pytest.mark.parametrize("argv, words", [
    (["--ranks", "4,x"], "--ranks: 'x' is not a valid int"),
    (["--ranks", "0"], "--ranks values must be positive"),
    (["--lrs", "1e-3,-1"], "--lrs values must be positive"),
    (["--layers", "attn,heads"], "--layers must be a comma list of all,attn,mlp"),
    (["--methods", "lora,dora"], "--methods must be a comma list of lora,full"),
    (["--budget-s", "0"], "--budget-s must be a positive number"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--out", "."], "is a folder"),
])
def test_bad_options_are_refused_before_any_work(argv, words, tmp_path, monkeypatch, capsys):
    from lora_mini.__main__ import main as cli
    from lora_mini.lab import sweep
    monkeypatch.setattr(sweep, "RunContext", lambda *a, **k: pytest.fail("model loaded"))
    assert cli(["sweep", "--out", str(tmp_path / "x.jsonl"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x.jsonl").exists()


def test_cli_records_its_config_and_resumes(tmp_path, capsys):
    from lora_mini.__main__ import main as cli
    out = tmp_path / "x.jsonl"
    argv = ["sweep", "--smoke", "--ranks", "2", "--lrs", "1e-3", "--steps", "100", "--out", str(out),
            "--script", "bash scripts/gpu/x.sh"]
    assert cli(argv) == 0
    (rec,) = load_records(out)
    assert rec["command"] == "python -m lora_mini sweep " + " ".join(argv[1:]) and rec["script"] == "bash scripts/gpu/x.sh"
    from lora_mini.lab.system import code_version
    assert rec["code_version"] == code_version() and rec["code_version"]                 # this checkout's commit
    assert rec["sweep"]["ranks"] == [2] and rec["sweep"]["lrs"] == [1e-3] and rec["sweep"]["smoke"] is True
    assert rec["config"]["model"] == "tiny-llama" and rec["config"]["steps"] == 2     # smoke_scale
    assert cli(argv) == 0 and len(load_records(out)) == 1                              # resumed: nothing new
    assert "0 new runs" in capsys.readouterr().out


def test_plan_parts_cover_the_plan_once_and_keep_families_together():
    from lora_mini.lab.sweep import family, plan_part, plan_regret_c
    groups = plan_regret_c()
    parts = [plan_part(groups, k, 4) for k in range(4)]
    for gi, g in enumerate(groups):
        got = [config_key(c) for p in parts for c in p[gi]["conditions"]]
        assert sorted(got) == sorted(config_key(c) for c in g["conditions"])        # each condition exactly once
    owner = {}
    for k, p in enumerate(parts):
        for g in p:
            for c in g["conditions"]:
                assert owner.setdefault(family(c), k) == k                          # a family never split
    assert all(any(g["conditions"] for g in p) for p in parts)


def test_around_refines_only_a_bracketed_optimum():
    from lora_mini.lab.sweep import QUARTER, next_config, on_grid
    cond = make_config(method="lora", rank=4)
    g = group("q", [cond], "around")

    def rec(lr, loss):
        c = {**cond, "lr": lr}
        return {"config": c, "key": config_key(c), "final": {"heldout_loss": loss}}
    records = [rec(1e-3, 1.0), rec(3e-3, 0.9)]                  # best at the edge of what ran: not bracketed
    assert next_config(g, cond, records, {r["key"] for r in records}) == (None, True)
    records.append(rec(1e-2, 1.2))                               # now 3e-3 has a worse neighbour each side
    done = {r["key"] for r in records}
    cfg, finished = next_config(g, cond, records, done)
    assert math.isclose(cfg["lr"], 3e-3 * QUARTER[0]) and not finished and not on_grid(cfg["lr"])
    records.append(rec(cfg["lr"], 0.85))                         # a better quarter point does not move the centre
    done.add(records[-1]["key"])
    cfg2, _ = next_config(g, cond, records, done)
    assert math.isclose(cfg2["lr"], 3e-3 * QUARTER[1])
    search = group("s", [cond], "search", start=3e-3)           # off-grid points never confuse the search
    assert next_config(search, cond, records, done) == (None, True)


def test_bad_part_is_refused(tmp_path, capsys):
    from lora_mini.__main__ import main as cli
    for bad in ("3/3", "x/2", "1"):
        assert cli(["sweep", "--plan", "regret_c", "--part", bad, "--out", str(tmp_path / "x.jsonl")]) == 2
        assert "--part must be K/N" in capsys.readouterr().err
