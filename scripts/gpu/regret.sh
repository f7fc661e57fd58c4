#!/usr/bin/env bash
# Chapter 7 ("LoRA Without Regret" at small scale): one GPU batch of sweeps, PLAN = regret_a or regret_b
# (regret_a.sh and regret_b.sh call this). See lora_mini/lab/sweep.py for what each plan runs.
# Usage (repo root):  GPU=0 LORA_MINI_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf bash scripts/gpu/regret.sh regret_a
# Budget: runs are started in priority order only while they fit in BUDGET_S (default 420 s from
# the start of the Python process), so the whole script takes at most ~8 min on one H200.
# Writes figures/without_regret/PLAN.jsonl (+ adapters/), appending; configs already in any
# figures/without_regret/*.jsonl are skipped, so re-running continues where it stopped.
# Also copies the results to $OUT/without_regret/ when $OUT is set. Log: runs/PLAN.log.
# SMOKE=1: tiny random model, byte corpus, a few steps, on CPU or GPU; writes under runs/smoke_regret/.
set -euo pipefail
plan=${1:?usage: regret.sh regret_a|regret_b}
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
export LORA_MINI_COMMAND="GPU=${GPU:-0} bash scripts/gpu/$plan.sh"
mkdir -p runs "$outdir"
${PYTHON:-python3} -m lora_mini.lab.sweep --plan $plan "${args[@]}" --out "$outdir/$plan.jsonl" \
  --budget-s "$budget" 2>&1 | tee runs/$plan.log
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/without_regret" && cp -r "$outdir/." "$OUT/without_regret/" && cp runs/$plan.log "$OUT/"
fi
