#!/usr/bin/env bash
# Appendix 09 at SmolLM2-1.7B's shape (random-initialised in memory, seeded): one training step of full FT,
# PEFT, lora_mini, lora_mini's low-memory mode, PEFT + gradient checkpointing (+ Liger) at B8×T1024, r=16
# all-linear, bf16. Three calls into one JSON (figures/bench_gpu_1.7b.json), each inside its --budget-s (~4 min):
#   GPU=0 bash scripts/gpu/bench_1p7b.sh            # eager + graphed rows; (--append) compiled full FT + lora_mini;
#                                                   # (--append) compiled PEFT
#   PART=1 (or 2, 3) runs one call only; more options go to every call (later ones win), e.g. --profile
# Liger rows need liger_kernel installed (pip install --no-deps liger_kernel-0.8.5-py3-none-any.whl); without it
# they are recorded as skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0} PYTHONUNBUFFERED=1
OUT=${BENCH_OUT:-figures/bench_gpu_1.7b.json}
common=(--shape smollm2-1.7b --shapes 8x1024 --steps 10 --warmup 3 --rank 16 --alpha 32 --out "$OUT")
run() { "${PYTHON:-python3}" -m lora_mini bench "${common[@]}" "$@" --script "bash scripts/gpu/bench_1p7b.sh $ARGS"; }
ARGS="$*"
part=${PART:-all}
if [[ $part == all || $part == 1 ]]; then
  run --modes eager,graphed --methods full,peft,lora_mini,lora_mini_low,peft_gc,peft_gc_liger --budget-s 230 "$@"
fi
if [[ $part == all || $part == 2 ]]; then
  run --modes compiled --methods full,lora_mini --budget-s 230 --append "$@"
fi
if [[ $part == all || $part == 3 ]]; then
  run --modes compiled --methods peft --budget-s 200 --append "$@"
fi
