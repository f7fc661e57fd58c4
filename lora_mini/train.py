"""One small training loop for LoRA and full fine-tuning, and the `finetune` command.

    apply_lora(model, "all-linear", r=16, alpha=32)     # or not: then every parameter trains
    out = train(model, batches(enc, 64, 0, pad), steps=300, lr=1e-3, warmup_steps=30,
                eval_fn=lambda m: exact_match(m, tok, test), eval_every=100)
    out["history"]   # [{"step", "loss", "lr"}] every step
    out["evals"]     # [{"step", "exact_match", ...}] at step 0, every eval_every, and at the end

What trains is whatever has requires_grad (apply_lora freezes W and leaves A, B trainable).
AdamW, linear warm-up then cosine/linear decay to 0 (or constant), gradient clipping, bf16
autocast on a GPU, fp32 on CPU. The loss is the mean cross-entropy over answer tokens only,
and logits are computed only where there is a label (a 49k-word head on 5 of 30 positions).

Under torchrun (WORLD_SIZE > 1) the same loop runs with DistributedDataParallel: each rank
gets its slice of the global batch, DDP all-reduces the gradients of the trainable parameters
only, and rank 0 alone shows progress, evaluates and writes checkpoints.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tasks import IGNORE

# ----------------------------------------------------------------------------- the loss


class AnswerLoss(nn.Module):
    """Wraps a causal LM: forward(input_ids, attention_mask, labels) -> (sum of token losses, n).

    Logits are computed only at positions whose next token has a label (the answer), which
    skips the big output head everywhere else. Summing (not averaging) lets the caller divide
    by the token count of the whole global batch, so N data-parallel ranks match one process.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, labels, static: bool = False):
        body, head = self.model.base_model, self.model.get_output_embeddings()
        h = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, d)
        targets = labels[:, 1:]                        # position t predicts token t+1
        keep = targets != IGNORE                       # (B, T-1)
        if static:   # fixed shapes for CUDA graphs: the head on every position, unlabelled ones ignored
            logits = head(h[:, :-1])                   # (B, T-1, vocab)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE,
                                   reduction="sum")
            return loss, keep.sum()
        logits = head(h[:, :-1][keep])                 # (N, vocab), N = answer tokens
        loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
        return loss, keep.sum()


# ----------------------------------------------------------------------------- schedule


def lr_factor(step: int, steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the peak LR at `step` (0-based): linear warm-up, then decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"schedule must be 'cosine', 'linear' or 'constant', got {schedule!r}")


# ----------------------------------------------------------------------------- distributed


def dist_info() -> tuple[int, int]:
    """(rank, world_size); (0, 1) without torch.distributed."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def counting_allreduce_hook(state: dict, bucket):
    """DDP comm hook: count the bytes each gradient bucket all-reduces, then all-reduce it."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    buf = bucket.buffer()
    state["bytes"] += buf.numel() * buf.element_size()
    return default_hooks.allreduce_hook(None, bucket)


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(folder, model, optimizer, state: dict) -> None:
    """Trainable tensors (safetensors), optimizer state and loop state, written atomically."""
    from safetensors.torch import save_file
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(tensors, str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load_checkpoint(folder, model, optimizer) -> dict:
    """Copy the checkpoint's tensors into the model and optimizer; returns the loop state."""
    from safetensors.torch import load_file
    folder = Path(folder)
    if not (folder / "state.json").is_file():
        raise FileNotFoundError(f"no checkpoint in {folder} (state.json missing); run without resume first")
    tensors = load_file(str(folder / "trainable.safetensors"))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(tensors) != set(params):
        diff = sorted(set(tensors) ^ set(params))[:3]
        raise ValueError(f"checkpoint {folder} does not match the model's trainable parameters (e.g. {diff}); "
                         "resume with the same method, rank and targets")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[n])
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    return json.loads((folder / "state.json").read_text())


# ----------------------------------------------------------------------------- the loop


def cpu_threads() -> int:
    """Threads for CPU training: the cores not already busy (cores − 1-minute load average), at least 1.

    On a shared machine, OpenMP threads that outnumber the free cores keep waiting for each other:
    on 2 busy cores a SmolLM2 step took 3–10× longer with 2 threads than with 1. On an idle
    machine this is every core (torch's default). OMP_NUM_THREADS, when set, wins.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return int(os.environ["OMP_NUM_THREADS"])
    cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


def peak_memory_gib(device: torch.device) -> float:
    """Peak GPU memory allocated (CUDA), else the process's peak resident memory (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # Linux: KiB


def needs_autocast(model: nn.Module) -> bool:
    """True if a weight the forward multiplies by is float32 (then a GPU run wants bf16 autocast).

    LoRA's float32 masters A, B don't count (LoRALinear casts them to the activations' dtype),
    so LoRA on a bf16 base runs without autocast (and can use the fast path); full fine-tuning
    with float32 master weights needs it.
    """
    lora_masters = {id(p) for n, p in model.named_parameters() if ".lora_" in n}
    return any(p.dtype == torch.float32 for p in model.parameters() if id(p) not in lora_masters and p.dim() > 1)


def train(model: nn.Module, batches, *, steps: int, lr: float, warmup_steps: int = 0,
          schedule: str = "cosine", weight_decay: float = 0.0, grad_clip: float | None = 1.0,
          optimizer=None, eval_fn=None, eval_every: int = 0, log_every: int = 10,
          checkpoint_dir=None, checkpoint_every: int = 0, resume: bool = False,
          progress: bool = True, amp: bool | None = None, comm_hook: bool = True,
          stop_at: int | None = None, cuda_graph: bool = False, pad_to: int | None = None) -> dict:
    """Train every parameter with requires_grad for `steps` steps; returns a dict of results.

    batches: iterator of {"input_ids", "attention_mask", "labels"} (B, T) (this rank's slice).
    optimizer: default AdamW(trainable, lr, weight_decay); the schedule scales each group's lr.
    eval_fn(model) -> dict, run (on rank 0) at step 0, every eval_every steps and at the end.
    checkpoint_dir: save there every checkpoint_every steps (0: only at the end); resume=True
    continues from it (the iterator is fast-forwarded, so the data order is unchanged).
    stop_at: stop after this step as if interrupted (checkpoint first); the schedule still
    follows `steps`, so a resumed run ends exactly where an uninterrupted one would.
    amp: bf16 autocast (default: on for CUDA when the frozen or trainable weights the forward
    uses are float32; off when the base is already bf16, so LoRA's fast path runs).
    cuda_graph: after 3 eager warm-up steps, replay each step from a CUDA graph (graphs.py);
    needs one process on CUDA, no autocast, and right-padded batches, padded here to pad_to
    tokens (default: the first batch's length); falls back to eager if capture fails ("step_mode").
    Returns {"history", "evals" (each with "train_seconds" so far), "train_seconds", "tokens",
    "tokens_per_s", "peak_mem_gib", "steps", "comm_bytes_per_step", "world_size", "amp",
    "step_mode", "graph_error"}.
    """
    from .graphs import GraphedStep, make_adamw, right_padded, set_lr, get_lr
    from tqdm.auto import tqdm

    if steps < 1 or lr <= 0:
        raise ValueError(f"train needs steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    lr_factor(0, steps, warmup_steps, schedule)        # validates the schedule name
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("train: the model has no trainable parameters (requires_grad=False everywhere)")
    device = params[0].device
    amp = (device.type == "cuda" and needs_autocast(model)) if amp is None else amp
    rank, world = dist_info()
    main_rank = rank == 0
    if cuda_graph and (device.type != "cuda" or world > 1):
        raise ValueError("cuda_graph=True needs one process on a CUDA device; use cuda_graph=False "
                         f"(device={device.type}, world size={world})")
    if cuda_graph and amp:
        raise ValueError("cuda_graph=True with bf16 autocast (float32 weights, e.g. full fine-tuning) is not "
                         "supported: on an H200 its losses turned NaN right after capture (figures/GPU_RUNS.md). "
                         "Use cuda_graph=False, or bf16 weights without autocast (amp=False)")
    if optimizer is None:
        optimizer = make_adamw(params, lr, weight_decay, graphs=cuda_graph)
    base_lrs = [get_lr(g) for g in optimizer.param_groups]

    loss_module = AnswerLoss(model)
    comm = {"bytes": 0}
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        loss_module = DDP(loss_module, device_ids=[device.index] if device.type == "cuda" else None)
        if comm_hook:
            loss_module.register_comm_hook(comm, counting_allreduce_hook)

    state = {"step": 0, "history": [], "evals": [], "tokens": 0, "train_seconds": 0.0}
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir")
        state = load_checkpoint(checkpoint_dir, model, optimizer)
        for _ in range(state["step"]):                 # same data order as an uninterrupted run
            next(batches)

    def evaluate(step):
        if eval_fn is not None and main_rank:
            was = model.training
            model.eval()
            state["evals"].append({"step": step, "train_seconds": state["train_seconds"], **eval_fn(model)})
            model.train(was)
        if world > 1:
            torch.distributed.barrier()

    def checkpoint():
        if checkpoint_dir is not None and main_rank:
            save_checkpoint(checkpoint_dir, model, optimizer, state)
        if world > 1:
            torch.distributed.barrier()

    start = state["step"]
    if eval_every and start == 0:
        evaluate(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    losses = torch.zeros(steps, device=device)          # per-step loss, synced every log_every
    tokens = torch.zeros((), dtype=torch.long, device=device)   # non-pad tokens since the last flush (this rank)
    logged = state["step"]
    bar = tqdm(total=steps, initial=state["step"], desc="train", disable=not (progress and main_rank))

    def flush(upto):
        nonlocal logged
        values = losses[logged:upto].tolist()
        for i, v in enumerate(values):
            s = logged + i
            state["history"].append({"step": s + 1, "loss": v,
                                     "lr": base_lrs[0] * lr_factor(s, steps, warmup_steps, schedule)})
        bar.update(upto - logged)
        if values:
            bar.set_postfix(loss=f"{values[-1]:.3f}")
        logged = upto
        if world > 1:                                   # every rank flushes at the same steps
            torch.distributed.all_reduce(tokens)
        state["tokens"] += int(tokens.item())
        tokens.zero_()

    def step_fn(batch):
        """One training step (forward, backward, clip, AdamW); returns the mean loss (detached)."""
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):   # never with cuda_graph (above)
            loss_sum, n_labels = loss_module(batch["input_ids"], batch.get("attention_mask"), batch["labels"],
                                             static=cuda_graph)
        if world > 1:   # mean over the global batch's answer tokens, as one process would compute
            n_labels = n_labels.float()
            torch.distributed.all_reduce(n_labels)
            loss = loss_sum * world / n_labels                 # DDP averages gradients over ranks
            mean = loss_sum.detach() / n_labels
            torch.distributed.all_reduce(mean)
        else:
            loss = loss_sum / n_labels
            mean = loss.detach()
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        return mean

    graphed = GraphedStep(step_fn, optimizer, warmup=3) if cuda_graph else None

    def fixed_shape(batch):
        """Right-padded (B, T) CPU batch -> (B, pad_to) without attention_mask (causal + right padding)."""
        nonlocal pad_to
        if not right_padded(batch["attention_mask"]):
            raise ValueError("cuda_graph=True needs right-padded batches (tasks.batches pads on the right)")
        T = batch["input_ids"].shape[1]
        pad_to = pad_to or T
        if T > pad_to:
            raise ValueError(f"a batch has {T} tokens, more than pad_to={pad_to}; pass a larger pad_to")
        return {"input_ids": F.pad(batch["input_ids"], (0, pad_to - T), value=0),
                "labels": F.pad(batch["labels"], (0, pad_to - T), value=IGNORE)}

    t0 = time.perf_counter()
    end = steps if stop_at is None else min(stop_at, steps)
    for step in range(state["step"], end):
        for g, base in zip(optimizer.param_groups, base_lrs):
            set_lr(g, base * lr_factor(step, steps, warmup_steps, schedule))
        cpu_batch = next(batches)
        n_tokens = cpu_batch["attention_mask"].sum().to(device, non_blocking=True)
        if graphed is not None:
            batch = {k: v.to(device, non_blocking=True) for k, v in fixed_shape(cpu_batch).items()}
            mean = graphed(batch)
        else:
            batch = {k: v.to(device, non_blocking=True) for k, v in cpu_batch.items()}
            mean = step_fn(batch)
            optimizer.zero_grad(set_to_none=True)
        losses[step] = mean
        tokens += n_tokens.long()
        state["step"] = step + 1
        done = step + 1
        if done % log_every == 0 or done == end:
            flush(done)
        if (eval_every and done % eval_every == 0 and done != steps) or \
                (checkpoint_every and done % checkpoint_every == 0 and done != steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            state["train_seconds"] += time.perf_counter() - t0
            flush(done)
            if eval_every and done % eval_every == 0:
                evaluate(done)
            if checkpoint_every and done % checkpoint_every == 0:
                checkpoint()
            t0 = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    state["train_seconds"] += time.perf_counter() - t0
    flush(end)
    bar.close()
    if eval_fn is not None and end == steps and (not state["evals"] or state["evals"][-1]["step"] != steps):
        evaluate(steps)
    if checkpoint_dir is not None:
        checkpoint()
    model.eval()
    if graphed is not None:
        graphed.release()       # the graph's memory pool; grads point into it, so drop them too
    secs = state["train_seconds"]
    return {"history": state["history"], "evals": state["evals"], "steps": state["step"],
            "train_seconds": secs, "tokens": state["tokens"],
            "tokens_per_s": state["tokens"] / secs if secs > 0 else float("nan"),
            "peak_mem_gib": peak_memory_gib(device), "world_size": world,
            "comm_bytes_per_step": comm["bytes"] / max(1, end - start), "amp": amp,
            "step_mode": graphed.mode if graphed is not None else "eager",
            "graph_error": graphed.error if graphed is not None else None}


# ----------------------------------------------------------------------------- the finetune job

# The quick CPU run (2-digit sums, ~3 min of CPU time; reaches ~85% from 0%) and the full GPU run (2–3 digits).
PRESETS = {
    "cpu": dict(digits=(2, 2), n_train=2000, n_test=48, steps=48, batch_size=16, warmup_steps=5,
                eval_every=24, lr={"lora": 2e-3, "full": 5e-5}),
    "gpu": dict(digits=(2, 3), n_train=20000, n_test=300, steps=300, batch_size=64, warmup_steps=30,
                eval_every=100, lr={"lora": 2e-3, "full": 1e-4}),
}
SYSTEM = ""   # an empty system message: a short prompt (the template's default adds 15 tokens)


def preset(device) -> dict:
    """The default configuration for a device: "gpu" on CUDA, else the quick "cpu" one."""
    return dict(PRESETS["gpu" if torch.device(device).type == "cuda" else "cpu"])


_DATA: dict = {}   # make_data's results, so that a sweep encodes its 20k chats once


def make_data(tokenizer, digits, n_train, n_test, seed=0):
    """(task, train examples, test examples, encoded train) for the addition task (cached)."""
    from .tasks import AdditionTask, encode_examples
    key = (id(tokenizer), tuple(digits), n_train, n_test, seed)
    if key not in _DATA:
        task = AdditionTask(digits=digits, seed=seed, system=SYSTEM)
        train_ex, test_ex = task.make_splits(n_train, n_test)
        _DATA.clear()
        _DATA[key] = task, train_ex, test_ex, encode_examples(tokenizer, train_ex)
    task, train_ex, test_ex, enc = _DATA[key]
    return task, list(train_ex), list(test_ex), list(enc)


def finetune(model, tokenizer, *, method="lora", rank=16, alpha=32.0, targets="all-linear",
             lr=None, steps=None, batch_size=None, digits=None, n_train=None, n_test=None,
             warmup_steps=None, eval_every=None, schedule="cosine", seed=0, out=None,
             checkpoint_every=0, resume=False, progress=True, merge_check=True, eval_batch_size=64,
             n_val=0, cuda_graph=None) -> dict:
    """Fine-tune `model` (changed in place) on additions; returns a results dict (JSON-ready).

    method "lora": apply_lora(model, targets, rank, alpha) then train A, B; "full": train all.
    n_val > 0 holds out that many training pairs as a validation split (for choosing the LR).
    cuda_graph: replay training steps from a CUDA graph (default: on for one CUDA process when no
    autocast is needed, i.e. LoRA on a bf16 base; batches are then padded to the longest example). Unset options come from preset(device).
    With out=DIR (rank 0): DIR/results.json,
    DIR/adapter/ (LoRA), DIR/plot.png, and with checkpoint_every > 0 DIR/checkpoint/ (resumable).
    """
    from .inject import apply_lora, count_parameters
    from .io import adapter_bytes, save_adapter
    from .merge import merge, unmerge
    from .tasks import batches, exact_match

    if method not in ("lora", "full"):
        raise ValueError(f"method must be 'lora' or 'full', got {method!r}")
    device = next(model.parameters()).device
    cfg = preset(device)
    given = dict(steps=steps, batch_size=batch_size, digits=digits, n_train=n_train, n_test=n_test,
                 warmup_steps=warmup_steps, eval_every=eval_every)
    cfg.update({k: v for k, v in given.items() if v is not None})
    lr = cfg["lr"][method] if lr is None else lr
    rank_, world = dist_info()
    torch.manual_seed(seed)

    task, train_ex, test_ex, enc = make_data(tokenizer, tuple(cfg["digits"]), cfg["n_train"] + n_val,
                                             cfg["n_test"], seed)
    if n_val:
        train_ex, val_ex, enc = train_ex[:-n_val], train_ex[-n_val:], enc[:-n_val]
    max_new = task.digits[1] + 2                        # the longest sum has digits+1 digits, then <|im_end|>
    last = {}

    def evaluate(m):
        last["result"] = exact_match(m, tokenizer, test_ex, eval_batch_size, max_new)
        return last["result"]

    if method == "lora":
        apply_lora(model, targets, r=rank, alpha=alpha)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    trainable, total = count_parameters(model)
    it = batches(enc, cfg["batch_size"], seed=seed, pad_id=tokenizer.pad_token_id, rank=rank_, world_size=world)
    # a resumable checkpoint (trainable weights + AdamW state) only when asked: for full FT it is ~1.6 GB
    ckpt = Path(out) / "checkpoint" if out is not None and (checkpoint_every or resume) else None
    if cuda_graph is None:   # verified on an H200 for LoRA on a bf16 base; not with autocast (full FT)
        cuda_graph = device.type == "cuda" and world == 1 and not needs_autocast(model)
    result = train(model, it, steps=cfg["steps"], lr=lr, warmup_steps=cfg["warmup_steps"], schedule=schedule,
                   eval_fn=lambda m: {"exact_match": evaluate(m)["exact_match"]},
                   eval_every=cfg["eval_every"], checkpoint_dir=ckpt, checkpoint_every=checkpoint_every,
                   resume=resume, progress=progress, cuda_graph=cuda_graph,
                   pad_to=max(len(e["input_ids"]) for e in enc) if cuda_graph else None)
    res = {"method": method, "lr": lr, "steps": cfg["steps"], "batch_size": cfg["batch_size"],
           "digits": list(task.digits), "n_train": cfg["n_train"], "n_test": cfg["n_test"], "seed": seed,
           "schedule": schedule, "warmup_steps": cfg["warmup_steps"],
           "rank": rank if method == "lora" else None, "alpha": alpha if method == "lora" else None,
           "targets": targets if method == "lora" else None,
           "trainable_params": trainable, "total_params": total,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "dtype": str(next(p for p in model.parameters() if not p.requires_grad).dtype
                        if method == "lora" else params_dtype(model)),
           "world_size": world, **{k: v for k, v in result.items()}}
    if rank_ != 0:
        return res
    final = last["result"] if "result" in last and result["evals"] and result["evals"][-1]["step"] == cfg["steps"] else evaluate(model)
    res["exact_match_before"] = result["evals"][0]["exact_match"] if result["evals"] and \
        result["evals"][0]["step"] == 0 else None
    res["exact_match_after"] = final["exact_match"]
    if n_val:
        res["n_val"] = n_val
        res["exact_match_val"] = exact_match(model, tokenizer, val_ex, eval_batch_size, max_new)["exact_match"]
    res["samples"] = [{"question": ex["messages"][-1]["content"], "answer": ex["answer"], "model": a}
                      for ex, a in zip(test_ex[:8], final["answers"][:8])]
    if method == "lora":
        if out is not None:
            folder = save_adapter(model, Path(out) / "adapter")
            res["adapter_bytes"] = adapter_bytes(folder)
        res["checkpoint_bytes"] = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
        if merge_check:
            merge(model)
            merged = evaluate(model)
            unmerge(model)
            diff = [i for i, (a, b) in enumerate(zip(final["answers"], merged["answers"])) if a != b]
            res["merge_check"] = {"exact_match_merged": merged["exact_match"], "n_differ": len(diff),
                                  "differ": [{"question": test_ex[i]["messages"][-1]["content"],
                                              "unmerged": final["answers"][i], "merged": merged["answers"][i]}
                                             for i in diff[:10]]}
    else:
        res["adapter_bytes"] = None
        res["checkpoint_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "results.json").write_text(json.dumps(res, indent=1))
        plot_run(res, Path(out) / "plot.png")
    return res


def params_dtype(model) -> str:
    return str(next(model.parameters()).dtype)


def plot_run(results, path=None, label=None, axes=None):
    """Loss (left) and held-out exact match (right) against step; saved to `path` at 150 dpi."""
    import matplotlib
    if path is not None and axes is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    runs = results if isinstance(results, list) else [results]
    fig = None
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in runs:
        name = label or f"{r['method']} lr={r['lr']:g}"
        axes[0].plot([h["step"] for h in r["history"]], [h["loss"] for h in r["history"]], label=name, lw=1)
        axes[1].plot([e["step"] for e in r["evals"]], [100 * e["exact_match"] for e in r["evals"]], "o-", label=name)
    axes[0].set(xlabel="step", ylabel="loss (answer tokens)", yscale="log", title="training loss")
    axes[1].set(xlabel="step", ylabel="exact match (%)", ylim=(-2, 102), title="held-out exact match")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if fig is not None:
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=150)
            plt.close(fig)
    return axes


def summary(res: dict) -> str:
    """The lines `finetune` prints."""
    lines = [f"method: {res['method']}  lr={res['lr']:g}  steps={res['steps']}  batch={res['batch_size']}  "
             f"device={res['device']} x{res['world_size']}",
             f"trainable parameters: {res['trainable_params']:,} of {res['total_params']:,} "
             f"({100 * res['trainable_params'] / res['total_params']:.2f}%)",
             f"exact match: before {fmt_pct(res.get('exact_match_before'))} -> after {fmt_pct(res['exact_match_after'])}"
             f"  ({res['n_test']} held-out sums, {res['digits'][0]}-{res['digits'][1]} digits)",
             f"train time: {res['train_seconds']:.1f} s   tokens/s: {res['tokens_per_s']:,.0f}   "
             f"peak memory: {res['peak_mem_gib']:.2f} GiB"]
    if res.get("step_mode", "eager") != "eager":
        lines.append(f"steps: {res['step_mode']}" + (f" ({res['graph_error']})" if res.get("graph_error") else ""))
    if res.get("adapter_bytes") is not None:
        lines.append(f"adapter on disk: {res['adapter_bytes'] / 2**20:.2f} MiB")
    else:
        lines.append(f"checkpoint would be: {res['checkpoint_bytes'] / 2**20:.1f} MiB (all weights)")
    if "merge_check" in res:
        mc = res["merge_check"]
        lines.append(f"merged model: exact match {fmt_pct(mc['exact_match_merged'])}, "
                     f"{mc['n_differ']} of {res['n_test']} answers differ from the unmerged model")
    return "\n".join(lines)


def fmt_pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


# ----------------------------------------------------------------------------- command line


def add_arguments(p) -> None:
    p.add_argument("--method", choices=["lora", "full"], default="lora")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank r")
    p.add_argument("--alpha", type=float, default=32, help="LoRA alpha (scaling = alpha / r)")
    p.add_argument("--targets", default="all-linear", help="'all-linear', a regex, or comma-separated suffixes")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: per method and device)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="global batch size (all ranks together)")
    p.add_argument("--digits", default=None, help="operand digits 'lo,hi', e.g. 2,3")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "linear", "constant"])
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--out", default="runs/finetune", help="folder for results.json, plot.png, adapter/")
    p.add_argument("--checkpoint-every", type=int, default=0, help="save OUT/checkpoint every N steps (0: never)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--cuda-graph", choices=["auto", "on", "off"], default="auto",
                   help="replay training steps from a CUDA graph (auto: on for one CUDA process)")


def setup_distributed(device: str) -> str:
    """Under torchrun: init the process group (NCCL on GPUs, gloo on CPU); returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    import torch.distributed as dist
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return f"cuda:{local}" if use_cuda else "cpu"


def main(args) -> int:
    from .models import default_device, load_model

    device = setup_distributed(args.device)
    device = default_device() if device == "auto" else device
    if device == "cpu":
        torch.set_num_threads(cpu_threads())
    # LoRA: frozen W in bf16 on a GPU (A, B stay fp32). Full FT: fp32 master weights + bf16 autocast.
    dtype = torch.float32 if (args.method == "full" or device == "cpu") else torch.bfloat16
    t0 = time.perf_counter()
    model, tok = load_model(args.model, device=device, dtype=dtype)
    load_s = time.perf_counter() - t0
    digits = tuple(int(d) for d in args.digits.split(",")) if args.digits else None
    if digits is not None and len(digits) == 1:
        digits = digits * 2
    res = finetune(model, tok, method=args.method, rank=args.rank, alpha=args.alpha,
                   targets=args.targets if args.targets == "all-linear" or "," not in args.targets
                   else args.targets.split(","),
                   lr=args.lr, steps=args.steps, batch_size=args.batch_size, digits=digits,
                   n_train=args.n_train, n_test=args.n_test, warmup_steps=args.warmup,
                   eval_every=args.eval_every, schedule=args.schedule, seed=args.seed, out=args.out,
                   checkpoint_every=args.checkpoint_every, resume=args.resume, progress=not args.no_progress,
                   cuda_graph={"auto": None, "on": True, "off": False}[getattr(args, "cuda_graph", "auto")])
    if dist_info()[0] == 0:
        res["load_seconds"] = load_s
        print(summary(res))
        print(f"wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'plot.png'}")
    if dist_info()[1] > 1:
        torch.distributed.destroy_process_group()
    return 0
