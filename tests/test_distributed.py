"""Data parallelism: 2 gloo processes (torchrun) train exactly like 1 process with the same global batch.

The worker below runs under `torchrun --standalone --nproc_per_node 2`; the test compares its
weights, losses and all-reduced bytes with a single-process run, and resumes its checkpoint
on one process (a different "GPU count").
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lora_mini import apply_lora, count_parameters, tiny_model
from lora_mini.lab.tasks import IGNORE, batches
from lora_mini.lab.trainer import train

STEPS, BATCH, LR = 6, 8, 5e-3

WORKER = textwrap.dedent('''
    import json, sys, torch, torch.distributed as dist
    from pathlib import Path
    from safetensors.torch import save_file
    sys.path.insert(0, sys.argv[2])
    from test_distributed import make_model, toy_data, STEPS, BATCH, LR
    from lora_mini.lab.tasks import batches
    from lora_mini.lab.trainer import train
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    out = Path(sys.argv[1])
    def data():
        return batches(toy_data(), BATCH, seed=1, pad_id=1, rank=rank, world_size=world)
    model = make_model()
    res = train(model, data(), steps=STEPS, lr=LR, warmup_steps=2, progress=False)
    if rank == 0:
        save_file({n: p.detach() for n, p in model.named_parameters() if p.requires_grad}, str(out / "ddp.safetensors"))
        (out / "ddp.json").write_text(json.dumps(res))
    train(make_model(), data(), steps=STEPS, lr=LR, warmup_steps=2, progress=False,
          checkpoint_dir=out / "ck", stop_at=3)                   # "interrupted" after step 3
    full = make_model(lora=False)
    res = train(full, data(), steps=2, lr=1e-4, progress=False)
    if rank == 0:
        (out / "full.json").write_text(json.dumps(res))
    dist.destroy_process_group()
''')


def toy_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        p = 4 + i % 3                                  # different lengths: ranks pad differently
        prompt = torch.randint(3, 13, (p,), generator=g).tolist()
        answer = prompt[:2 + i % 2] + [2]              # different answer lengths per row
        out.append({"input_ids": prompt + answer, "labels": [IGNORE] * p + answer, "prompt_len": p})
    return out


def make_model(lora=True):
    torch.manual_seed(0)
    model = tiny_model("llama", initializer_range=0.2)
    return apply_lora(model, "all-linear", r=4, alpha=8) if lora else model


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    script = out / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(out), str(Path(__file__).parent)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def single_process(**kw):
    model = make_model()
    res = train(model, batches(toy_data(), BATCH, seed=1, pad_id=1), steps=STEPS, lr=LR, warmup_steps=2,
                progress=False, **kw)
    return model, res


def test_two_ranks_match_one_process_with_the_same_global_batch(ddp_run):
    model, res = single_process()
    ddp = load_file(str(ddp_run / "ddp.safetensors"))
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p, ddp[n], atol=1e-6, rtol=1e-5), (n, (p - ddp[n]).abs().max())
    ddp_losses = [h["loss"] for h in json.loads((ddp_run / "ddp.json").read_text())["history"]]
    one = [h["loss"] for h in res["history"]]
    assert max(abs(a - b) / b for a, b in zip(one, ddp_losses)) < 1e-5, (one, ddp_losses)


def test_only_trainable_gradients_are_all_reduced(ddp_run):
    lora = json.loads((ddp_run / "ddp.json").read_text())
    full = json.loads((ddp_run / "full.json").read_text())
    n_lora, _ = count_parameters(make_model())
    n_total = sum(p.numel() for p in make_model(lora=False).parameters())
    assert lora["world_size"] == 2
    assert lora["comm_bytes_per_step"] == 4 * n_lora          # fp32 gradients of A and B only
    assert full["comm_bytes_per_step"] == 4 * n_total         # every parameter's gradient
    assert lora["tokens"] == single_process()[1]["tokens"]      # tokens counted over all ranks


def test_resume_a_two_rank_checkpoint_on_one_process(ddp_run):
    straight, _ = single_process()
    assert json.loads((ddp_run / "ck" / "state.json").read_text())["step"] == 3
    resumed, res = single_process(checkpoint_dir=ddp_run / "ck", resume=True)
    for (n, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.allclose(p, q, atol=1e-6, rtol=1e-5), n
    assert len(res["history"]) == STEPS
