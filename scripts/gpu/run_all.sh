#!/usr/bin/env bash
# Run GPU scripts in up to four queues, one per GPU, under one deadline; pack the results.
#   Q0="finetune" Q1="regret_a" Q2="variants" Q3="bench" DEADLINE_S=540 bash scripts/gpu/run_all.sh
# Each name is scripts/gpu/<name>.sh, started with GPU=<index> and GPUS=<index>,<index+1> (ddp). Results: figures/ and runs/logs/,
# packed into $OUT/results.tgz (the device tool returns at most 8 files).
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export LORA_MINI_GGUF=${LORA_MINI_GGUF:-/root/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
test -f "$LORA_MINI_GGUF" || { echo "fresh machine: stage the model again"; exit 3; }
start=$(date +%s)
deadline=$((start + ${DEADLINE_S:-540}))
mkdir -p runs/logs
queue() {
  local gpu=$1; shift
  for name in "$@"; do
    left=$((deadline - $(date +%s)))
    if [ "$left" -lt 20 ]; then echo "== skip $name (no time left)"; continue; fi
    echo "== $(date +%T) start $name on GPU $gpu (limit ${left}s)"
    OUT= GPU=$gpu GPUS=$gpu,$((gpu + 1)) timeout --signal=INT --kill-after=15 "$left" bash "scripts/gpu/$name.sh" > "runs/logs/$name.log" 2>&1
    echo "== $(date +%T) end $name: exit $? after $(( $(date +%s) - start ))s"
    tail -n 5 "runs/logs/$name.log" | sed "s/^/   [$name] /"
  done
}
queue 0 ${Q0:-} &
queue 1 ${Q1:-} &
queue 2 ${Q2:-} &
queue 3 ${Q3:-} &
wait
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader || true
tar czf "${OUT:-/tmp}/results.tgz" figures runs/logs $(ls -d runs/*/ 2>/dev/null | grep -v logs | xargs -r -I{} find {} -name '*.json' -size -2M) 2>/dev/null
ls -la "${OUT:-/tmp}/results.tgz"
