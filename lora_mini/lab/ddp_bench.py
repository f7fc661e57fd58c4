"""Data parallelism on 1 vs N GPUs (chapter 6): timed runs, then one report JSON + figure.

    python -m lora_mini ddp-bench --json runs/ddp/world1.json                     # one process
    torchrun --nproc_per_node 2 -m lora_mini ddp-bench --json runs/ddp/world2.json
    python -m lora_mini ddp-report --one runs/ddp/world1.json --two runs/ddp/world2.json \\
        --finetune runs/ddp/finetune_2gpu/results.json --json figures/ddp_gpu.json

ddp-bench trains LoRA and full fine-tuning at fixed global batches (a short warm-up run, then
the timed one) and records step time, tokens/s, peak memory, bytes all-reduced per step and
the losses. ddp-report pairs the two files row by row (speedup, scaling efficiency, loss gaps).
"""
from __future__ import annotations

import copy
import json
import os
import shlex
import sys
from pathlib import Path

from .checkpoint import atomic_write_text

LRS = {"lora": 2e-3, "full": 1e-4}


def add_bench_arguments(p) -> None:
    p.add_argument("--json", required=True, help="where this world size's results go")
    p.add_argument("--device", default="cuda", help="cuda or cpu (gloo; for smoke runs)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name, .gguf file or hub id")
    p.add_argument("--steps", type=int, default=60, help="timed steps per run")
    p.add_argument("--warm", type=int, default=10, help="warm-up steps (an untimed run first)")
    p.add_argument("--batches", default="64,256", help="global batch sizes, comma-separated")
    p.add_argument("--digits", default="2,3", help="operand digits of the addition task")
    p.add_argument("--n-train", type=int, default=20000, help="training sums")


def _timed(base, enc, tok, method: str, gb: int, args, device: str) -> dict:
    import torch
    from ..inject import apply_lora, count_parameters
    from .distributed import dist_info
    from .tasks import batches
    from .trainer import train
    rank, world = dist_info()
    for timed in (False, True):                 # first a short warm-up run, then the timed one
        dtype = torch.bfloat16 if method == "lora" and device != "cpu" else torch.float32
        model = copy.deepcopy(base).to(device=device, dtype=dtype)
        if method == "lora":
            torch.manual_seed(0)                # the same A on every run (DDP also broadcasts rank 0's)
            apply_lora(model, "all-linear", r=16, alpha=32)
        n_trainable = count_parameters(model)[0]
        it = batches(enc, gb, seed=0, pad_id=tok.pad_token_id, rank=rank, world_size=world)
        res = train(model, it, steps=args.steps if timed else args.warm, lr=LRS[method],
                    warmup_steps=args.steps // 10, batch_size=gb, progress=False)
        del model
        if device != "cpu":
            torch.cuda.empty_cache()
    return {"method": method, "global_batch": gb, "steps": args.steps, "lr": LRS[method],
            "trainable_params": n_trainable, "step_seconds": res["train_seconds"] / args.steps,
            "tokens_per_s": res["tokens_per_s"], "peak_mem_gib": res["peak_mem_gib"],
            "comm_bytes_per_step": res["comm_bytes_per_step"], "loss": [h["loss"] for h in res["history"]]}


def bench_main(args) -> int:
    import torch
    from .commands import load_base
    from .config import TaskConfig
    from .distributed import dist_info, setup_distributed, teardown_distributed
    from .finetune import make_data
    device = setup_distributed(args.device)
    base, tok = load_base(args.model, "cpu", torch.float32)
    digits = tuple(int(d) for d in args.digits.split(","))
    _, _, _, enc = make_data(tok, TaskConfig(digits=digits, n_train=args.n_train, n_test=16))
    rank, world = dist_info()
    out = {"world_size": world, "runs": []}
    for method in ("lora", "full"):
        for gb in (int(b) for b in args.batches.split(",")):
            out["runs"].append(_timed(base, enc, tok, method, gb, args, device))
            r = out["runs"][-1]
            if rank == 0:
                print(f"world={world} {method:4s} batch={gb:4d}: {1000 * r['step_seconds']:.1f} ms/step, "
                      f"{r['comm_bytes_per_step'] / 2**20:.1f} MiB all-reduced/step", flush=True)
    if rank == 0:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(out))
    teardown_distributed()
    return 0


def add_report_arguments(p) -> None:
    p.add_argument("--one", required=True, help="ddp-bench JSON of one process")
    p.add_argument("--two", required=True, help="ddp-bench JSON of two processes")
    p.add_argument("--finetune", required=True, help="results.json of `finetune` under torchrun")
    p.add_argument("--json", default="runs/ddp/ddp_gpu.json", help="the report (the figure is named after it)")


def pair(a: dict, b: dict) -> dict:
    """One row of the report: run a (1 process) against run b (2 processes), same method and batch."""
    if (a["method"], a["global_batch"]) != (b["method"], b["global_batch"]):
        raise ValueError(f"ddp-report: rows differ ({a['method']}/{a['global_batch']} vs {b['method']}/"
                         f"{b['global_batch']}); run ddp-bench with the same --batches")
    # early steps: relative difference (losses ~1-5); late steps: the gap of the mean loss over the last 20
    rel10 = max(abs(x - y) / max(abs(x), 1e-8) for x, y in zip(a["loss"][:10], b["loss"][:10]))
    k = min(20, len(a["loss"]))
    return {"method": a["method"], "global_batch": a["global_batch"], "steps": a["steps"], "lr": a["lr"],
            "trainable_params": a["trainable_params"],
            "step_ms_1gpu": 1000 * a["step_seconds"], "step_ms_2gpu": 1000 * b["step_seconds"],
            "speedup": a["step_seconds"] / b["step_seconds"],
            "scaling_efficiency": a["step_seconds"] / (2 * b["step_seconds"]),
            "comm_bytes_per_step": b["comm_bytes_per_step"],
            "peak_mem_gib_1gpu": a["peak_mem_gib"], "peak_mem_gib_2gpu": b["peak_mem_gib"],
            "loss_1gpu": a["loss"], "loss_2gpu": b["loss"], "rel_loss_diff_first10": rel10,
            "mean_loss_gap_last20": sum(b["loss"][-k:]) / k - sum(a["loss"][-k:]) / k,
            "final_loss_1gpu": a["loss"][-1], "final_loss_2gpu": b["loss"][-1]}


def plot_report(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    for r in rows:
        if r["global_batch"] == rows[0]["global_batch"]:
            ax[0].plot(r["loss_1gpu"], lw=1, label=f"{r['method']} 1 GPU")
            ax[0].plot(r["loss_2gpu"], "--", lw=1, label=f"{r['method']} 2 GPUs")
    ax[0].set(yscale="log", xlabel="step", ylabel="loss", title=f"same global batch {rows[0]['global_batch']}")
    names = [f"{r['method']}\nB={r['global_batch']}" for r in rows]
    ax[1].bar(names, [r["comm_bytes_per_step"] / 2**20 for r in rows],
              color=["C0" if r["method"] == "lora" else "C1" for r in rows])
    ax[1].set(yscale="log", ylabel="MiB all-reduced per step", title="gradient traffic")
    x = range(len(rows))
    ax[2].bar([i - 0.2 for i in x], [r["step_ms_1gpu"] for r in rows], 0.4, label="1 GPU")
    ax[2].bar([i + 0.2 for i in x], [r["step_ms_2gpu"] for r in rows], 0.4, label="2 GPUs")
    ax[2].set_xticks(list(x), names)
    ax[2].set(ylabel="ms per step", title="step time")
    for a in ax:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def report_main(args) -> int:
    import torch
    one, two = (json.loads(Path(f).read_text()) for f in (args.one, args.two))
    cli = json.loads(Path(args.finetune).read_text())
    rows = [pair(a, b) for a, b in zip(one["runs"], two["runs"])]
    keys = ("method", "lr", "steps", "batch_size", "world_size", "exact_match_before", "exact_match_after",
            "train_seconds", "tokens_per_s", "peak_mem_gib", "comm_bytes_per_step", "adapter_bytes", "merge_check")
    record = {"command": shlex.join(["python", "-m", "lora_mini", *sys.argv[1:]]), "torch": torch.__version__,
              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "nccl_nvls_enable": os.environ.get("NCCL_NVLS_ENABLE"), "rows": rows,
              "finetune_2gpu": {k: cli.get(k) for k in keys}}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(record, indent=1))
    plot_report(rows, out.with_name("06_ddp_gpu.png" if out.name == "ddp_gpu.json" else f"{out.stem}.png"))
    for r in rows:
        print(f"{r['method']:4s} B={r['global_batch']:4d}: {r['step_ms_1gpu']:.1f} -> {r['step_ms_2gpu']:.1f} ms/step "
              f"(efficiency {100 * r['scaling_efficiency']:.0f}%), {r['comm_bytes_per_step'] / 2**20:.2f} MiB/step")
    print(f"wrote {out}")
    return 0
