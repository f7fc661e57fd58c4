#!/usr/bin/env bash
# Chapter 6: LoRA (r=16, all-linear) vs full fine-tuning of SmolLM2-135M-Instruct on 2-3-digit sums, each at
# its best LR on a validation split; merge check; the best LoRA LR again with eager steps
# (`python -m lora_mini finetune-sweep`, lora_mini/lab/finetune_sweep.py).
#   GPU=0 bash scripts/gpu/finetune.sh [finetune-sweep options]   # figures/finetune_gpu.json + 06_gpu_*.png (~5 min, H200)
#   bash scripts/gpu/finetune.sh --smoke                          # CPU, tiny model, seconds; writes under runs/smoke_finetune/
# Options after --smoke (or alone) go to finetune-sweep, later ones win: e.g. --lora-lrs 1e-3,2e-3 --json figures/other.json
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0} PYTHONUNBUFFERED=1
args=(--preset gpu --n-val 300 --warmup 30 --eval-every 100 --sweep-budget 330 --json figures/finetune_gpu.json --out runs/finetune_gpu)
if [ "${1:-}" = --smoke ]; then
  shift
  args=(--model tiny --device cpu --digits 1,1 --n-train 40 --n-val 6 --n-test 6 --steps 4 --batch-size 8 --warmup 1
        --eval-every 2 --lora-lrs 1e-2,2e-2 --full-lrs 1e-3 --json runs/smoke_finetune/finetune_gpu.json --out runs/smoke_finetune/runs)
fi
exec "${PYTHON:-python3}" -m lora_mini finetune-sweep --no-progress --overwrite "${args[@]}" "$@"
