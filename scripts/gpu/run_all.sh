#!/usr/bin/env bash
# Run GPU scripts in up to four queues, one per GPU, under one deadline; pack the results.
#   Q0="finetune" Q1="regret_a" Q2="variants" Q3="bench" DEADLINE_S=540 bash scripts/gpu/run_all.sh
# Each name is scripts/gpu/<name>.sh, started with GPU=<index> and GPUS=<index>,<index+1> (ddp); a name may
# carry environment settings ("+" between them): Q2="PARTS=methods+BUDGET_S=500:variants" runs
# PARTS=methods BUDGET_S=500 bash scripts/gpu/variants.sh. Results: figures/ and runs/logs/, packed
# into $OUT/results.tgz (the device tool returns at most 8 files).
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export LORA_MINI_GGUF=${LORA_MINI_GGUF:-/root/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
test -f "$LORA_MINI_GGUF" || { echo "fresh machine: stage the model again"; exit 3; }
start=$(date +%s)
touch /tmp/run_all_start
deadline=$((start + ${DEADLINE_S:-540}))
mkdir -p runs/logs
# queue i runs on GPU i mod (number of GPUs): on a one-GPU machine all queues share GPU 0
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true); NGPU=${NGPU:-1}; [ "$NGPU" -ge 1 ] || NGPU=1
queue() {
  local gpu=$(( $1 % NGPU )); shift
  for item in "$@"; do
    local name=${item##*:} envs=""
    [ "$item" != "$name" ] && envs=${item%:*}
    left=$((deadline - $(date +%s)))
    if [ "$left" -lt 20 ]; then echo "== skip $name (no time left)"; continue; fi
    echo "== $(date +%T) start $name on GPU $gpu (limit ${left}s)"
    local log="runs/logs/$name${envs:+_${envs//[^a-zA-Z0-9]/_}}.log"
    env OUT= GPU=$gpu GPUS=$gpu,$((gpu + 1)) ${envs//+/ } timeout --signal=INT --kill-after=15 "$left" \
      bash "scripts/gpu/$name.sh" > "$log" 2>&1
    echo "== $(date +%T) end $item: exit $? after $(( $(date +%s) - start ))s"
    tail -n 5 "$log" | sed "s/^/   [$name] /"
  done
}
queue 0 ${Q0:-} &
queue 1 ${Q1:-} &
queue 2 ${Q2:-} &
queue 3 ${Q3:-} &
wait
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader || true
# only what this call wrote: figures/ and runs/logs/ files changed since the start, runs/**/*.json under 2 MB
{ find figures runs/logs -type f -newer /tmp/run_all_start; \
  find runs -path runs/logs -prune -o -type f -name '*.json' -size -2M -newer /tmp/run_all_start -print; } \
  2>/dev/null | sort -u > /tmp/run_all_files
tar czf "${OUT:-/tmp}/results.tgz" -T /tmp/run_all_files
ls -la "${OUT:-/tmp}/results.tgz"
