#!/usr/bin/env bash
# Any GPU: LoRA on the arithmetic task in float16 with loss scaling (as on a GPU without bfloat16, e.g. a T4)
# beside bfloat16, same settings and seed, eager steps for both. Writes figures/precision/{bf16,fp16}.json.
#   GPU=0 bash scripts/gpu/precision.sh [finetune-sweep options]
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0} PYTHONUNBUFFERED=1
mkdir -p figures/precision runs/logs
for p in bf16 fp16; do
  "${PYTHON:-python3}" -m lora_mini finetune-sweep --preset gpu --n-val 300 --warmup 30 --eval-every 100 --precision "$p" \
    --strategy eager --lora-lrs 2e-3 --full-lrs "" --no-eager-reference --no-progress --overwrite "$@" \
    --json "figures/precision/$p.json" --out "runs/precision/$p" > "runs/logs/precision_$p.log" 2>&1 &
done
wait
