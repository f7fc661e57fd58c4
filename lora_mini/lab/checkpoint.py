"""One checkpoint/resume mechanism: a folder of safetensors + JSON, written atomically.

    save_checkpoint(folder, tensors, state, optimizer=opt, config=cfg_dict)
    ck = load_checkpoint(folder)                    # Checkpoint(tensors, state, optimizer, config)
    check_resume_config(ck.config, new_cfg_dict)    # refuse a different run; allowed changes noted

A checkpoint folder holds tensors.safetensors (trainable tensors), optimizer.safetensors +
optimizer.json (AdamW state as tensors and its JSON skeleton: nothing is unpickled), state.json
(loop state) and config.json. It is written to FOLDER.tmp, then FOLDER is swapped for it
(FOLDER -> FOLDER.old, FOLDER.tmp -> FOLDER, FOLDER.old removed), so a kill at any moment
leaves one complete checkpoint; `recover` finishes a swap that a kill interrupted. Used by
finetune, sweep, bench and DDP alike (rank 0 writes). `atomic_write_text` is the same idea
for one file.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

COMPLETE = "state.json"          # written last: a folder with it is a complete checkpoint
# settings a resumed run may change (recorded in state["changes"]); any other change is refused
RESUMABLE_CHANGES = {("train", "steps"), ("train", "eval_every"), ("train", "checkpoint_every"),
                     ("train", "budget_s"), ("train", "log_every"), ("train", "strategy"), ("train", "on_nonfinite"),
                     ("out",), ("device",), ("merge_check",), ("adapter_format",), ("eval_batch_size",)}


class CheckpointError(ValueError):
    """No usable checkpoint, or one that belongs to a different run."""


def atomic_write_text(path, text: str) -> Path:
    """Write `text` to path.tmp, fsync, then rename over `path` (never a half-written file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _optimizer_parts(optimizer) -> tuple[dict, dict]:
    """AdamW state_dict -> (tensors {"state.<i>.<key>": t}, JSON skeleton)."""
    sd = optimizer.state_dict()
    tensors, skeleton = {}, {"param_groups": [], "state": {}}
    for g in sd["param_groups"]:
        skeleton["param_groups"].append({k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in g.items()})
    for i, st in sd["state"].items():
        skeleton["state"][str(i)] = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{i}.{k}"] = v.detach().cpu().contiguous()
                skeleton["state"][str(i)][k] = "tensor"
            else:
                skeleton["state"][str(i)][k] = v
    return tensors, skeleton


def _optimizer_state(tensors: dict, skeleton: dict) -> dict:
    state = {}
    for i, st in skeleton["state"].items():
        state[int(i)] = {k: (tensors[f"state.{i}.{k}"] if v == "tensor" else v) for k, v in st.items()}
    return {"state": state, "param_groups": skeleton["param_groups"]}


def save_checkpoint(folder, tensors: dict, state: dict, optimizer=None, config: dict | None = None) -> Path:
    """Write a complete checkpoint to `folder` atomically (see the module docstring)."""
    from safetensors.torch import save_file
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({n: t.detach().cpu().contiguous() for n, t in tensors.items()}, str(tmp / "tensors.safetensors"))
    if optimizer is not None:
        opt_tensors, skeleton = _optimizer_parts(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(skeleton))
    (tmp / "config.json").write_text(json.dumps(config))
    atomic_write_text(tmp / COMPLETE, json.dumps(state))
    return swap_folder(tmp, folder)


def swap_folder(tmp, folder) -> Path:
    """Put the complete folder `tmp` in place of `folder`: folder -> folder.old, tmp -> folder, drop .old."""
    tmp, folder = Path(tmp), Path(folder)
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def recover(folder) -> str | None:
    """Finish a swap a kill interrupted; returns what was done ("tmp", "old") or None.

    A complete FOLDER.tmp with no FOLDER (killed between the two renames) becomes FOLDER;
    a FOLDER.old with no FOLDER (killed before the new one was in place) is put back.
    """
    folder = Path(folder)
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    if (folder / COMPLETE).is_file():
        return None
    if (tmp / COMPLETE).is_file():
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
        return "tmp"
    if (old / COMPLETE).is_file():
        shutil.rmtree(folder, ignore_errors=True)
        old.rename(folder)
        return "old"
    return None


@dataclass
class Checkpoint:
    tensors: dict
    state: dict
    optimizer: dict | None
    config: dict | None
    recovered: str | None = None


def load_checkpoint(folder) -> Checkpoint:
    """Read a checkpoint (after `recover`); raises CheckpointError if there is none."""
    from safetensors.torch import load_file
    folder = Path(folder)
    recovered = recover(folder)
    if not (folder / COMPLETE).is_file():
        raise CheckpointError(f"no checkpoint in {folder} ({COMPLETE} missing); run without --resume first")
    tensors = load_file(str(folder / "tensors.safetensors"))
    opt = None
    if (folder / "optimizer.json").is_file():
        opt = _optimizer_state(load_file(str(folder / "optimizer.safetensors")),
                               json.loads((folder / "optimizer.json").read_text()))
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else None
    return Checkpoint(tensors, json.loads((folder / COMPLETE).read_text()), opt, config, recovered)


def _flat(d, prefix=()) -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def check_resume_config(saved: dict | None, new: dict | None) -> list[dict]:
    """Compare a checkpoint's config with the new one: the allowed changes, or CheckpointError.

    Allowed (RESUMABLE_CHANGES): more or fewer steps, eval/checkpoint cadence, budget, output
    folder, device. Anything else (LR, batch size, seed, rank, targets, data...) is refused.
    """
    if saved is None or new is None:
        return []
    a, b = _flat(saved), _flat(new)
    changes = [{"setting": ".".join(k), "was": a.get(k), "now": b.get(k)}
               for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k)]
    refused = [c for c in changes if tuple(c["setting"].split(".")) not in RESUMABLE_CHANGES]
    if refused:
        c = refused[0]
        raise CheckpointError(f"--resume with a different {c['setting']} ({c['was']!r} in the checkpoint, "
                              f"{c['now']!r} now): resume with the checkpoint's settings or start a new --out")
    return changes
