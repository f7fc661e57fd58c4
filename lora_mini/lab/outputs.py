"""The output folder of a run: checked before any work, locked while a run writes to it.

    check_out_folder(out, overwrite=False, resume=False)   # ConfigError if unusable (nothing written)
    with OutputLock(out):                                  # OUT/.lock holds this process's pid
        ...

A folder is unusable when it is a file, cannot be created or written, holds files from
another run (unless --overwrite or --resume), or is locked by a live process.
"""
from __future__ import annotations

import os
from pathlib import Path

from .config import ConfigError

LOCK = ".lock"


def _existing_parent(path: Path) -> Path:
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def _writable_dir(p: Path) -> bool:
    """True if a file can be created in the existing folder p (tried for real: root ignores modes)."""
    try:
        fd = os.open(p / f".lora_mini_probe_{os.getpid()}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except OSError:
        return False
    os.close(fd)
    os.unlink(p / f".lora_mini_probe_{os.getpid()}")
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_owner(out: Path) -> int | None:
    """The pid of a live process holding OUT/.lock, else None (a stale lock does not count)."""
    try:
        pid = int((out / LOCK).read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and pid != os.getpid() and _pid_alive(pid) else None


def check_out_folder(out, overwrite: bool = False, resume: bool = False) -> None:
    """Raise ConfigError (one line, with the fix) if `out` cannot take this run's files."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose another --out")
    parent = _existing_parent(out)
    if not parent.is_dir():
        raise ConfigError(f"--out {out}: {parent} is a file, so the folder cannot be created; choose another --out")
    if not _writable_dir(parent):
        raise ConfigError(f"--out {out}: cannot write in {parent}; choose a folder you can write to")
    if not out.is_dir():
        return
    owner = lock_owner(out)
    if owner is not None:
        raise ConfigError(f"--out {out} is in use by another run (pid {owner}); wait for it or choose another --out")
    files = [p.name for p in out.iterdir() if p.name != LOCK]
    if files and not (overwrite or resume):
        raise ConfigError(f"--out {out} already holds a run ({', '.join(sorted(files)[:3])}); pass --overwrite to "
                          "replace it, --resume to continue it, or choose another --out")


class OutputLock:
    """OUT/.lock with this pid while a run writes to OUT (created atomically; removed on exit)."""

    def __init__(self, out):
        self.out = Path(out)

    def __enter__(self):
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / LOCK
        if path.exists() and lock_owner(self.out) is None:
            path.unlink()                              # stale: its process is gone
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise ConfigError(f"--out {self.out} is in use by another run (pid {lock_owner(self.out)}); "
                              "wait for it or choose another --out") from None
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return self

    def __exit__(self, *exc):
        try:
            (self.out / LOCK).unlink()
        except FileNotFoundError:
            pass
        return False
