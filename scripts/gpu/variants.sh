#!/usr/bin/env bash
# Chapter 8 on one GPU: every method on the addition task, several adapters, forgetting,
# overfitting. ~7 minutes on one H200 (stops starting runs after BUDGET_S=430 s).
#   GPU=0 bash scripts/gpu/variants.sh          # writes figures/beyond/{methods,multi,overfit}.json
#   SMOKE=1 bash scripts/gpu/variants.sh        # a tiny CPU check (writes to runs/beyond_smoke/)
#   SMOKE=1 ONLY=lora,prompt bash scripts/gpu/variants.sh   # only some methods
# Resumable: what figures/beyond/*.json already holds (same config) is not run again; FRESH=1 redoes all.
# Parts in parallel on three GPUs (each <= 8 min):
#   GPU=0 PARTS=methods bash ... & GPU=1 PARTS=overfit bash ... & GPU=2 PARTS=sequential bash ... ; wait
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES="${GPU:-0}"
export COMMAND="GPU=${GPU:-0}${PARTS:+ PARTS=$PARTS} bash scripts/gpu/variants.sh"
mkdir -p runs
if [[ "${SMOKE:-0}" == "1" ]]; then
  export OUT_DIR="${OUT_DIR:-runs/beyond_smoke}"
  export COMMAND="SMOKE=1 bash scripts/gpu/variants.sh"
fi

python -m lora_mini.lab.beyond 2>&1 | tee "runs/variants_${PARTS:-all}_gpu${GPU:-0}.log"
