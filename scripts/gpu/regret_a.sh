#!/usr/bin/env bash
# Chapter 7 ("LoRA Without Regret" at small scale), GPU batch A: claims 1-2 (LR sweeps: full FT and LoRA r=1,4,16,64,256), 6-7 (r=8/r=64 adapters), 3 (one-epoch runs).
# Usage (repo root):  GPU=0 LORA_MINI_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf bash scripts/gpu/regret_a.sh
# Budget: runs are started in priority order only while they fit in BUDGET_S (default 420 s from
# the start of the Python process), so the whole script takes at most ~8 min on one H200.
# Writes figures/without_regret/regret_a.jsonl (+ adapters/), appending; configs already in any
# figures/without_regret/*.jsonl are skipped, so re-running continues where it stopped.
# Also copies the results to $OUT/without_regret/ when $OUT is set. Log: runs/regret_a.log.
# SMOKE=1: tiny random model, byte corpus, a few steps, on CPU or GPU; writes under runs/smoke_regret/.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0}
export PYTHONUNBUFFERED=1
outdir=figures/without_regret
args=()
budget=${BUDGET_S:-420}
if [ "${SMOKE:-0}" = 1 ]; then
  outdir=runs/smoke_regret
  args=(--smoke)
fi
export LORA_MINI_COMMAND="GPU=${GPU:-0} bash scripts/gpu/regret_a.sh"
mkdir -p runs "$outdir"
${PYTHON:-python3} -m lora_mini.sweep --plan regret_a "${args[@]}" --out "$outdir/regret_a.jsonl" \
  --budget-s "$budget" 2>&1 | tee runs/regret_a.log
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/without_regret" && cp -r "$outdir/." "$OUT/without_regret/" && cp runs/regret_a.log "$OUT/"
fi
