import os
import re
import subprocess
import sys

import pytest
import torch

from lora_mini.lab.corpus import block_batches, build_corpus, heldout_loss, split_of, stdlib_files, to_blocks


def test_stdlib_files_exclude_tests_and_removed_modules():
    files = stdlib_files()
    assert len(files) > 300 and files == sorted(files)
    assert not any("/test/" in f or f.startswith("test/") or f.startswith("encodings/") for f in files)
    assert "asyncore.py" not in files and "argparse.py" in files


def test_split_is_by_path_hash_and_deterministic():
    files = stdlib_files()
    held = [f for f in files if split_of(f) == "heldout"]
    assert 0.04 < len(held) / len(files) < 0.16
    assert split_of("argparse.py", 0) == "train" and split_of("argparse.py", 100) == "heldout"
    # the same split in another process with another string-hash seed (md5 of the path, not hash())
    code = "import sys; from lora_mini.lab.corpus import split_of; print(''.join(split_of(l.strip())[0] for l in sys.stdin))"
    other = subprocess.run([sys.executable, "-c", code], input="\n".join(files), capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True).stdout.strip()
    assert other == "".join(split_of(f)[0] for f in files)


def test_split_is_by_file_and_independent_of_the_folder(tmp_path):
    """Every file's text lands wholly in its split's stream; a copy of the tree elsewhere gives the same corpus."""
    for root in (tmp_path / "a", tmp_path / "b" / "deeper"):
        for i in range(40):
            path = root / f"pkg{i % 3}" / f"mod{i}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"MARK{i:03d} = {i}\n")
    a, b = build_corpus(None, root=tmp_path / "a"), build_corpus(None, root=tmp_path / "b" / "deeper")
    assert a["info"]["train_sha1"] == b["info"]["train_sha1"] and a["info"]["heldout_sha1"] == b["info"]["heldout_sha1"]
    for split in ("train", "heldout"):
        text = bytes(a[split].tolist()).decode()
        marks = {int(m) for m in re.findall(r"MARK(\d{3})", text)}
        assert marks == {i for i in range(40) if split_of(f"pkg{i % 3}/mod{i}.py") == split}, split
    assert a["info"]["heldout_files"] + a["info"]["train_files"] == 40 and a["info"]["heldout_files"] > 0


def test_byte_corpus_roundtrip_and_info():
    c = build_corpus(None, max_files=3)
    info = c["info"]
    assert info["train_files"] == 3 and info["heldout_files"] == 3
    assert c["train"].max() < 256 and info["train_tokens"] == c["train"].numel()
    text = bytes(c["train"][:200].tolist()).decode("utf-8", errors="replace")
    assert "import" in text or "def" in text or '"""' in text
    assert build_corpus(None, max_files=3)["info"]["train_sha1"] == info["train_sha1"]


def test_blocks_and_batches():
    ids = torch.arange(1000)
    X = to_blocks(ids, 64)
    assert X.shape == (15, 64) and X[1, 0] == 64
    it = block_batches(X, 4, seed=0)
    b1, b2 = next(it), next(it)
    assert b1["input_ids"].shape == (4, 64) and torch.equal(b1["labels"], b1["input_ids"])
    assert torch.equal(next(block_batches(X, 4, seed=0))["input_ids"], b1["input_ids"])
    assert not torch.equal(b1["input_ids"], b2["input_ids"])
    with pytest.raises(ValueError, match="batch_size"):
        next(block_batches(X, 100))
    with pytest.raises(ValueError, match="block"):
        to_blocks(torch.arange(10), 64)


def test_heldout_loss_matches_model_loss():
    from lora_mini import tiny_model
    model = tiny_model("llama")
    X = to_blocks(build_corpus(None, max_files=2)["heldout"], 32)[:6]
    ours = heldout_loss(model, X, batch_size=4)
    with torch.no_grad():
        ref = model(input_ids=X, labels=X).loss.item()
    assert abs(ours - ref) < 1e-4
