#!/usr/bin/env bash
# Chapter 7's RL section: policy-gradient RL on two-digit sums after the shared one-digit format warm-up,
# LoRA r = 1, LoRA r = 16 (alpha 32) and full FT, seeds 0 and 1. Six lanes (method x seed) side by side on one
# GPU, each running its LRs one after another; writes DIR/<method>_lr<LR>_seed<S>.json and .log (DIR default
# figures/rl). Runs already written are skipped, so a second call continues (or, with other LRs, extends).
#   GPU=0 [DIR=$OUT/rl] bash scripts/gpu/rl.sh [steps, default 80] [--lora-lrs 1e-4,3e-4,1e-3] [--full-lrs 1e-5,3e-5,1e-4]
set -uo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0} PYTHONUNBUFFERED=1
steps=80 lora_lrs=1e-4,3e-4,1e-3 full_lrs=1e-5,3e-5,1e-4 dir=${DIR:-figures/rl}
while [ $# -gt 0 ]; do
  case $1 in
    --lora-lrs) lora_lrs=${2:?--lora-lrs needs LRs}; shift 2 ;;
    --full-lrs) full_lrs=${2:?--full-lrs needs LRs}; shift 2 ;;
    [0-9]*) steps=$1; shift ;;
    *) echo "rl.sh: unknown option $1 (steps, --lora-lrs A,B, --full-lrs A,B)" >&2; exit 2 ;;
  esac
done
mkdir -p "$dir"
lane() {  # name, seed, LRs (comma-separated), then rl options
  local name=$1 seed=$2 lrs=$3 lr out; shift 3
  for lr in ${lrs//,/ }; do
    out="$dir/${name}_lr${lr}_seed${seed}.json"
    [ -f "$out" ] && continue
    "${PYTHON:-python3}" -m lora_mini rl "$@" --lr "$lr" --seed "$seed" --steps "$steps" --digits 2,2 \
      --format-steps 30 --eval-every 10 --n-eval 128 --out "$out" > "${out%.json}.log" 2>&1
  done
}
for seed in 0 1; do
  lane lora_r1 "$seed" "$lora_lrs" --method lora --rank 1 &
  lane lora_r16 "$seed" "$lora_lrs" --method lora --rank 16 &
  lane full "$seed" "$full_lrs" --method full &
done
wait
for f in "$dir"/*.log; do echo "$f: $(tail -n 1 "$f")"; done
