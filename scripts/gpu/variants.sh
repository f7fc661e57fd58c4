#!/usr/bin/env bash
# Chapter 8 on one GPU: every method on the addition task, several adapters, overfitting, continual
# learning (`python -m lora_mini beyond`, lora_mini/lab/beyond.py). ~7 minutes on one H200 (runs start
# while they fit --budget-s, default 430). Writes figures/beyond/{methods,multi,overfit}.json; what they
# already hold (same settings) is not run again (--fresh redoes all).
#   GPU=0 bash scripts/gpu/variants.sh [beyond options, e.g. --parts methods --budget-s 530]
#   bash scripts/gpu/variants.sh --smoke --model tiny --methods lora,prompt     # CPU check, writes runs/beyond_smoke/
# Parts side by side on three GPUs: run_all.sh with Q0="variants --parts methods" Q1="variants --parts overfit" ...
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDA_VISIBLE_DEVICES=${GPU:-0} PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" -m lora_mini beyond "$@"
