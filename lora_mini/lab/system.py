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


def code_version() -> str | None:
    """The commit the code comes from: `git rev-parse --short HEAD` in the repository, or, where the
    tree was copied without its .git (the GPU machine), the commit written in runs/code_version.txt
    by whoever copied it; None if neither says."""
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    stamp = root / "runs" / "code_version.txt"
    return stamp.read_text().strip() or None if stamp.is_file() else None
