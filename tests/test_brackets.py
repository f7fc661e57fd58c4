"""lab/brackets.py: best LR over seeds, plateau by the 2-spread rule, bracketing, ratio interval."""
from pathlib import Path

import pytest

from lora_mini.lab import brackets


def runs_from(table):
    """{(method, lr): [val per seed]} -> run dicts."""
    return [{"method": m, "lr": lr, "seed": s, "val": v, "test": v}
            for (m, lr), vals in table.items() for s, v in enumerate(vals)]


def test_plateau_and_bracketing():
    runs = runs_from({("lora", 1e-4): [0.5, 0.52, 0.48], ("lora", 1e-3): [0.90, 0.92, 0.91],
                      ("lora", 2e-3): [0.93, 0.92, 0.94], ("lora", 1e-2): [0.0, 0.0, 0.0]})
    b = brackets.bracket(runs, "lora")
    assert b["best_lr"] == 2e-3 and b["bracketed"]
    assert b["plateau"] == [2e-3]            # 1e-3 is 0.02 lower, more than 2 x its 0.008 spread
    noisy = runs_from({("lora", 1e-4): [0.5, 0.5, 0.5], ("lora", 1e-3): [0.80, 0.95, 0.90],
                       ("lora", 2e-3): [0.93, 0.92, 0.94], ("lora", 1e-2): [0.0, 0.0, 0.0]})
    assert brackets.bracket(noisy, "lora")["plateau"] == [1e-3, 2e-3]   # noisy enough to tie


def test_edge_optimum_is_not_bracketed_and_verdict():
    runs = runs_from({("lora", 1e-3): [0.5, 0.5], ("lora", 2e-3): [0.9, 0.9], ("lora", 5e-3): [0.1, 0.1],
                      ("full", 1e-4): [0.5, 0.5], ("full", 2e-4): [0.9, 0.9]})
    lora, full = brackets.bracket(runs, "lora"), brackets.bracket(runs, "full")
    assert lora["bracketed"] and not full["bracketed"]
    assert brackets.verdict(lora, full) == "inconclusive at this scale"
    runs += runs_from({("full", 5e-4): [0.2, 0.2]})
    full = brackets.bracket(runs, "full")
    assert full["bracketed"] and brackets.lr_ratio(lora, full)["ratio"] == pytest.approx(10.0)
    assert brackets.verdict(lora, full) == "supported"
    assert brackets.verdict(lora, full, claimed=100.0) == "contradicted"
    wide = runs_from({("full", 2e-3): [0.9, 0.9], ("full", 1e-2): [0.0, 0.0]})   # full FT's plateau reaches LoRA's LR
    full = brackets.bracket(runs + wide, "full")
    assert full["bracketed"] and brackets.lr_ratio(lora, full)["low"] == pytest.approx(1.0)
    assert brackets.verdict(lora, full) == "inconclusive at this scale"      # allows 10x and 1x alike
    with pytest.raises(ValueError, match="no runs"):
        brackets.bracket(runs, "dora")


def test_committed_results_load():
    folder = Path(__file__).resolve().parents[1] / "figures" / "lr_brackets"
    runs = brackets.load_runs(folder)
    assert {r["method"] for r in runs} == {"lora", "full"}
    assert {r["seed"] for r in runs} == {0, 1, 2}
    lora = brackets.bracket(runs, "lora")
    assert lora["bracketed"] and lora["grid"][-1] == 1e-2
