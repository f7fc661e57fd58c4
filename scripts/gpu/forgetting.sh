#!/usr/bin/env bash
# Chapter 8b: forgetting at matched accuracy. LoRA r=16, LoRA r=128 (alpha 32 as in the book, so the scale
# alpha/r carries the rank and the LR stays 2e-3) and full FT at the best LR of its sweep (1e-3), 3 seeds each,
# all 9 side by side on one GPU; each trains until 90% exact match (max 300 steps, eval every 10) and writes
# DIR/{lora_r16,lora_r128,full}_seed<S>.json and .log (DIR default figures/forgetting).
# The high rank is 128, not 256: SmolLM2-135M's k_proj and v_proj are 192 x 576 (grouped-query attention,
# 3 key-value heads of 64), and the fine-tuning code refuses a rank larger than a layer's smaller side.
#   GPU=0 [DIR=$OUT] bash scripts/gpu/forgetting.sh [budget seconds, default 480]
# Alone a run takes ~1.5-2 min on an H200 (0.10 s/step LoRA, 0.14 s/step full FT, ~3 s per evaluation); 9 side by side ~3-5 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0} PYTHONUNBUFFERED=1
budget=${1:-480} dir=${DIR:-figures/forgetting}
mkdir -p "$dir"
run() {  # name, then forgetting options
  local name=$1; shift
  "${PYTHON:-python3}" -m lora_mini forgetting "$@" --seed "$seed" --target-acc 0.9 --max-steps 300 --eval-every 10 \
    --budget-s "$budget" --overwrite --out "$dir/${name}_seed$seed.json" > "$dir/${name}_seed$seed.log" 2>&1 &
}
for seed in 0 1 2; do
  run lora_r16 --method lora --rank 16 --lr 2e-3
  run lora_r128 --method lora --rank 128 --lr 2e-3
  run full --method full --lr 1e-3
done
wait
for f in "$dir"/*_seed[0-2].log; do echo "$f: $(tail -n 1 "$f")"; done
