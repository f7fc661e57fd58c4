#!/usr/bin/env bash
# Chapter 7 GPU batch B: claims 4 (attention vs MLP vs all at matched params) and 5 (batch size 8/32/128).
#   GPU=0 bash scripts/gpu/regret_b.sh [sweep options]
exec bash "$(dirname "$0")/regret.sh" regret_b "$@"
