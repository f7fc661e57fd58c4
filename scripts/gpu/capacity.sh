#!/usr/bin/env bash
# Chapter 7, claim 3 (capacity): one epoch (270 steps × 32 × 256 tokens) of full FT and LoRA
# r = 1..256, each at the best LR of its 200-step sweep (figures/without_regret/regret_*.jsonl),
# spread over four GPUs (grid mode of the sweep runner; one JSONL per GPU).
#   bash scripts/gpu/capacity.sh          # needs LORA_MINI_GGUF and 4 GPUs
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
run() {  # GPU, then "method rank lr" triples
  local gpu=$1; shift
  for spec in "$@"; do
    set -- $spec
    local rank_args=(); [ "$2" != "-" ] && rank_args=(--ranks "$2")
    LORA_MINI_COMMAND="bash scripts/gpu/capacity.sh" CUDA_VISIBLE_DEVICES=$gpu python3 -m lora_mini.lab.sweep \
      --methods "$1" "${rank_args[@]}" --lrs "$3" --steps 270 --batch-sizes 32 \
      --out "figures/without_regret/capacity_gpu$gpu.jsonl" --budget-s 400
  done
}
run 0 "full - 3e-4" > runs/logs/capacity0.log 2>&1 &
run 1 "lora 1 1e-3" "lora 256 3e-3" > runs/logs/capacity1.log 2>&1 &
run 2 "lora 4 3e-3" "lora 64 1e-3" > runs/logs/capacity2.log 2>&1 &
run 3 "lora 16 3e-3" > runs/logs/capacity3.log 2>&1 &
wait
tail -n 3 runs/logs/capacity*.log
