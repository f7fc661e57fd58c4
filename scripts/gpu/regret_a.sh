#!/usr/bin/env bash
# Chapter 7 GPU batch A: claims 1-2 (LR sweeps: full FT and LoRA r=1,4,16,64,256), 6-7 (r=8/r=64 adapters), 3 (one-epoch runs).
#   GPU=0 bash scripts/gpu/regret_a.sh [sweep options]
exec bash "$(dirname "$0")/regret.sh" regret_a "$@"
