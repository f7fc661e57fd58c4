#!/usr/bin/env bash
# Chapter 7 GPU batch A: claims 1-2 (LR sweeps: full FT and LoRA r=1,4,16,64,256), 6-7 (r=8/r=64 adapters), 3 (one-epoch runs).
# Usage (repo root):  GPU=0 LORA_MINI_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf bash scripts/gpu/regret_a.sh
exec bash "$(dirname "$0")/regret.sh" regret_a
