"""Each method's best learning rate over several seeds, and whether the grid brackets it (chapter 6).

Input: the JSON files of `python -m lora_mini finetune-sweep` (one per method and seed, e.g.
figures/lr_brackets/lora_seed0.json; `scripts/gpu/lr_brackets.sh` writes them). Each run gives a
validation exact match at one LR. The rule, stated once:

    an LR is worse than the best one when its mean accuracy over seeds is lower by more than
    twice the larger of the two seed spreads (population standard deviations);
    the plateau is every LR that is not worse; the optimum is bracketed when the plateau
    touches neither end of the grid.

The ratio of the two methods' best LRs then comes with an interval: from the smallest LoRA LR
on its plateau over the largest full-FT LR on its plateau, to the largest over the smallest.
"""
from __future__ import annotations

import glob
import json
import statistics
from collections import defaultdict
from pathlib import Path

SPREADS = 2.0    # "a difference counts when it exceeds twice the spread across seeds"


def load_runs(folder) -> list[dict]:
    """Every run of every sweep JSON in `folder`: {method, lr, seed, val, test}."""
    runs = []
    for path in sorted(glob.glob(str(Path(folder) / "*.json"))):
        for r in json.loads(Path(path).read_text())["runs"]:
            runs.append({"method": r["method"], "lr": r["lr"], "seed": r["seed"],
                         "val": r["exact_match_val"], "test": r["exact_match_after"]})
    return runs


def by_lr(runs: list[dict], method: str, key: str = "val") -> list[dict]:
    """Per LR of one method (sorted): mean and spread of `key` over seeds, and the seeds seen."""
    acc = defaultdict(dict)
    for r in runs:
        if r["method"] == method:
            acc[r["lr"]][r["seed"]] = r[key]
    return [{"lr": lr, "mean": statistics.fmean(v.values()), "spread": statistics.pstdev(v.values()),
             "seeds": sorted(v)} for lr, v in sorted(acc.items())]


def bracket(runs: list[dict], method: str) -> dict:
    """The best LR of `method`, its plateau (by the rule above) and whether the grid brackets it."""
    rows = by_lr(runs, method)
    if not rows:
        raise ValueError(f"no runs of method {method!r}")
    best = max(rows, key=lambda r: r["mean"])
    worse = lambda r: best["mean"] - r["mean"] > SPREADS * max(best["spread"], r["spread"])   # noqa: E731
    plateau = [r["lr"] for r in rows if not worse(r)]
    grid = [r["lr"] for r in rows]
    return {"method": method, "best_lr": best["lr"], "best_mean": best["mean"], "best_spread": best["spread"],
            "plateau": plateau, "grid": grid,
            "bracketed": grid[0] not in plateau and grid[-1] not in plateau, "rows": rows}


def lr_ratio(lora: dict, full: dict) -> dict:
    """Ratio of the best LRs (LoRA / full) with the interval spanned by the two plateaus."""
    return {"ratio": lora["best_lr"] / full["best_lr"],
            "low": min(lora["plateau"]) / max(full["plateau"]),
            "high": max(lora["plateau"]) / min(full["plateau"])}


def verdict(lora: dict, full: dict, claimed: float = 10.0) -> str:
    """Claim 1 ("LoRA's best LR is ~10x full FT's") at this scale: inconclusive unless both optima are
    bracketed; then contradicted if the plateaus' ratio interval excludes `claimed`, supported if it holds
    `claimed` and excludes 1, else (an interval that also allows equal LRs) inconclusive."""
    if not (lora["bracketed"] and full["bracketed"]):
        return "inconclusive at this scale"
    r = lr_ratio(lora, full)
    if not r["low"] <= claimed <= r["high"]:
        return "contradicted"
    # "10x" is a difference: an interval that also allows 1 (the same LR for both) shows none
    return "supported" if r["low"] > 1 else "inconclusive at this scale"


def plot(runs: list[dict], path=None, ax=None):
    """Mean validation exact match against LR, one line per method, seed spread as error bars."""
    import matplotlib.pyplot as plt
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for method, marker in (("lora", "o"), ("full", "s")):
        rows = by_lr(runs, method)
        ax.errorbar([r["lr"] for r in rows], [100 * r["mean"] for r in rows],
                    yerr=[100 * r["spread"] for r in rows], marker=marker, capsize=3, label=method)
    ax.set(xscale="log", xlabel="peak learning rate", ylabel="validation exact match (%)",
           title="mean over seeds (bars: spread)")
    ax.grid(alpha=0.3)
    ax.legend()
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=150)
    return ax
