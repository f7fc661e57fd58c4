#!/usr/bin/env bash
# Appendix 09: one training step of full fine-tuning vs PEFT LoRA vs lora_mini LoRA (fast path with and
# without split-K reductions, and straightforward) at B16×T1024 and B1×T256, r=16 all-linear, eager,
# graphed (the whole step replayed from a CUDA graph) and compiled, plus the memory-saving rows (lora_mini_low,
# peft_gc, peft_gc_liger: eager only). --shape smollm2-135m uses a random-initialised model of that shape instead
# of the real one (no files). Configurations start in priority
# order while they fit --budget-s; skipped or failed ones are recorded. Writes figures/bench_gpu.json + .png.
#   GPU=0 bash scripts/gpu/bench.sh [bench options: later ones win, e.g. --modes compiled --append --budget-s 470]
#   bash scripts/gpu/bench.sh --model tiny-llama --device cpu --shapes 2x32,1x16 --steps 2 --warmup 1 --modes eager \
#     --out runs/smoke_bench/bench.json                                              # smoke test, seconds
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0} PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" -m lora_mini bench --shapes 16x1024,1x256 --modes eager,graphed,compiled --steps 10 \
  --warmup 3 --rank 16 --alpha 32 --budget-s 200 --out figures/bench_gpu.json --script "bash scripts/gpu/bench.sh $*" "$@"
