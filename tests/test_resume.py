"""Kill and resume: a tiny-model `finetune` killed at random steps (SIGKILL, SIGTERM) and resumed
ends bit for bit where the uninterrupted run ends; a kill during a save leaves the previous
checkpoint loadable."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
STEPS = 14
ARGS = ["finetune", "--model", "tiny", "--device", "cpu", "--no-progress", "--digits", "1,1", "--n-train", "40",
        "--n-test", "4", "--batch-size", "8", "--lr", "1e-2", "--warmup", "2", "--eval-every", "0",
        "--steps", str(STEPS), "--checkpoint-every", "1", "--no-merge-check"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def cli(out, *extra, **kw):
    return subprocess.Popen([sys.executable, "-m", "lora_mini", *ARGS, "--out", str(out), *extra],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def step_of(out: Path) -> int:
    try:
        return json.loads((out / "checkpoint" / "state.json").read_text())["step"]
    except (OSError, ValueError):
        return 0


def kill_at(proc, out: Path, step: int, sig) -> None:
    """Send `sig` once the run's checkpoint says it has done `step` steps."""
    deadline = time.time() + 240
    while step_of(out) < step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(sig)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    code, _, err = finish(cli(out))
    assert code == 0, err
    return out


def tensors(out: Path) -> dict:
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_and_resumed_equals_the_uninterrupted_run(sig, straight, tmp_path):
    rng = random.Random(int(sig))
    out = tmp_path / "run"
    kills = sorted(rng.sample(range(2, STEPS - 1), 2 if sig == signal.SIGKILL else 1))
    proc = cli(out)
    for k in kills:
        kill_at(proc, out, k, sig)
        code, _, err = finish(proc)
        assert code == (130 if sig == signal.SIGTERM else -signal.SIGKILL), err
        if sig == signal.SIGTERM:
            assert "--resume" in err and "Traceback" not in err
        assert 0 < step_of(out) < STEPS
        proc = cli(out, "--resume")
    code, _, err = finish(proc)
    assert code == 0, err
    a, b = tensors(straight), tensors(out)
    assert set(a) == set(b) and all((a[n] == b[n]).all() for n in a)          # bit for bit
    la = [h["loss"] for h in json.loads((straight / "results.json").read_text())["history"]]
    lb = [h["loss"] for h in json.loads((out / "results.json").read_text())["history"]]
    assert la == lb


SAVER = textwrap.dedent('''
    import sys, torch
    from lora_mini.lab.checkpoint import save_checkpoint
    i = 0
    while True:
        i += 1
        save_checkpoint(sys.argv[1], {"w": torch.full((512, 1024), float(i))}, {"step": i})
''')


def test_a_kill_during_a_save_leaves_a_loadable_checkpoint(tmp_path):
    from lora_mini.lab.checkpoint import load_checkpoint
    folder = tmp_path / "ck"
    rng = random.Random(0)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(folder)], env=ENV)
        deadline = time.time() + 120
        while not folder.with_name("ck.tmp").exists() and not folder.exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.2, 1.0))
        proc.kill()
        proc.wait()
        ck = load_checkpoint(folder)                   # recovers an interrupted swap if needed
        assert ck.state["step"] >= 1 and (ck.tensors["w"] == ck.state["step"]).all()
