#!/usr/bin/env bash
# Issue 8 / chapter 6: data parallelism with DistributedDataParallel on 1 vs 2 H200s.
# For LoRA (r=16, all-linear) and full fine-tuning, at a fixed global batch: step time on 1 and
# 2 GPUs (scaling efficiency = t1 / (2·t2)), bytes all-reduced per step (a DDP comm hook counts
# bucket bytes), and the loss curve of the 2-GPU run against the 1-GPU run (same global batch).
# Then the real command under torchrun: `python -m lora_mini finetune` on 2 GPUs.
# Usage (repo root):  GPUS=0,1 LORA_MINI_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf bash scripts/gpu/ddp.sh
# Budget: ~2–2.5 min on 2 H200s (3 model loads + short runs). Writes figures/ddp_gpu.json and
# figures/06_ddp_gpu.png; logs under runs/ddp/; copies them to $OUT when it is set.
# SMOKE=1: CPU, gloo, 2 processes, 3 steps, tiny batches; writes under runs/smoke_ddp/.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPUS:-${GPU:-0},1}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
export DDP_COMMAND="GPUS=${CUDA_VISIBLE_DEVICES} bash scripts/gpu/ddp.sh"
PY=${PYTHON:-python3}
mkdir -p runs/ddp figures
if [ "${SMOKE:-0}" = 1 ]; then
  export DDP_DIR=runs/smoke_ddp DDP_DEVICE=cpu DDP_STEPS=3 DDP_BATCHES=4 DDP_WARM=1 DDP_DIGITS=2,2
  mkdir -p "$DDP_DIR"
  cli=(--device cpu --steps 2 --batch-size 4 --n-test 4 --eval-every 0 --digits 2,2 --n-train 64)
else
  export DDP_DIR=figures
  cli=(--steps 300 --batch-size 64)
fi
cat > runs/ddp/bench.py <<'EOF'
"""One process (python) or N (torchrun): timed training runs at fixed global batches -> JSON."""
import copy, json, os, sys
import torch
import torch.distributed as dist
from lora_mini import apply_lora, count_parameters, load_model
from lora_mini.tasks import batches
from lora_mini.train import make_data, train

env = os.environ.get
world = int(env("WORLD_SIZE", "1"))
rank = int(env("RANK", "0"))
device = env("DDP_DEVICE") or "cuda"
if device == "cuda":
    torch.cuda.set_device(int(env("LOCAL_RANK", "0")))
    device = f"cuda:{int(env('LOCAL_RANK', '0'))}"
if world > 1:
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
steps, warm = int(env("DDP_STEPS", 60)), int(env("DDP_WARM", 10))
global_batches = [int(b) for b in env("DDP_BATCHES", "64,256").split(",")]
base, tok = load_model(device="cpu", dtype=torch.float32)
digits = tuple(int(d) for d in env("DDP_DIGITS", "2,3").split(","))
_, _, _, enc = make_data(tok, digits, 20000 if device != "cpu" else 200, 16)
lrs = {"lora": 2e-3, "full": 1e-4}
out = {"world_size": world, "runs": []}
for method in ("lora", "full"):
    for gb in global_batches:
        for timed in (False, True):                 # first a short warm-up run, then the timed one
            model = copy.deepcopy(base).to(device=device,
                                           dtype=torch.bfloat16 if method == "lora" and device != "cpu" else torch.float32)
            if method == "lora":
                torch.manual_seed(0)                # the same A on every run (DDP also broadcasts rank 0's)
                apply_lora(model, "all-linear", r=16, alpha=32)
            n_trainable = count_parameters(model)[0]
            it = batches(enc, gb, seed=0, pad_id=tok.pad_token_id, rank=rank, world_size=world)
            res = train(model, it, steps=steps if timed else warm, lr=lrs[method], warmup_steps=steps // 10,
                        progress=False)
            del model
            if device != "cpu":
                torch.cuda.empty_cache()
        out["runs"].append({"method": method, "global_batch": gb, "steps": steps, "lr": lrs[method],
                            "trainable_params": n_trainable, "step_seconds": res["train_seconds"] / steps,
                            "tokens_per_s": res["tokens_per_s"], "peak_mem_gib": res["peak_mem_gib"],
                            "comm_bytes_per_step": res["comm_bytes_per_step"],
                            "loss": [h["loss"] for h in res["history"]]})
        if rank == 0:
            r = out["runs"][-1]
            print(f"world={world} {method:4s} batch={gb:4d}: {1000 * r['step_seconds']:.1f} ms/step, "
                  f"{r['comm_bytes_per_step'] / 2**20:.1f} MiB all-reduced/step", flush=True)
if rank == 0:
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
if world > 1:
    dist.destroy_process_group()
EOF
if [ "${SMOKE:-0}" = 1 ]; then
  $PY runs/ddp/bench.py runs/ddp/world1.json 2>&1 | tee runs/ddp/world1.log
  $PY -m torch.distributed.run --standalone --nproc_per_node 2 runs/ddp/bench.py runs/ddp/world2.json 2>&1 | tee runs/ddp/world2.log
else
  CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES%%,*} $PY runs/ddp/bench.py runs/ddp/world1.json 2>&1 | tee runs/ddp/world1.log
  $PY -m torch.distributed.run --standalone --nproc_per_node 2 runs/ddp/bench.py runs/ddp/world2.json 2>&1 | tee runs/ddp/world2.log
fi
# the real command, data-parallel: rank 0 evaluates, prints and writes; the adapter is saved once
$PY -m torch.distributed.run --standalone --nproc_per_node 2 -m lora_mini finetune --no-progress \
  --out runs/ddp/finetune_2gpu "${cli[@]}" 2>&1 | grep -v "^\[transformers\]" | tee runs/ddp/finetune_2gpu.log
$PY - <<'EOF'
import json, os
from pathlib import Path
one, two = (json.load(open(f"runs/ddp/world{n}.json")) for n in (1, 2))
cli = json.load(open("runs/ddp/finetune_2gpu/results.json"))
rows = []
for a, b in zip(one["runs"], two["runs"]):
    assert (a["method"], a["global_batch"]) == (b["method"], b["global_batch"])
    # early steps: relative difference (losses ~1-5); late steps: the gap of the mean loss over the
    # last 20 steps (losses near 0 make a per-step relative difference meaningless there)
    rel10 = max(abs(x - y) / max(abs(x), 1e-8) for x, y in zip(a["loss"][:10], b["loss"][:10]))
    k = min(20, len(a["loss"]))
    gap = sum(b["loss"][-k:]) / k - sum(a["loss"][-k:]) / k
    rows.append({"method": a["method"], "global_batch": a["global_batch"], "steps": a["steps"], "lr": a["lr"],
                 "trainable_params": a["trainable_params"],
                 "step_ms_1gpu": 1000 * a["step_seconds"], "step_ms_2gpu": 1000 * b["step_seconds"],
                 "speedup": a["step_seconds"] / b["step_seconds"],
                 "scaling_efficiency": a["step_seconds"] / (2 * b["step_seconds"]),
                 "comm_bytes_per_step": b["comm_bytes_per_step"],
                 "peak_mem_gib_1gpu": a["peak_mem_gib"], "peak_mem_gib_2gpu": b["peak_mem_gib"],
                 "loss_1gpu": a["loss"], "loss_2gpu": b["loss"],
                 "rel_loss_diff_first10": rel10, "mean_loss_gap_last20": gap,
                 "final_loss_1gpu": a["loss"][-1], "final_loss_2gpu": b["loss"][-1]})
import torch
record = {"command": os.environ.get("DDP_COMMAND"), "torch": torch.__version__,
          "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
          "nccl_nvls_enable": os.environ.get("NCCL_NVLS_ENABLE"), "rows": rows,
          "finetune_2gpu": {k: cli.get(k) for k in ("method", "lr", "steps", "batch_size", "world_size",
                            "exact_match_before", "exact_match_after", "train_seconds", "tokens_per_s",
                            "peak_mem_gib", "comm_bytes_per_step", "adapter_bytes", "merge_check")}}
out = Path(os.environ["DDP_DIR"])
(out / "ddp_gpu.json").write_text(json.dumps(record, indent=1))
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
for r in rows:
    if r["global_batch"] == rows[0]["global_batch"]:
        ax[0].plot(r["loss_1gpu"], lw=1, label=f"{r['method']} 1 GPU")
        ax[0].plot(r["loss_2gpu"], "--", lw=1, label=f"{r['method']} 2 GPUs")
ax[0].set(yscale="log", xlabel="step", ylabel="loss", title=f"same global batch {rows[0]['global_batch']}")
names = [f"{r['method']}\nB={r['global_batch']}" for r in rows]
ax[1].bar(names, [r["comm_bytes_per_step"] / 2**20 for r in rows], color=["C0" if r["method"] == "lora" else "C1" for r in rows])
ax[1].set(yscale="log", ylabel="MiB all-reduced per step", title="gradient traffic")
x = range(len(rows))
ax[2].bar([i - 0.2 for i in x], [r["step_ms_1gpu"] for r in rows], 0.4, label="1 GPU")
ax[2].bar([i + 0.2 for i in x], [r["step_ms_2gpu"] for r in rows], 0.4, label="2 GPUs")
ax[2].set_xticks(list(x), names)
ax[2].set(ylabel="ms per step", title="step time")
for a in ax:
    a.legend(fontsize=8) if a.get_legend_handles_labels()[0] else None
    a.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(out / "06_ddp_gpu.png", dpi=150)
for r in rows:
    print(f"{r['method']:4s} B={r['global_batch']:4d}: {r['step_ms_1gpu']:.1f} -> {r['step_ms_2gpu']:.1f} ms/step "
          f"(efficiency {100 * r['scaling_efficiency']:.0f}%), {r['comm_bytes_per_step'] / 2**20:.2f} MiB/step, "
          f"loss: rel. diff first 10 steps {r['rel_loss_diff_first10']:.1e}, "
          f"last-20 mean gap {r['mean_loss_gap_last20']:+.4f}")
print(f"wrote {out / 'ddp_gpu.json'}")
EOF
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && cp "$DDP_DIR/ddp_gpu.json" "$DDP_DIR/06_ddp_gpu.png" runs/ddp/*.log "$OUT/" || true
fi
