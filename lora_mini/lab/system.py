"""Facts about this machine, read in one place: is the device there, how much memory is free."""
from __future__ import annotations

import torch


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, with the fix (before any model is loaded)."""
    from .config import ConfigError
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU is visible here (torch.cuda.is_available() is False); "
                              "use --device cpu or --device auto")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) here; use cuda:0")
    if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("--device mps: Apple's MPS backend is not available here; use --device cpu")


def free_memory_bytes(device) -> int | None:
    """Free memory on a CUDA device (cudaMemGetInfo), or the available RAM on CPU (/proc/meminfo)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
