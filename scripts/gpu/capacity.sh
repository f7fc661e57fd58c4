#!/usr/bin/env bash
# Chapter 7, claim 3 (capacity): one epoch (270 steps × 32 × 256 tokens) of full FT and LoRA r = 1..256,
# each at the best LR of its 200-step sweep (figures/without_regret/regret_*.jsonl): four run_all.sh queues
# on four GPUs (the grid mode of `python -m lora_mini sweep`; one JSONL per GPU).
#   bash scripts/gpu/capacity.sh [--deadline-s 560]          # 4 GPUs
cd "$(dirname "$0")/../.."
c="sweep --steps 270 --batch-sizes 32 --budget-s 400 --script scripts/gpu/capacity.sh" o=figures/without_regret/capacity_gpu
exec bash scripts/gpu/run_all.sh "$@" "$c --methods full --lrs 3e-4 --out ${o}0.jsonl" \
  "$c --ranks 1 --lrs 1e-3 --out ${o}1.jsonl; $c --ranks 256 --lrs 3e-3 --out ${o}1.jsonl" \
  "$c --ranks 4 --lrs 3e-3 --out ${o}2.jsonl; $c --ranks 64 --lrs 1e-3 --out ${o}2.jsonl" \
  "$c --ranks 16 --lrs 3e-3 --out ${o}3.jsonl"
