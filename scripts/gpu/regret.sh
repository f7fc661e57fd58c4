#!/usr/bin/env bash
# Chapter 7 ("LoRA Without Regret" at small scale): one GPU batch of sweeps, PLAN = regret_a or regret_b
# (regret_a.sh and regret_b.sh call this; lora_mini/lab/sweep.py says what each plan runs). Runs start
# in priority order while they fit --budget-s (420 s: the whole call takes at most ~8 min on one H200).
# Appends to figures/without_regret/PLAN.jsonl (+ adapters/); configs already in any *.jsonl there are
# skipped, so calling again continues where the last call stopped.
#   GPU=0 bash scripts/gpu/regret.sh regret_a [sweep options, e.g. --budget-s 300]
#   bash scripts/gpu/regret.sh regret_a --smoke --out runs/smoke_regret/regret_a.jsonl   # tiny model, CPU or GPU
set -euo pipefail
plan=${1:?usage: regret.sh regret_a|regret_b [sweep options]}; shift
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0} PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" -m lora_mini sweep --plan "$plan" --out "figures/without_regret/$plan.jsonl" --budget-s 420 \
  --script "bash scripts/gpu/$plan.sh $*" "$@"
