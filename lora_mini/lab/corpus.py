"""A real corpus that installs offline: the Python standard library's own source files.

    files = stdlib_files()                       # sorted paths under the interpreter's Lib/
    corpus = build_corpus(tokenizer)             # {"train": 1-D ids, "heldout": 1-D ids, "info": {...}}
    X = to_blocks(corpus["train"], 256)          # (N, 256) token blocks
    it = block_batches(X, batch_size=32, seed=0) # {"input_ids", "attention_mask", "labels"} forever
    heldout_loss(model, to_blocks(corpus["heldout"], 256)[:128])

Why this corpus: millions of tokens of real code that nobody here wrote, present wherever Python
is, so a run needs nothing from a hub. The split is by file (a file is wholly train or wholly
held-out), decided by a hash of its relative path, so it does not depend on the machine. The
files do depend on the Python version (3.11 here, 3.12 on the GPU machine): `info` records the
version, the number of files and tokens and a hash of the token stream, and every sweep record
carries it.

Files kept: every *.py under Lib/ except third-party packages (site-packages), test suites
(test/, tests/, idle_test/, often missing from installs anyway), generated tables (encodings/,
pydoc_data/), demos, and the modules removed in Python 3.12 (distutils, asynchat, asyncore, imp,
smtpd), so that 3.11 and 3.12 draw from nearly the same set of modules.

`tokenizer=None` gives byte-level ids (0..255) for tests with `tiny_model()` (vocab 256).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from pathlib import Path

import torch

EXCLUDE_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test",
                "encodings", "pydoc_data", "turtledemo", "distutils", "ensurepip"}
REMOVED_IN_312 = {"asynchat.py", "asyncore.py", "imp.py", "smtpd.py"}


def stdlib_root() -> Path:
    """The running interpreter's Lib/ folder (e.g. /usr/lib/python3.12)."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: str | Path | None = None) -> list[str]:
    """Sorted relative paths (posix) of the *.py files the corpus uses."""
    root = Path(root) if root is not None else stdlib_root()
    if not root.is_dir():
        raise FileNotFoundError(f"no Python library folder at {root}; pass root=<path to Lib/>")
    out = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if any(part in EXCLUDE_DIRS for part in rel.parts[:-1]) or rel.name in REMOVED_IN_312:
            continue
        out.append(rel.as_posix())
    if not out:
        raise FileNotFoundError(f"no .py files found under {root}")
    return sorted(out)


def split_of(relpath: str, heldout_percent: int = 10) -> str:
    """"heldout" for about `heldout_percent` % of files (by md5 of the path), else "train"."""
    h = int(hashlib.md5(relpath.encode()).hexdigest(), 16)
    return "heldout" if h % 100 < heldout_percent else "train"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def _tokenizer_id(tokenizer) -> str:
    if tokenizer is None:
        return "bytes"
    probe = tokenizer("def f(x):\n    return x  # ok", add_special_tokens=False)["input_ids"]
    return f"{getattr(tokenizer, 'name_or_path', '?')}|{len(tokenizer)}|{probe}"


def separator_id(tokenizer) -> int:
    """The id put between files: <|endoftext|> if the vocabulary has it, else EOS (bytes: 0)."""
    if tokenizer is None:
        return 0
    tid = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if isinstance(tid, int) and tokenizer.convert_ids_to_tokens(tid) == "<|endoftext|>":
        return tid
    return tokenizer.eos_token_id


def encode(texts: list[str], tokenizer=None) -> list[list[int]]:
    """Token ids per text, without special tokens (bytes if tokenizer is None)."""
    if tokenizer is None:
        return [list(t.encode("utf-8")) for t in texts]
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]


def build_corpus(tokenizer=None, root: str | Path | None = None, heldout_percent: int = 10,
                 max_files: int | None = None, cache_dir: str | Path | None = None) -> dict:
    """Tokenize the stdlib into one train and one held-out id stream (files joined by a separator).

    Returns {"train": LongTensor (n_train,), "heldout": LongTensor (n_heldout,), "info": dict}.
    max_files: keep only the first n files (sorted) of each split, for quick CPU runs.
    cache_dir: if given, the result is cached there (keyed by files, tokenizer and settings).
    """
    root = Path(root) if root is not None else stdlib_root()
    files = stdlib_files(root)
    splits = {"train": [], "heldout": []}
    for f in files:
        splits[split_of(f, heldout_percent)].append(f)
    if max_files is not None:
        splits = {k: v[:max_files] for k, v in splits.items()}
    if not splits["heldout"] or not splits["train"]:
        raise ValueError(f"heldout_percent={heldout_percent} left a split empty; use a value in 1..99")
    tok_id = _tokenizer_id(tokenizer)
    key = hashlib.sha1(repr((sorted(splits.items()), tok_id, heldout_percent,
                             sys.version_info[:2])).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"stdlib_{key}.safetensors" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        return _load_cache(cache)
    sep = separator_id(tokenizer)
    out, info = {}, {"source": "python-stdlib", "python": ".".join(map(str, sys.version_info[:3])),
                     "root": str(root), "heldout_percent": heldout_percent, "max_files": max_files,
                     "tokenizer": "bytes" if tokenizer is None else getattr(tokenizer, "name_or_path", "?"),
                     "separator_id": sep}
    for name, names in splits.items():
        texts = [t for t in (_read(root / f) for f in names) if t]
        ids: list[int] = []
        for seq in encode(texts, tokenizer):
            ids.extend(seq)
            ids.append(sep)
        out[name] = torch.tensor(ids, dtype=torch.long)
        info[f"{name}_files"] = len(texts)
        info[f"{name}_chars"] = sum(len(t) for t in texts)
        info[f"{name}_tokens"] = len(ids)
        info[f"{name}_sha1"] = hashlib.sha1(out[name].numpy().tobytes()).hexdigest()[:12]
    out["info"] = info
    if cache is not None:
        _save_cache(cache, out)
    return out


def _save_cache(path: Path, corpus: dict) -> None:
    """Write token streams as safetensors (info as metadata), atomically: safe with parallel tests."""
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: corpus[k] for k in ("train", "heldout")}, str(tmp), metadata={"info": json.dumps(corpus["info"])})
    os.replace(tmp, path)


def _load_cache(path: Path) -> dict:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        out = {k: f.get_tensor(k) for k in ("train", "heldout")}
        out["info"] = json.loads(f.metadata()["info"])
    return out


def to_blocks(ids: torch.Tensor, block_size: int) -> torch.Tensor:
    """Cut a 1-D id stream into (N, block_size) rows, dropping the tail."""
    if block_size < 2:
        raise ValueError(f"block_size must be >= 2, got {block_size}")
    n = ids.numel() // block_size
    if n == 0:
        raise ValueError(f"{ids.numel()} tokens make no block of {block_size}; use a smaller block_size")
    return ids[: n * block_size].view(n, block_size)


def block_batches(blocks: torch.Tensor, batch_size: int, seed: int = 0):
    """Yield {"input_ids", "attention_mask", "labels"} (B, T) forever; each epoch a new shuffle.

    Every token is a target (labels = input_ids; the model shifts them). Deterministic in seed.
    """
    if not 1 <= batch_size <= len(blocks):
        raise ValueError(f"batch_size must be in 1..{len(blocks)} (the number of blocks), got {batch_size}")
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(blocks), generator=g)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            x = blocks[order[i: i + batch_size]]
            yield {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": x.clone()}


@torch.no_grad()
def heldout_loss(model, blocks: torch.Tensor, batch_size: int = 32, autocast_dtype=None) -> float:
    """Mean next-token cross-entropy (nats/token) of `model` over `blocks` (N, T)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        x = blocks[i: i + batch_size].to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
        total += loss.item()
        count += x[:, 1:].numel()
    model.train(was_training)
    return total / count
