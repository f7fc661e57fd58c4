#!/usr/bin/env bash
# Chapter 7 GPU batch B: claims 4 (attention vs MLP vs all at matched params) and 5 (batch size 8/32/128).
# Usage (repo root):  GPU=0 LORA_MINI_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf bash scripts/gpu/regret_b.sh
exec bash "$(dirname "$0")/regret.sh" regret_b
