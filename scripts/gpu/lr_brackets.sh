#!/usr/bin/env bash
# Chapter 6 / claim 1: each method's best LR on the arithmetic task, bracketed, over 3 seeds.
# LoRA (r=16, all-linear) at 1e-4..5e-3 or full fine-tuning at 1e-5..5e-4, 300 steps x 64, best LR on a
# 300-sum validation split; one `finetune-sweep` process per seed, run side by side on one GPU (what is
# measured is accuracy at each LR, not time). Writes figures/lr_brackets/METHOD_seedS.json.
#   GPU=0 METHOD=lora bash scripts/gpu/lr_brackets.sh [extra finetune-sweep options, e.g. --strategy eager]
# LRS=1e-2 TAG=_ext: another grid (extending the first), written to METHOD_seedS_ext.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0} PYTHONUNBUFFERED=1
case ${METHOD:-lora} in
  lora) grid=(--lora-lrs "${LRS:-1e-4,2e-4,5e-4,1e-3,2e-3,5e-3}" --full-lrs "") ;;
  full) grid=(--lora-lrs "" --full-lrs "${LRS:-1e-5,2e-5,5e-5,1e-4,2e-4,5e-4}") ;;
  *) echo "METHOD must be lora or full" >&2; exit 2 ;;
esac
mkdir -p figures/lr_brackets runs/logs
for seed in ${SEEDS:-0 1 2}; do
  "${PYTHON:-python3}" -m lora_mini finetune-sweep --preset gpu --n-val 300 --warmup 30 --eval-every 0 \
    --seed "$seed" --no-eager-reference --no-progress --overwrite "${grid[@]}" "$@" \
    --json "figures/lr_brackets/${METHOD:-lora}_seed$seed${TAG:-}.json" --out "runs/lr_brackets/${METHOD:-lora}_seed$seed${TAG:-}" \
    > "runs/logs/lr_brackets_${METHOD:-lora}_seed$seed${TAG:-}.log" 2>&1 &
done
wait
