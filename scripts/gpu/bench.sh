#!/usr/bin/env bash
# Issue 5 / appendix 09: one training step of full fine-tuning vs PEFT LoRA vs lora_mini LoRA (fast
# path with and without split-K reductions, and straightforward), at B16×T1024 and B1×T256, r=16
# all-linear, in three modes: eager, graphed (whole step replayed from a CUDA graph) and compiled.
# Usage (repo root):  GPU=0 LORA_MINI_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf bash scripts/gpu/bench.sh
#   MODES=eager,graphed (default eager,graphed,compiled)  METHODS=full,lora_mini (default: all five)
#   APPEND=1: add to figures/bench_gpu.json (rows of the same method/mode/shape replaced), e.g. the
#   compiled runs from a second GPU call.
# Budget: configurations start in priority order (eager and graphed runs, ~5-8 s each; then compiled
# full FT and lora_mini at both shapes, ~15-120 s each to compile; then compiled PEFT, straightforward
# and no-split) only while they fit in BUDGET_S (default 200 s of the Python process); skipped or
# failed ones are recorded in the JSON.
# Writes figures/bench_gpu.json and figures/bench_gpu.png; log: runs/bench_gpu.log; copies all
# three to $OUT when it is set.
# SMOKE=1: tiny random model, small shapes, eager only, on CPU or GPU; writes under runs/smoke_bench/.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0}
export PYTHONUNBUFFERED=1
export LORA_MINI_BENCH_SCRIPT="GPU=${GPU:-0}${MODES:+ MODES=$MODES}${METHODS:+ METHODS=$METHODS}${APPEND:+ APPEND=$APPEND} bash scripts/gpu/bench.sh"
mkdir -p runs figures
methods=${METHODS:-full,lora_mini,lora_mini_nosplit,lora_mini_ref,peft}
if [ "${SMOKE:-0}" = 1 ]; then
  mkdir -p runs/smoke_bench
  out=runs/smoke_bench/bench_gpu.json
  args=(--model tiny-llama --shapes 2x32,1x16 --steps 2 --warmup 1 --modes "${MODES:-eager}" --budget-s 120)
else
  out=figures/bench_gpu.json
  args=(--shapes 16x1024,1x256 --modes "${MODES:-eager,graphed,compiled}" --steps 10 --warmup 3 --budget-s "${BUDGET_S:-200}")
fi
[ "${APPEND:-0}" = 1 ] && args+=(--append)
# python -m lora_mini.lab.bench is `python -m lora_mini bench` without loading the other sub-commands
${PYTHON:-python3} -m lora_mini.lab.bench "${args[@]}" --rank 16 --alpha 32 \
  --methods "$methods" --out "$out" 2>&1 | tee -a runs/bench_gpu.log
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && cp "$out" "${out%.json}.png" runs/bench_gpu.log "$OUT/"
fi
