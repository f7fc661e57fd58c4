#!/usr/bin/env bash
# Queue GPU jobs: one queue per argument, run on GPU (queue number mod number of GPUs), the jobs of a queue
# one after another, every queue under one deadline. The one documented way to run several GPU jobs:
#   bash scripts/gpu/run_all.sh --deadline-s 540 "finetune" "bench --modes eager,graphed" \
#     "variants --parts methods; variants --parts overfit --budget-s 200"
# A job is NAME ARGS: `bash scripts/gpu/NAME.sh ARGS` if that script exists, else `python -m lora_mini NAME ARGS`
# (arguments are split at white space: no spaces inside one); ";" separates the jobs of a queue. A job
# gets GPU=<its GPU>, GPUS=<its GPU>,<the next one> (ddp.sh) and CUDA_VISIBLE_DEVICES=<its GPU>; it is
# stopped with SIGINT (a checkpoint, where the job writes them) at the deadline. Logs: runs/logs/q<Q>_<N>_NAME.log.
# With OUT set (the GPU machine's output folder), the files this call wrote (figures/, runs/logs/, small
# runs/**/*.json) are packed into $OUT/results.tgz.
# Machine settings for every job: NVLink multicast off in NCCL, PyTorch and NVSHMEM (the GPUs are shared:
# a program that uses multicast can take them out of service), and LORA_MINI_GGUF, the model file, where
# ../shared/gpu/README.md stages it (unless LORA_MINI_GGUF is already set).
set -uo pipefail
cd "$(dirname "$0")/../.."
deadline_s=540
if [ "${1:-}" = --deadline-s ]; then deadline_s=${2:?--deadline-s needs seconds}; shift 2; fi
[ $# -ge 1 ] || { echo "usage: run_all.sh [--deadline-s S] 'JOB ARGS[; JOB ARGS ...]' ... (one queue per argument)" >&2; exit 2; }
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
staged=/root/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -z "${LORA_MINI_GGUF:-}" ] && [ -f "$staged" ]; then export LORA_MINI_GGUF=$staged; fi
deadline=$(( $(date +%s) + deadline_s )) stamp=$(mktemp) ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
[ "${ngpu:-0}" -ge 1 ] || ngpu=1
mkdir -p runs/logs
queue() {  # queue number, the queue's text
  local gpu=$(( $1 % ngpu )) n=0 job left log jobs words cmd
  IFS=';' read -ra jobs <<< "$2"
  for job in "${jobs[@]}"; do
    read -ra words <<< "$job"
    [ ${#words[@]} -ge 1 ] || continue
    job=${words[*]}
    n=$((n + 1)) left=$(( deadline - $(date +%s) )) log="runs/logs/q$1_${n}_${words[0]}.log"
    if [ "$left" -lt 20 ]; then echo "== skip '$job' (no time left)"; continue; fi
    if [ -f "scripts/gpu/${words[0]}.sh" ]; then cmd=(bash "scripts/gpu/${words[0]}.sh"); else cmd=("${PYTHON:-python3}" -m lora_mini "${words[0]}"); fi
    echo "== $(date +%T) start '$job' on GPU $gpu (limit ${left}s, log $log)"
    GPU=$gpu GPUS=$gpu,$(( (gpu + 1) % ngpu )) CUDA_VISIBLE_DEVICES=$gpu \
      timeout --signal=INT --kill-after=15 "$left" "${cmd[@]}" "${words[@]:1}" > "$log" 2>&1
    echo "== $(date +%T) end '$job': exit $?"
  done
}
q=0
for text in "$@"; do queue "$q" "$text" & q=$((q + 1)); done
wait
if [ -n "${OUT:-}" ]; then
  { find figures runs/logs -type f -newer "$stamp"; find runs -path runs/logs -prune -o -type f -name '*.json' \
      -size -2M -newer "$stamp" -print; } 2>/dev/null | sort -u | tar czf "$OUT/results.tgz" -T -
fi
