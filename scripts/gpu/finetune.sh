#!/usr/bin/env bash
# Issue 4 / chapter 6: LoRA (r=16, all-linear) vs full fine-tuning of SmolLM2-135M-Instruct on
# 2–3-digit additions, each at its own tuned LR: a small LR sweep per method at a fixed step
# budget (300 steps × batch 64, same data and seed), best LR chosen on a validation split
# (disjoint from the test set); every LoRA run is also merged and re-evaluated. Training steps
# replay from a CUDA graph (lora_mini/graphs.py; falls back to eager if capture fails); at the
# end the best LoRA LR runs once more with eager steps, to show what the graph saves.
# Usage (repo root):  GPU=0 LORA_MINI_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf bash scripts/gpu/finetune.sh
# Budget: ~4–5 min on one H200 including model load; sweep points stop starting after BUDGET_S
# (default 330 s of the Python process) and skipped ones are recorded in the JSON.
# Writes figures/finetune_gpu.json (rewritten after every run), figures/06_gpu_sweep.png,
# figures/06_gpu_curves.png; log runs/finetune_gpu.log; copies them to $OUT when it is set.
# FT_LORA_LRS / FT_FULL_LRS: comma lists (empty: skip that method); FT_JSON: another file name
# (the figures are then named after it), e.g. to extend one method's sweep without overwriting.
# SMOKE=1: 2-digit sums, 4 steps, 2 LRs per method, on CPU; writes under runs/smoke_finetune/.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0}
export PYTHONUNBUFFERED=1
export FINETUNE_COMMAND="GPU=${GPU:-0} bash scripts/gpu/finetune.sh"
mkdir -p runs figures
if [ "${SMOKE:-0}" = 1 ]; then
  export FT_DIR=runs/smoke_finetune FT_DEVICE=cpu FT_STEPS=4 FT_BATCH=8 FT_DIGITS=2,2 FT_NTEST=8 FT_NVAL=8 \
         FT_NTRAIN=200 FT_EVAL_EVERY=2 FT_LORA_LRS=1e-3,2e-3 FT_FULL_LRS=5e-5,1e-4 FT_EAGER_REF=1
  mkdir -p "$FT_DIR"
else
  export FT_DIR=figures
fi
${PYTHON:-python3} - <<'EOF' 2>&1 | tee runs/finetune_gpu.log
import copy, gc, itertools, json, os, time
from pathlib import Path

import torch

from lora_mini import load_model
from lora_mini.train import finetune, plot_run, summary

env = os.environ.get
out_dir = Path(env("FT_DIR"))
device = env("FT_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
steps, batch = int(env("FT_STEPS", 300)), int(env("FT_BATCH", 64))
digits = tuple(int(d) for d in env("FT_DIGITS", "2,3").split(","))
n_train, n_test, n_val = int(env("FT_NTRAIN", 20000)), int(env("FT_NTEST", 300)), int(env("FT_NVAL", 300))
lrs = {"lora": [float(x) for x in env("FT_LORA_LRS", "1e-3,2e-3,4e-3,8e-3").split(",") if x],
       "full": [float(x) for x in env("FT_FULL_LRS", "2.5e-5,5e-5,1e-4,2e-4").split(",") if x]}
json_name = env("FT_JSON", "finetune_gpu.json")   # e.g. FT_LORA_LRS= FT_FULL_LRS=1e-4,2e-4 FT_JSON=finetune_gpu_full.json
png = "06_gpu" if json_name == "finetune_gpu.json" else Path(json_name).stem   # figure names follow the JSON
budget = float(env("BUDGET_S", 330))
eval_every = int(env("FT_EVAL_EVERY", 0)) or max(1, steps // 3)
target = 0.95                                      # issue 4: >= 95% test exact match within 60 s
t_start = time.perf_counter()

base, tok = load_model(device="cpu", dtype=torch.float32)     # kept on the CPU; each run copies it
load_s = time.perf_counter() - t_start
dtype = {"lora": torch.bfloat16 if device == "cuda" else torch.float32, "full": torch.float32}
record = {"command": env("FINETUNE_COMMAND"), "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
          "torch": torch.__version__, "load_seconds": load_s,
          "config": {"steps": steps, "batch_size": batch, "digits": list(digits), "n_train": n_train,
                     "n_val": n_val, "n_test": n_test, "rank": 16, "alpha": 32, "targets": "all-linear",
                     "schedule": "cosine", "warmup_steps": steps // 10, "seed": 0,
                     "weights": {"lora": "W frozen in bf16, A and B fp32 (cast to bf16 in forward), no autocast",
                                 "full": "fp32 master weights + AdamW fp32, bf16 autocast"},
                     "eval_every": eval_every, "steps_mode": "CUDA graph after 3 eager warm-up steps"},
          "lr_grid": lrs, "runs": [], "skipped": []}

def write():
    (out_dir / json_name).write_text(json.dumps(record, indent=1))

def run(method, lr, cuda_graph=None, tag=""):
    model = copy.deepcopy(base).to(device=device, dtype=dtype[method])
    if device == "cuda":
        torch.cuda.empty_cache()
    res = finetune(model, tok, method=method, lr=lr, rank=16, alpha=32, steps=steps, batch_size=batch,
                   digits=digits, n_train=n_train, n_test=n_test, n_val=n_val, warmup_steps=steps // 10,
                   eval_every=eval_every, seed=0, out=Path("runs/finetune_gpu") / f"{method}_lr{lr:g}{tag}",
                   merge_check=method == "lora", progress=False, cuda_graph=cuda_graph)
    reach = next((e for e in res["evals"] if e["exact_match"] >= target), None)
    res["first_eval_at_target"] = None if reach is None else {"target": target, "step": reach["step"],
                                                              "train_seconds": reach["train_seconds"]}
    print(summary(res), f"\nvalidation exact match: {100 * res['exact_match_val']:.1f}%",
          f"\nfirst eval >= {100 * target:.0f}%: {res['first_eval_at_target']}\n", flush=True)
    del model
    gc.collect()                                   # free this run's CUDA graph pool before the next run
    if device == "cuda":
        torch.cuda.empty_cache()
    return res

# interleave the two grids so that a cut-off budget still leaves both methods swept
order = [(m, lr) for pair in itertools.zip_longest(lrs["lora"], lrs["full"])
         for m, lr in zip(("lora", "full"), pair) if lr is not None]
for method, lr in order:
    if time.perf_counter() - t_start > budget:
        record["skipped"].append({"method": method, "lr": lr, "why": f"over BUDGET_S={budget:g}"})
        write()
        continue
    record["runs"].append(run(method, lr))
    write()

# best LR per method on the validation split; merge check on the best LoRA run
best = {}
for method in ("lora", "full"):
    runs = [r for r in record["runs"] if r["method"] == method]
    if runs:
        best[method] = max(runs, key=lambda r: (r["exact_match_val"], -r["history"][-1]["loss"]))
record["best"] = {m: {k: v for k, v in r.items() if k not in ("history", "evals", "samples")}
                  for m, r in best.items()}
if len(best) == 2:
    record["lr_ratio_lora_over_full"] = best["lora"]["lr"] / best["full"]["lr"]
if "lora" in best:
    record["merge_check"] = {"lr": best["lora"]["lr"], "exact_match_unmerged": best["lora"]["exact_match_after"],
                             **best["lora"]["merge_check"]}
    print("merge check:", json.dumps(record["merge_check"])[:600])
write()

# the best LoRA run again with eager steps (no CUDA graph): same maths, the launch overhead back
if "lora" in best and (best["lora"].get("step_mode") == "cuda graph" or env("FT_EAGER_REF") == "1"):
    if time.perf_counter() - t_start <= budget + 60:
        ref = run("lora", best["lora"]["lr"], cuda_graph=False, tag="_eager")
        g = best["lora"]
        record["eager_reference"] = {k: v for k, v in ref.items() if k not in ("history", "samples")}
        record["eager_reference"]["graph_speedup"] = ref["train_seconds"] / g["train_seconds"]
        print(f"eager steps: {ref['train_seconds']:.1f} s vs {g['step_mode']} {g['train_seconds']:.1f} s "
              f"(x{ref['train_seconds'] / g['train_seconds']:.2f}); exact match {ref['exact_match_after']:.3f} "
              f"vs {g['exact_match_after']:.3f}", flush=True)
    else:
        record["skipped"].append({"method": "lora", "lr": best["lora"]["lr"], "why": "eager reference: over budget"})
record["total_seconds"] = time.perf_counter() - t_start
write()

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(5.5, 3.6))
for method, marker in (("lora", "o"), ("full", "s")):
    runs = sorted((r for r in record["runs"] if r["method"] == method), key=lambda r: r["lr"])
    ax.plot([r["lr"] for r in runs], [100 * r["exact_match_val"] for r in runs], marker + "-", label=method)
ax.set(xscale="log", xlabel="peak learning rate", ylabel="validation exact match (%)",
       title=f"LR sweep, {steps} steps × {batch}")
ax.legend(); ax.grid(alpha=0.3); fig.tight_layout()
fig.savefig(out_dir / f"{png}_sweep.png", dpi=150)
if best:
    plot_run([best[m] for m in best], out_dir / f"{png}_curves.png")
print(f"wrote {out_dir / json_name} in {record['total_seconds']:.0f} s")
EOF
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && cp "$FT_DIR"/${FT_JSON:-finetune_gpu.json} "$FT_DIR"/*_sweep.png "$FT_DIR"/*_curves.png runs/finetune_gpu.log "$OUT/" || true
fi
