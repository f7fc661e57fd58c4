"""`python -m lora_mini finetune-sweep`: LoRA vs full fine-tuning, each at its best LR (chapter 6).

A small LR grid per method at one step budget (same data and seed; the best LR is chosen on a
validation split disjoint from the test set), a merge check on the best LoRA run, and the best
LoRA LR once more with eager steps (what the CUDA graph saves). Writes one JSON (rewritten
after every run: command, device, torch, load_seconds, config, lr_grid, runs, skipped, best,
lr_ratio_lora_over_full, merge_check, eager_reference, total_seconds) and two figures.

    python -m lora_mini finetune-sweep --preset gpu --n-val 300 --json figures/finetune_gpu.json
"""
from __future__ import annotations

import copy
import gc
import itertools
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from .budget import Budget
from .checkpoint import atomic_write_text
from .commands import add_arguments as add_finetune_arguments
from .commands import check_before_loading, config_from_args, load_base, resolve_device


def add_arguments(p) -> None:
    add_finetune_arguments(p)
    g = p.add_argument_group("the sweep")
    g.add_argument("--lora-lrs", default="1e-3,2e-3,4e-3,8e-3", help="LoRA's LR grid (empty: skip LoRA)")
    g.add_argument("--full-lrs", default="2.5e-5,5e-5,1e-4,2e-4", help="full fine-tuning's LR grid (empty: skip)")
    g.add_argument("--json", default="runs/finetune_sweep/finetune_sweep.json",
                   help="the results file (figures are named after it)")
    g.add_argument("--sweep-budget", type=float, default=None, help="start no new run after this many seconds")
    g.add_argument("--no-eager-reference", action="store_true", help="skip the eager re-run of the best LoRA LR")
    g.add_argument("--target", type=float, default=0.95, help="record the first eval at this exact match")


def _lrs(text: str) -> list[float]:
    from .config import ConfigError
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"an LR grid must be comma-separated numbers, e.g. 1e-3,2e-3; got {text!r}") from None


def one_run(base, tok, cfg, device: str, target: float, progress: bool = False) -> dict:
    """Fine-tune a copy of `base` with `cfg` on `device`; the results dict (+ first_eval_at_target)."""
    import torch
    from .finetune import run_finetune, summary
    from .trainer import model_dtype, resolve_precision
    dtype = model_dtype(resolve_precision(cfg.train.precision, device), cfg.lora.method)
    model = copy.deepcopy(base).to(device=device, dtype=dtype)
    res = run_finetune(model, tok, cfg, progress=progress)
    reach = next((e for e in res["evals"] if e.get("exact_match", 0) >= target), None)
    res["first_eval_at_target"] = None if reach is None else {"target": target, "step": reach["step"],
                                                              "train_seconds": reach["train_seconds"]}
    print(summary(res), f"\nvalidation exact match: {res.get('exact_match_val')}", flush=True)
    del model
    gc.collect()                                   # free this run's CUDA graph pool before the next run
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return res


def best_runs(runs: list[dict]) -> dict:
    """{method: the run with the best validation exact match (ties: the lower final loss)}."""
    best = {}
    for method in ("lora", "full"):
        mine = [r for r in runs if r["method"] == method]
        if mine:
            best[method] = max(mine, key=lambda r: (r.get("exact_match_val") or 0, -r["history"][-1]["loss"]))
    return best


def summarize(record: dict) -> None:
    """Add best, lr_ratio_lora_over_full and merge_check to the record (in place)."""
    best = best_runs(record["runs"])
    record["best"] = {m: {k: v for k, v in r.items() if k not in ("history", "evals", "samples")}
                      for m, r in best.items()}
    if len(best) == 2:
        record["lr_ratio_lora_over_full"] = best["lora"]["lr"] / best["full"]["lr"]
    if "lora" in best and "merge_check" in best["lora"]:
        record["merge_check"] = {"lr": best["lora"]["lr"], "exact_match_unmerged": best["lora"]["exact_match_after"],
                                 **best["lora"]["merge_check"]}


def plot_sweep(record: dict, json_path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .finetune import plot_run
    stem = "06_gpu" if json_path.name == "finetune_gpu.json" else json_path.stem
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for method, marker in (("lora", "o"), ("full", "s")):
        runs = sorted((r for r in record["runs"] if r["method"] == method), key=lambda r: r["lr"])
        ax.plot([r["lr"] for r in runs], [100 * (r.get("exact_match_val") or 0) for r in runs], marker + "-",
                label=method)
    c = record["config"]["train"]
    ax.set(xscale="log", xlabel="peak learning rate", ylabel="validation exact match (%)",
           title=f"LR sweep, {c['steps']} steps × {c['batch_size']}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(json_path.with_name(f"{stem}_sweep.png"), dpi=150)
    plt.close(fig)
    best = best_runs(record["runs"])
    if best:
        plot_run(list(best.values()), json_path.with_name(f"{stem}_curves.png"))


def _eager_reference(record, base, tok, cfg, device, args) -> None:
    best = best_runs(record["runs"]).get("lora")
    if best is None or args.no_eager_reference:
        return
    ref_cfg = replace(cfg, lora=replace(cfg.lora, method="lora"), train=replace(cfg.train, lr=best["lr"],
                      strategy="eager"), out=str(Path(args.out) / f"lora_lr{best['lr']:g}_eager"))
    ref = one_run(base, tok, ref_cfg, device, args.target)
    record["eager_reference"] = {k: v for k, v in ref.items() if k not in ("history", "samples")}
    record["eager_reference"]["graph_speedup"] = ref["train_seconds"] / best["train_seconds"]


def main(args) -> int:
    import torch
    cfg = replace(config_from_args(args), out=None)
    lrs = {"lora": _lrs(args.lora_lrs), "full": _lrs(args.full_lrs)}
    json_path = Path(args.json)
    check_before_loading(replace(cfg, out=args.out), args)
    device = resolve_device(cfg.device)
    t0, budget = time.perf_counter(), Budget(args.sweep_budget)
    base, tok = load_base(cfg.model, "cpu", torch.float32)   # kept on the CPU; runs copy it
    record = {"command": shlex.join(["python", "-m", "lora_mini", *sys.argv[1:]]),
              "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "load_seconds": time.perf_counter() - t0, "config": cfg.to_dict(),
              "lr_grid": lrs, "runs": [], "skipped": []}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write = lambda: atomic_write_text(json_path, json.dumps(record, indent=1))   # noqa: E731
    order = [(m, lr) for pair in itertools.zip_longest(lrs["lora"], lrs["full"])   # both methods, interleaved
             for m, lr in zip(("lora", "full"), pair) if lr is not None]
    for method, lr in order:
        if budget.expired():
            record["skipped"].append({"method": method, "lr": lr, "why": f"over --sweep-budget {args.sweep_budget:g}"})
            continue
        run_cfg = replace(cfg, lora=replace(cfg.lora, method=method), train=replace(cfg.train, lr=lr),
                          merge_check=method == "lora", out=str(Path(args.out) / f"{method}_lr{lr:g}"))
        record["runs"].append(one_run(base, tok, run_cfg, device, args.target))
        write()
    summarize(record)
    _eager_reference(record, base, tok, cfg, device, args)
    record["total_seconds"] = time.perf_counter() - t0
    write()
    plot_sweep(record, json_path)
    print(f"wrote {json_path} in {record['total_seconds']:.0f} s")
    return 0
