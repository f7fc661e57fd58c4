#!/usr/bin/env bash
# Chapter 6 / claim 1: each method's best LR on the arithmetic task, bracketed, over 3 seeds. LoRA (r=16,
# all-linear) at 1e-4..5e-3 or full fine-tuning at 1e-5..5e-4, 300 steps x 64, best LR on a 300-sum
# validation split; one `finetune-sweep` process per seed, side by side on one GPU (what is measured is
# accuracy at each LR, not time). Writes figures/lr_brackets/METHOD_seedS[TAG].json.
#   GPU=0 bash scripts/gpu/lr_brackets.sh lora|full [--seeds 0,1,2] [--tag _ext] [finetune-sweep options]
#   e.g. another grid, extending the first:  bash scripts/gpu/lr_brackets.sh lora --tag _ext --lora-lrs 1e-2
set -euo pipefail
method=${1:?usage: lr_brackets.sh lora|full [--seeds 0,1,2] [--tag T] [finetune-sweep options]}; shift
seeds=0,1,2 tag=
while [ $# -ge 2 ] && [[ "$1" == --seeds || "$1" == --tag ]]; do [ "$1" = --seeds ] && seeds=$2 || tag=$2; shift 2; done
case $method in
  lora) grid=(--lora-lrs 1e-4,2e-4,5e-4,1e-3,2e-3,5e-3 --full-lrs "") ;;
  full) grid=(--lora-lrs "" --full-lrs 1e-5,2e-5,5e-5,1e-4,2e-4,5e-4) ;;
  *) echo "lr_brackets.sh: the method must be lora or full, got '$method'" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0} PYTHONUNBUFFERED=1
mkdir -p figures/lr_brackets runs/logs
for seed in ${seeds//,/ }; do
  name=${method}_seed$seed$tag
  "${PYTHON:-python3}" -m lora_mini finetune-sweep --preset gpu --n-val 300 --warmup 30 --eval-every 0 --seed "$seed" \
    --no-eager-reference --no-progress --overwrite "${grid[@]}" "$@" --json "figures/lr_brackets/$name.json" \
    --out "runs/lr_brackets/$name" > "runs/logs/lr_brackets_$name.log" 2>&1 &
done
wait
