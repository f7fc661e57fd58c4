"""The one training loop: `Trainer(model, TrainConfig).fit(batches)` for LoRA and full fine-tuning.

    cfg = TrainConfig(steps=300, batch_size=64, lr=2e-3, warmup_steps=30, eval_every=100)
    out = Trainer(model, cfg).fit(batches(enc, 64, 0, pad), evaluate=lambda m: {"acc": ...})
    out["history"]   # [{"step", "loss", "lr"}] every step
    out["evals"]     # [{"step", "train_seconds", ...}] at step 0 (if eval_every), every eval_every, at the end
    train(model, batches, steps=300, lr=1e-3)   # the same, with the settings as keywords

What trains is whatever has requires_grad (apply_lora freezes W and leaves A, B trainable).
AdamW, linear warm-up then cosine/linear decay to 0 (or constant), gradient clipping. The loss
is the mean cross-entropy over answer tokens only (AnswerLoss). One policy, `plan_step`, makes
the device/dtype decisions: autocast or not, loss scaling for fp16, and the step strategy from
`choose_strategy` (eager, torch.compile, or a CUDA graph that replays the very same step
function: only capture/replay differs, so CPU tests cover the rest). One time budget (Budget),
one checkpoint mechanism (checkpoint.py), used by every caller. Under torchrun the same loop
runs with DistributedDataParallel (distributed.py); rank 0 alone logs, evaluates and saves.
A non-finite loss stops training (NonFiniteLoss); Ctrl-C writes a checkpoint first (Interrupted).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .budget import Budget
from .checkpoint import check_resume_config, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .distributed import counting_allreduce_hook, dist_info
from .tasks import IGNORE


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or Inf: training stopped before anything was saved."""


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) during fit; a checkpoint was written first if a folder was given."""

    def __init__(self, step: int, checkpoint_dir):
        super().__init__(f"interrupted at step {step}")
        self.step, self.checkpoint_dir = step, checkpoint_dir


# ----------------------------------------------------------------------------- the loss


class AnswerLoss(nn.Module):
    """Wraps a causal LM: forward(input_ids, attention_mask, labels) -> (sum of token losses, n).

    Logits are computed only at positions whose next token has a label (the answer), which
    skips the big output head everywhere else. Summing (not averaging) lets the caller divide
    by the token count of the whole global batch, so N data-parallel ranks match one process.
    static=True (CUDA graphs): fixed shapes, the head on every position, unlabelled ones ignored.
    """

    def __init__(self, model: nn.Module, chunked: bool = False):
        super().__init__()
        self.model, self.chunked = model, chunked     # chunked: lowmem.linear_cross_entropy (--memory low)

    def forward(self, input_ids, attention_mask, labels, static: bool = False):
        body, head = self.model.base_model, self.model.get_output_embeddings()
        h = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, d)
        targets = labels[:, 1:]                        # position t predicts token t+1
        keep = targets != IGNORE                       # (B, T-1)
        if self.chunked:                               # no (N, vocab) logits held at once
            from ..lowmem import check_head, linear_cross_entropy
            head = check_head(self.model)
            return linear_cross_entropy(h[:, :-1][keep], head.weight, targets[keep], reduction="sum"), keep.sum()
        if static:
            logits = head(h[:, :-1])                   # (B, T-1, vocab)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE,
                                   reduction="sum")
            return loss, keep.sum()
        logits = head(h[:, :-1][keep])                 # (N, vocab), N = answer tokens
        loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
        return loss, keep.sum()


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


# ----------------------------------------------------------------------------- the one policy


def resolve_precision(precision: str, device) -> str:
    """"auto" -> "bf16" on a GPU that supports it, "fp16" on an older GPU, "fp32" on CPU."""
    device = torch.device(device)
    if precision != "auto":
        if precision in ("bf16", "fp16") and device.type == "cpu":
            raise ValueError(f"--precision {precision} needs a GPU; use --precision fp32 (or auto) on CPU")
        return precision
    if device.type != "cuda":
        return "fp32"
    # including_emulation=False: a T4 (sm75) "supports" bf16 only by emulation, slowly -> fp16
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def model_dtype(precision: str, method: str) -> torch.dtype:
    """The dtype to load the model in: LoRA keeps W in the training precision (A, B stay fp32);
    full fine-tuning keeps fp32 master weights and runs the forward under autocast."""
    if method == "full" or precision == "fp32":
        return torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float16


def choose_strategy(device, dtype: torch.dtype, method: str, requested: str = "auto", world_size: int = 1,
                    scaler: bool = False) -> str:
    """The step strategy: "eager", "compiled" (torch.compile) or "cuda_graph". THE one policy.

    auto: a CUDA graph for one CUDA process whose forward needs no autocast (LoRA on a bf16
    base: verified on an H200), else eager. dtype: the dtype of the weights the forward
    multiplies by (float32 on a GPU means autocast). cuda_graph with autocast (full fine-tuning with
    float32 masters) runs when asked for: its NaN after a LoRA run in the same process came from the
    fast path's strided grad_x, fixed (figures/graph_nan/bisect6.py, GPU_RUNS.md); auto keeps such runs
    eager until more than that reproduction has run graphed. scaler (fp16 loss scaling, which checks
    for inf on the host every step) is never graphed.
    """
    device = torch.device(device)
    one_gpu = device.type == "cuda" and world_size == 1
    if requested == "auto":
        return "cuda_graph" if one_gpu and dtype == torch.bfloat16 and not scaler else "eager"
    if requested == "cuda_graph" and scaler:
        raise ValueError("strategy cuda_graph cannot run fp16 loss scaling (the scaler checks for inf on the host "
                         "every step); use --precision bf16, or --strategy eager")
    if requested == "cuda_graph" and not (one_gpu and dtype in (torch.bfloat16, torch.float32)):
        raise ValueError(f"strategy cuda_graph needs one process on a CUDA device with bf16 weights, or float32 "
                         f"weights under autocast (device={device.type}, world size={world_size}, dtype={dtype}, "
                         f"method={method}); use --strategy eager")
    if requested not in ("eager", "compiled", "cuda_graph"):
        raise ValueError(f"strategy must be auto, eager, compiled or cuda_graph; got {requested!r}")
    return requested


def needs_autocast(model: nn.Module) -> bool:
    """True if a weight the forward multiplies by is float32 (LoRA's fp32 A, B don't count:
    LoRALinear casts them to the activations' dtype)."""
    lora_masters = {id(p) for n, p in model.named_parameters() if ".lora_" in n}
    return any(p.dtype == torch.float32 for p in model.parameters() if id(p) not in lora_masters and p.dim() > 1)


def forward_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the weights the forward multiplies by (float32 if any of them is)."""
    if needs_autocast(model):
        return torch.float32
    lora = {id(p) for n, p in model.named_parameters() if ".lora_" in n}
    return next((p.dtype for p in model.parameters() if id(p) not in lora and p.dim() > 1), torch.float32)


@dataclass(frozen=True)
class StepPlan:
    """What plan_step decided: strategy, autocast dtype (None: off), loss scaling."""
    strategy: str
    autocast: torch.dtype | None
    scaler: bool


def plan_step(model: nn.Module, cfg: TrainConfig, device, world_size: int = 1, method: str = "lora") -> StepPlan:
    """The one place that decides autocast, fp16 loss scaling and the step strategy."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    wants = cuda and needs_autocast(model) if cfg.autocast is None else bool(cfg.autocast)
    precision = resolve_precision(cfg.precision, device) if cuda else "fp32"
    amp_dtype = (torch.float16 if precision == "fp16" else torch.bfloat16) if wants else None
    scaler = cuda and precision == "fp16"
    dtype = torch.float32 if wants else forward_dtype(model)
    requested = cfg.strategy
    if getattr(cfg, "memory", "normal") == "low" and requested == "auto":
        requested = "eager"                        # the low-memory mode recomputes layers: eager steps
    return StepPlan(choose_strategy(device, dtype, method, requested, world_size, scaler), amp_dtype, scaler)


# ----------------------------------------------------------------------------- small helpers


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


def fixed_shape(batch: dict, pad_to: int) -> dict:
    """Right-padded (B, T) batch -> (B, pad_to) without attention_mask (causal + right padding)."""
    from .graphs import right_padded
    if not right_padded(batch["attention_mask"]):
        raise ValueError("cuda_graph needs right-padded batches (tasks.batches pads on the right)")
    T = batch["input_ids"].shape[1]
    if T > pad_to:
        raise ValueError(f"a batch has {T} tokens, more than pad_to={pad_to}; pass a larger pad_to")
    return {"input_ids": F.pad(batch["input_ids"], (0, pad_to - T), value=0),
            "labels": F.pad(batch["labels"], (0, pad_to - T), value=IGNORE)}


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """Trains `model` (in place) with `cfg`; `fit` runs the loop and returns the results dict.

    optimizer: default AdamW(trainable, cfg.lr, cfg.weight_decay); the schedule scales each
    group's own lr (so LoRA+ groups keep their ratio). loss_fn: a module like AnswerLoss(model).
    checkpoint_dir: where checkpoints go (every cfg.checkpoint_every steps, on stop/budget/Ctrl-C,
    and at the end of a run that checkpoints); record: the job's config dict, saved with each
    checkpoint and compared on resume (check_resume_config).
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, optimizer=None, loss_fn=None,
                 checkpoint_dir=None, progress: bool = True, record: dict | None = None):
        from .graphs import make_adamw, get_lr
        self.model, self.cfg, self.progress, self.record = model, cfg, progress, record
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("train: the model has no trainable parameters (requires_grad=False everywhere)")
        self.device = self.params[0].device
        if cfg.kernels == "liger":
            from .. import kernels
            kernels.fuse(model)                    # checks first (GPU, Llama, liger_kernel): a clear error, nothing changed
        self.rank, self.world = dist_info()
        method = "full" if all(p.requires_grad for p in model.parameters()) else "lora"
        self.plan = plan_step(model, cfg, self.device, self.world, method)
        graphs = self.plan.strategy == "cuda_graph"
        self.optimizer = optimizer or make_adamw(self.params, cfg.lr, cfg.weight_decay, graphs=graphs)
        self.base_lrs = [get_lr(g) for g in self.optimizer.param_groups]
        self.scaler = torch.amp.GradScaler("cuda") if self.plan.scaler else None
        self.checkpoint_dir = checkpoint_dir
        if cfg.memory == "low":
            from ..lowmem import enable
            enable(model)                          # layer checkpointing (undo: lora_mini.lowmem.disable)
        self.loss_module, self.comm = self._loss_module(loss_fn or AnswerLoss(model, chunked=cfg.memory == "low"))
        self.state = {"step": 0, "history": [], "evals": [], "tokens": 0, "train_seconds": 0.0}
        self.bar = self.graphed = None

    def _loss_module(self, loss_fn):
        comm = {"bytes": 0}
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            dev = self.device
            loss_fn = DDP(loss_fn, device_ids=[dev.index] if dev.type == "cuda" else None)
            loss_fn.register_comm_hook(comm, counting_allreduce_hook)
        if self.plan.strategy == "compiled":
            loss_fn = torch.compile(loss_fn)
        return loss_fn, comm

    # -- one step: the same function for eager, compiled and (captured) CUDA-graph steps
    def step_fn(self, batch: dict) -> torch.Tensor:
        """Forward, backward, clip, AdamW; returns the mean loss (detached). No CPU syncs."""
        plan, world = self.plan, self.world
        with torch.autocast(self.device.type, dtype=plan.autocast or torch.bfloat16, enabled=plan.autocast is not None):
            loss_sum, n_labels = self.loss_module(batch["input_ids"], batch.get("attention_mask"), batch["labels"],
                                                  static=plan.strategy == "cuda_graph")
        if world > 1:   # mean over the global batch's answer tokens, as one process would compute
            n_labels = n_labels.float()
            torch.distributed.all_reduce(n_labels)
            loss, mean = loss_sum * world / n_labels, loss_sum.detach() / n_labels   # DDP averages over ranks
            torch.distributed.all_reduce(mean)
        else:
            loss = loss_sum / n_labels
            mean = loss.detach()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return mean

    # -- checkpoints
    def save(self) -> None:
        if self.checkpoint_dir is not None and self.rank == 0:
            tensors = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
            save_checkpoint(self.checkpoint_dir, tensors, self.state, self.optimizer, self.record)
        if self.world > 1:
            torch.distributed.barrier()

    def restore(self) -> None:
        """Load checkpoint_dir into the model, optimizer and loop state (refusing another run's)."""
        if self.checkpoint_dir is None:
            raise ValueError("resume needs a checkpoint folder (checkpoint_dir)")
        ck = load_checkpoint(self.checkpoint_dir)
        changes = check_resume_config(ck.config, self.record)
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        if set(ck.tensors) != set(params):
            diff = sorted(set(ck.tensors) ^ set(params))[:3]
            raise ValueError(f"checkpoint {self.checkpoint_dir} does not match the model's trainable parameters "
                             f"(e.g. {diff}); resume with the same method, rank and targets")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(ck.tensors[n])
        if ck.optimizer is not None:
            lrs = [g["lr"] for g in self.optimizer.param_groups]   # keep tensor lrs (captured graphs)
            self.optimizer.load_state_dict(ck.optimizer)
            for g, lr in zip(self.optimizer.param_groups, lrs):
                if isinstance(lr, torch.Tensor):
                    g["lr"] = lr
        self.state = ck.state
        if changes:
            self.state.setdefault("changes", []).append({"at_step": ck.state["step"], "changes": changes})
        if ck.recovered:
            self.state.setdefault("recovered", []).append(ck.recovered)

    def evaluate(self, evaluate, step: int) -> None:
        if evaluate is not None and self.rank == 0:
            was = self.model.training
            self.model.eval()
            self.state["evals"].append({"step": step, "train_seconds": self.state["train_seconds"],
                                        **evaluate(self.model)})
            self.model.train(was)
        if self.world > 1:
            torch.distributed.barrier()

    def _flush(self, losses, tokens, upto: int) -> None:
        """Copy the per-step losses to the history (one host sync), count tokens, stop on NaN."""
        logged = len(self.state["history"])
        values = losses[logged:upto].tolist()
        for i, v in enumerate(values):
            s = logged + i
            if not math.isfinite(v) and self.cfg.on_nonfinite == "stop":
                raise NonFiniteLoss(f"the loss became {v} at step {s + 1}: nothing was saved; lower --lr "
                                    f"(now {self.base_lrs[0]:g}) or use --precision fp32")
            self.state["history"].append({"step": s + 1, "loss": v, "lr": self.base_lrs[0] * lr_factor(
                s, self.cfg.steps, self.cfg.warmup_steps, self.cfg.schedule)})
        if self.bar is not None:
            self.bar.update(len(values))
            if values:
                self.bar.set_postfix(loss=f"{values[-1]:.3f}")
        if self.world > 1:                              # every rank flushes at the same steps
            torch.distributed.all_reduce(tokens)
        self.state["tokens"] += int(tokens.item())
        tokens.zero_()

    def fit(self, batches, evaluate=None, resume: bool = False, stop_at: int | None = None,
            pad_to: int | None = None) -> dict:
        """Train to cfg.steps (or stop_at, or the time budget); returns the results dict.

        batches: iterator of {"input_ids", "attention_mask", "labels"} (B, T), this rank's slice.
        evaluate(model) -> dict, run on rank 0 at step 0 (if eval_every), every eval_every, at the end.
        resume: continue from checkpoint_dir (the iterator is fast-forwarded: same data order).
        stop_at: stop after this step as if interrupted (checkpoint first); the schedule still
        follows cfg.steps. pad_to: the CUDA-graph batch length (default: the first batch's).
        """
        from tqdm.auto import tqdm
        lr_factor(0, self.cfg.steps, self.cfg.warmup_steps, self.cfg.schedule)
        if resume:
            self.restore()
            for _ in range(self.state["step"]):        # same data order as an uninterrupted run
                next(batches)
        start = self.state["step"]
        if start == 0:                              # every run evaluates at its start (and end)
            self.evaluate(evaluate, 0)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.bar = tqdm(total=self.cfg.steps, initial=start, desc="train",
                        disable=not (self.progress and self.rank == 0))
        end = self.cfg.steps if stop_at is None else min(stop_at, self.cfg.steps)
        try:
            end, why = self._loop(batches, evaluate, start, end, pad_to)
        finally:
            self.bar.close()
        return self._finish(evaluate, start, end, why)

    def _loop(self, batches, evaluate, start: int, end: int, pad_to):
        """The steps start..end; returns (last step, why it stopped: None, "stop_at", "budget")."""
        from .graphs import GraphedStep, set_lr
        cfg, dev = self.cfg, self.device
        graphed = GraphedStep(self.step_fn, self.optimizer, warmup=3) if self.plan.strategy == "cuda_graph" else None
        self.graphed = graphed
        losses = torch.zeros(cfg.steps, device=dev)               # per-step loss, synced every log_every
        tokens = torch.zeros((), dtype=torch.long, device=dev)    # non-pad tokens since the last flush
        budget = Budget(cfg.budget_s)
        t0, step = time.perf_counter(), start
        self.model.train()
        try:
            for step in range(start, end):
                for g, base in zip(self.optimizer.param_groups, self.base_lrs):
                    set_lr(g, base * lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.schedule))
                cpu_batch = next(batches)
                tokens += cpu_batch["attention_mask"].sum().to(dev, non_blocking=True).long()
                if graphed is not None:
                    pad_to = pad_to or cpu_batch["input_ids"].shape[1]
                    losses[step] = graphed({k: v.to(dev, non_blocking=True)
                                            for k, v in fixed_shape(cpu_batch, pad_to).items()})
                else:
                    losses[step] = self.step_fn({k: v.to(dev, non_blocking=True) for k, v in cpu_batch.items()})
                    self.optimizer.zero_grad(set_to_none=True)
                self.state["step"] = done = step + 1
                if done % cfg.log_every == 0 or done == end:
                    self._flush(losses, tokens, done)
                pause = (cfg.eval_every and done % cfg.eval_every == 0) or \
                    (cfg.checkpoint_every and done % cfg.checkpoint_every == 0)
                if pause and done != cfg.steps:
                    t0 = self._pause(evaluate, losses, tokens, t0)
                if budget.expired() and done < end:
                    self._flush(losses, tokens, done)
                    end = done
                    return self._stop(t0, done, "budget")
        except KeyboardInterrupt:
            self._flush(losses, tokens, self.state["step"])
            self._stop(t0, self.state["step"], "interrupted")
            self.save()
            raise Interrupted(self.state["step"], self.checkpoint_dir) from None
        return self._stop(t0, end, "stop_at" if end < cfg.steps else None)

    def _pause(self, evaluate, losses, tokens, t0) -> float:
        """Evaluate and/or checkpoint mid-run (outside the timed steps); returns the new t0."""
        cfg, done = self.cfg, self.state["step"]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.state["train_seconds"] += time.perf_counter() - t0
        self._flush(losses, tokens, done)
        if cfg.eval_every and done % cfg.eval_every == 0:
            self.evaluate(evaluate, done)
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
            self.save()
        return time.perf_counter()

    def _stop(self, t0: float, end: int, why):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.state["train_seconds"] += time.perf_counter() - t0
        return end, why

    def _finish(self, evaluate, start: int, end: int, why) -> dict:
        cfg, st = self.cfg, self.state
        if evaluate is not None and end == cfg.steps and (not st["evals"] or st["evals"][-1]["step"] != cfg.steps):
            self.evaluate(evaluate, cfg.steps)
        if why is not None or cfg.checkpoint_every or start > 0:
            self.save()
        self.model.eval()
        graphed = self.graphed
        if graphed is not None:
            graphed.release()       # the graph's memory pool; grads point into it, so drop them too
        secs = st["train_seconds"]
        return {"history": st["history"], "evals": st["evals"], "steps": st["step"], "stopped": why,
                "train_seconds": secs, "tokens": st["tokens"],
                "tokens_per_s": st["tokens"] / secs if secs > 0 else float("nan"),
                "peak_mem_gib": peak_memory_gib(self.device), "world_size": self.world,
                "comm_bytes_per_step": self.comm["bytes"] / max(1, end - start),
                "amp": self.plan.autocast is not None, "strategy": self.plan.strategy,
                "step_mode": graphed.mode if graphed is not None else self.plan.strategy,
                "graph_error": graphed.error if graphed is not None else None,
                "changes": st.get("changes", [])}


_TRAIN_SETTINGS = {"steps", "lr", "batch_size", "warmup_steps", "schedule", "weight_decay", "grad_clip",
                   "seed", "log_every", "eval_every", "budget_s", "strategy", "precision", "autocast",
                   "checkpoint_every", "on_nonfinite", "memory", "kernels"}


def train(model: nn.Module, batches, *, optimizer=None, eval_fn=None, checkpoint_dir=None,
          resume: bool = False, stop_at: int | None = None, **settings) -> dict:
    """Trainer(model, TrainConfig(**settings)).fit(batches, eval_fn, ...) in one call.

    settings: any TrainConfig field (steps, lr, warmup_steps, schedule, eval_every, ...), plus
    progress=, pad_to=, amp= (= autocast) and cuda_graph=True/False (= strategy).
    """
    progress, pad_to = settings.pop("progress", True), settings.pop("pad_to", None)
    if "amp" in settings:
        settings["autocast"] = settings.pop("amp")
    if "cuda_graph" in settings:
        graph = settings.pop("cuda_graph")
        settings.setdefault("strategy", "auto" if graph is None else "cuda_graph" if graph else "eager")
    unknown = sorted(set(settings) - _TRAIN_SETTINGS)
    if unknown:
        raise TypeError(f"train() got an unknown setting {unknown[0]!r}; known: {', '.join(sorted(_TRAIN_SETTINGS))}")
    settings.setdefault("strategy", "eager")        # the function form: eager unless asked
    settings.setdefault("batch_size", 1)            # only recorded: the iterator decides the batch
    cfg = TrainConfig(**settings)
    trainer = Trainer(model, cfg, optimizer=optimizer, checkpoint_dir=checkpoint_dir, progress=progress)
    return trainer.fit(batches, eval_fn, resume=resume, stop_at=stop_at, pad_to=pad_to)
