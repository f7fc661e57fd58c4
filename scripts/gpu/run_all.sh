#!/usr/bin/env bash
# Queue GPU jobs: one queue per GPU, run one after another, under one deadline. The one documented way
# to run several GPU scripts (ARCHITECTURE.md):
#   Q0="finetune" Q1="bench" Q2="PARTS=methods+BUDGET_S=500:variants" DEADLINE_S=540 bash scripts/gpu/run_all.sh
# Each name is scripts/gpu/<name>.sh, started with GPU=<queue mod GPUs> and GPUS=<that>,<that+1>; settings
# before ":" ("+" between them) are passed as environment. Logs: runs/logs/; with OUT set, the files this
# call wrote (figures/, runs/logs/, small runs/**/*.json) are packed into $OUT/results.tgz.
set -uo pipefail
cd "$(dirname "$0")/../.."
deadline=$(( $(date +%s) + ${DEADLINE_S:-540} )) stamp=$(mktemp) ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
[ "${ngpu:-0}" -ge 1 ] || ngpu=1
mkdir -p runs/logs
queue() {
  local gpu=$(( $1 % ngpu )); shift
  for item in "$@"; do
    local name=${item##*:} envs="" left=$(( deadline - $(date +%s) ))
    [ "$item" != "$name" ] && envs=${item%:*}
    if [ "$left" -lt 20 ]; then echo "== skip $name (no time left)"; continue; fi
    echo "== $(date +%T) start $item on GPU $gpu (limit ${left}s)"
    env OUT= GPU=$gpu GPUS=$gpu,$((gpu + 1)) ${envs//+/ } timeout --signal=INT --kill-after=15 "$left" \
      bash "scripts/gpu/$name.sh" > "runs/logs/${name}${envs:+_${envs//[^a-zA-Z0-9]/_}}.log" 2>&1
    echo "== $(date +%T) end $item: exit $?"
  done
}
for i in 0 1 2 3 4 5 6 7; do v="Q$i"; [ -n "${!v:-}" ] && queue "$i" ${!v} & done
wait
if [ -n "${OUT:-}" ]; then
  { find figures runs/logs -type f -newer "$stamp"; find runs -path runs/logs -prune -o -type f -name '*.json' \
      -size -2M -newer "$stamp" -print; } 2>/dev/null | sort -u | tar czf "$OUT/results.tgz" -T -
fi
