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
    assert [split_of(f) for f in files] == [split_of(f) for f in files]
    assert split_of("argparse.py", 0) == "train" and split_of("argparse.py", 100) == "heldout"


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
