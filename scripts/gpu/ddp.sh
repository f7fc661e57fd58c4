#!/usr/bin/env bash
# Chapter 6: data parallelism, 1 vs 2 GPUs at the same global batch (step time, bytes all-reduced, losses),
# then the real `finetune` under torchrun; the report is `ddp-report` (lora_mini/lab/ddp_bench.py).
#   GPUS=0,1 bash scripts/gpu/ddp.sh        # writes figures/ddp_gpu.json + figures/06_ddp_gpu.png (~2.5 min)
#   bash scripts/gpu/ddp.sh --smoke         # CPU (gloo), tiny model; writes under runs/smoke_ddp/
set -euo pipefail
cd "$(dirname "$0")/../.."
# the GPUs (a machine fact); NVLink multicast off in NCCL, PyTorch and NVSHMEM (shared GPUs)
export CUDA_VISIBLE_DEVICES=${GPUS:-0,1} NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
PY=${PYTHON:-python3} dir=runs/ddp report=figures/ddp_gpu.json bench=() tune=(--steps 300 --batch-size 64)
if [ "${1:-}" = --smoke ]; then
  dir=runs/smoke_ddp report=runs/smoke_ddp/ddp_gpu.json
  bench=(--model tiny --device cpu --steps 3 --warm 1 --batches 4 --digits 1,1 --n-train 30)
  tune=(--model tiny --device cpu --steps 2 --batch-size 4 --n-test 4 --eval-every 0 --digits 1,1 --n-train 40)
fi
CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES%%,*} $PY -m lora_mini ddp-bench "${bench[@]}" --json "$dir/world1.json"
$PY -m torch.distributed.run --standalone --nproc_per_node 2 -m lora_mini ddp-bench "${bench[@]}" --json "$dir/world2.json"
$PY -m torch.distributed.run --standalone --nproc_per_node 2 -m lora_mini finetune --no-progress --overwrite \
  --out "$dir/finetune_2gpu" "${tune[@]}"
$PY -m lora_mini ddp-report --one "$dir/world1.json" --two "$dir/world2.json" \
  --finetune "$dir/finetune_2gpu/results.json" --json "$report"
