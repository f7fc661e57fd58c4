"""Bad command-line input fails fast: one line `error: ...`, exit status 2, nothing written.

Each case runs `python -m lora_mini ...` in-process (the same `main` the console calls) from an
empty folder and must fail before any model is loaded: well under the 25-60 s of a SmolLM2 load.
A few run as real subprocesses to check the exit status the shell sees.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lora_mini.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model", "tiny", "--device", "cpu", "--no-progress"]

# (arguments, a word the one-line error must contain)
CASES = [
    (["--rank", "0"], "--rank must be a positive integer, got 0"),
    (["--rank", "-3"], "--rank"),
    (["--alpha", "0"], "--alpha"),
    (["--alpha", "nan"], "--alpha"),
    (["--dropout", "1.5"], "--dropout"),
    (["--lr", "-1e-3"], "--lr must be a positive number, got -0.001"),
    (["--lr", "0"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--steps", "0"], "--steps"),
    (["--batch-size", "0"], "--batch-size"),
    (["--warmup", "-1"], "--warmup"),
    (["--steps", "5", "--warmup", "6"], "--warmup (6) must not exceed --steps (5)"),
    (["--eval-every", "-1"], "--eval-every"),
    (["--n-test", "0"], "--n-test"),
    (["--n-train", "0"], "--n-train"),
    (["--n-val", "-2"], "--n-val"),
    (["--digits", "3,2"], "--digits"),
    (["--digits", "0,2"], "--digits"),
    (["--digits", "a,b"], "--digits"),
    (["--digits", "1,1", "--n-train", "100"], "distinct sums"),
    (["--grad-clip", "-1"], "--grad-clip"),
    (["--weight-decay", "-0.1"], "--weight-decay"),
    (["--budget", "0"], "--budget"),
    (["--checkpoint-every", "-1"], "--checkpoint-every"),
    (["--steps", "4", "--checkpoint-every", "10"], "--checkpoint-every"),
    (["--targets", ""], "--targets"),
    (["--targets", "q_proj,,v_proj"], "empty name"),
    (["--targets", "q_proj[("], "not a valid regex"),
    (["--device", "cuda"], "no CUDA GPU"),
    (["--device", "gpu0"], "--device"),
    (["--val-fraction", "1.5", "--data", "x.jsonl"], "--val-fraction"),
    (["--max-length", "0", "--data", "x.jsonl"], "--max-length"),
    (["--resume"], "no checkpoint"),
    (["--resume", "--overwrite"], "contradict"),
    (["--precision", "bf16"], "needs a GPU"),
]


def _snapshot(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_cli(args, tmp_path, capsys):
    before = _snapshot(tmp_path)
    t0 = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(["finetune", *FAST, "--out", str(tmp_path / "out"), *args])
    finally:
        os.chdir(cwd)
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err.strip().splitlines()
    return code, err, seconds, _snapshot(tmp_path) - before


@pytest.mark.parametrize("args,words", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_setting_fails_fast_with_one_line(args, words, tmp_path, capsys, monkeypatch):
    if args == ["--device", "cuda"]:
        monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    if args == ["--precision", "bf16"]:
        args = args + ["--device", "cpu"]
    code, err, seconds, written = run_cli(args, tmp_path, capsys)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert not written, written
    assert seconds < 5, seconds            # a model load takes 25-60 s


def test_output_that_cannot_be_used(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, words in ((a_file, "is a file"), (a_file / "sub", "cannot be created"), ("/proc/x", "cannot write")):
        before = _snapshot(tmp_path)
        code = main(["finetune", *FAST, "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and words in err[0], err
        assert _snapshot(tmp_path) == before


def test_a_non_empty_out_needs_overwrite(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{}")
    code = main(["finetune", *FAST, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and (tmp_path / "results.json").read_text() == "{}"


def test_a_locked_out_is_refused(tmp_path, capsys):
    (tmp_path / ".lock").write_text(str(os.getppid()))      # a live process (our parent) holds it
    code = main(["finetune", *FAST, "--out", str(tmp_path), "--overwrite"])
    assert code == 2 and "in use by another run" in capsys.readouterr().err


@pytest.mark.parametrize("argv,code", [(["finetune", "--rank", "0"], 2), (["finetune", "--lr", "-1e-3"], 2)])
def test_the_shell_sees_status_2_and_one_line(argv, code, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "lora_mini", *argv, "--out", str(tmp_path / "o")], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == code and p.stderr.strip().count("\n") == 0 and p.stderr.startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "o").exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="--rank"):
        main(["--debug", "finetune", *FAST, "--rank", "0", "--out", str(tmp_path / "o")])
