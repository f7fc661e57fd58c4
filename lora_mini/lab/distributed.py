"""Data parallelism under torchrun: process-group set-up, (rank, world size), the counting comm hook.

Each rank gets its slice of the global batch (tasks.batches(rank=, world_size=)), DDP
all-reduces the gradients of the trainable parameters only, and rank 0 alone shows progress,
evaluates and writes files. WORLD_SIZE / LOCAL_RANK are torchrun's, read here only.
"""
from __future__ import annotations

import os

import torch


def dist_info() -> tuple[int, int]:
    """(rank, world_size); (0, 1) without torch.distributed."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def counting_allreduce_hook(state: dict, bucket):
    """DDP comm hook: count the bytes each gradient bucket all-reduces, then all-reduce it."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    buf = bucket.buffer()
    state["bytes"] += buf.numel() * buf.element_size()
    return default_hooks.allreduce_hook(None, bucket)


def setup_distributed(device: str) -> str:
    """Under torchrun: init the process group (NCCL on GPUs, gloo on CPU); returns this rank's device."""
    if launched_world_size() <= 1:
        return device
    import torch.distributed as dist
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return f"cuda:{local}" if use_cuda else "cpu"


def teardown_distributed() -> None:
    if dist_info()[1] > 1:
        torch.distributed.destroy_process_group()


def launched_rank() -> int:
    """RANK as torchrun sets it (0 when not launched by torchrun), readable before init."""
    return int(os.environ.get("RANK", "0"))
