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


def _git(root, *args) -> str | None:
    """stdout of `git -C root ARGS` (stripped; "" when it prints nothing), None when git fails."""
    import subprocess
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version(root=None) -> str | None:
    """The commit the code comes from: `git rev-parse --short HEAD` of the repository, or the commit
    written in runs/code_version.txt by whoever copied the tree to another machine (the GPU machine)
    when that copy has no git, or a git that does not know the stamped commit (a stale .git copied
    along with a newer tree); None if neither says."""
    from pathlib import Path
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]   # the repository
    stamp_file = root / "runs" / "code_version.txt"
    stamp = (stamp_file.read_text().strip() or None) if stamp_file.is_file() else None
    head = _git(root, "rev-parse", "--short", "HEAD") or None
    if stamp and (head is None or _git(root, "cat-file", "-e", f"{stamp}^{{commit}}") is None):
        return stamp
    return head or stamp
