#!/usr/bin/env bash
# Chapter 7 ("LoRA Without Regret" at small scale), GPU batch B: claims 4 (attention vs MLP vs all at matched params) and 5 (batch size 8/32/128).
# Usage (repo root):  GPU=0 LORA_MINI_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf bash scripts/gpu/regret_b.sh
# Budget: runs are started in priority order only while they fit in BUDGET_S (default 420 s from
# the start of the Python process), so the whole script takes at most ~8 min on one H200.
# Writes figures/without_regret/regret_b.jsonl (+ adapters/), appending; configs already in any
# figures/without_regret/*.jsonl are skipped, so re-running continues where it stopped.
# Also copies the results to $OUT/without_regret/ when $OUT is set. Log: runs/regret_b.log.
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
export LORA_MINI_COMMAND="GPU=${GPU:-0} bash scripts/gpu/regret_b.sh"
mkdir -p runs "$outdir"
${PYTHON:-python3} -m lora_mini.sweep --plan regret_b "${args[@]}" --out "$outdir/regret_b.jsonl" \
  --budget-s "$budget" 2>&1 | tee runs/regret_b.log
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/without_regret" && cp -r "$outdir/." "$OUT/without_regret/" && cp runs/regret_b.log "$OUT/"
fi
