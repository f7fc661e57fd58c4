#!/usr/bin/env bash
# Appendix 09 at SmolLM2-1.7B's shape (random-initialised in memory, seeded): one training step of full FT,
# PEFT, lora_mini, lora_mini's low-memory mode, PEFT + gradient checkpointing (+ Liger) at B8×T1024, r=16
# all-linear, bf16. Two calls into one JSON (figures/bench_gpu_1.7b.json), each inside its --budget-s:
#   GPU=0 bash scripts/gpu/bench_1p7b.sh            # eager + graphed rows, then (--append) the compiled rows
# Liger rows need liger_kernel installed (pip install --no-deps liger_kernel-0.8.5-py3-none-any.whl); without it
# they are recorded as skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0} PYTHONUNBUFFERED=1
OUT=${BENCH_OUT:-figures/bench_gpu_1.7b.json}
common=(--shape smollm2-1.7b --shapes 8x1024 --steps 10 --warmup 3 --rank 16 --alpha 32 --out "$OUT")
"${PYTHON:-python3}" -m lora_mini bench "${common[@]}" --modes eager,graphed \
  --methods full,peft,lora_mini,lora_mini_low,peft_gc,peft_gc_liger --budget-s 230 \
  --script "bash scripts/gpu/bench_1p7b.sh $*" "$@"
exec "${PYTHON:-python3}" -m lora_mini bench "${common[@]}" --modes compiled --methods full,lora_mini,peft \
  --budget-s 230 --append --script "bash scripts/gpu/bench_1p7b.sh $*" "$@"
