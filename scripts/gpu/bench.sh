#!/usr/bin/env bash
# Issue 5 / appendix 09: one training step of full fine-tuning vs PEFT LoRA vs lora_mini LoRA
# (fast path and straightforward), eager and torch.compile, at B16×T1024 and B1×T256, r=16 all-linear.
# Usage (repo root):  GPU=0 LORA_MINI_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf bash scripts/gpu/bench.sh
# Budget: configurations start in priority order (all eager runs, then compiled full FT and lora_mini at
# both shapes, then compiled straightforward and PEFT) only while they fit in BUDGET_S (default 200 s of
# the Python process; each compiled configuration takes roughly 30-60 s to compile), so the
# script takes at most ~4 min on one H200; skipped or failed ones are recorded in the JSON.
# Writes figures/bench_gpu.json and figures/bench_gpu.png; log: runs/bench_gpu.log; copies all
# three to $OUT when it is set.
# SMOKE=1: tiny random model, small shapes, eager only, on CPU or GPU; writes under runs/smoke_bench/.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0}
export PYTHONUNBUFFERED=1
export LORA_MINI_BENCH_SCRIPT="GPU=${GPU:-0} bash scripts/gpu/bench.sh"
mkdir -p runs figures
if [ "${SMOKE:-0}" = 1 ]; then
  mkdir -p runs/smoke_bench
  out=runs/smoke_bench/bench_gpu.json
  args=(--model tiny-llama --shapes 2x32,1x16 --steps 2 --warmup 1 --modes eager --budget-s 120)
else
  out=figures/bench_gpu.json
  args=(--shapes 16x1024,1x256 --modes eager,compiled --steps 10 --warmup 3 --budget-s "${BUDGET_S:-200}")
fi
# python -m lora_mini.bench is `python -m lora_mini bench` without loading the other sub-commands
${PYTHON:-python3} -m lora_mini.bench "${args[@]}" --rank 16 --alpha 32 \
  --methods full,lora_mini,lora_mini_ref,peft --out "$out" 2>&1 | tee runs/bench_gpu.log
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && cp "$out" "${out%.json}.png" runs/bench_gpu.log "$OUT/"
fi
