"""The `finetune` job: config -> model -> adapters -> Trainer -> eval -> adapter files + results JSON.

    cfg = FinetuneConfig.preset_config("cpu-quick", out="runs/x")
    res = run_finetune(model, tok, cfg)              # model changed in place; res is JSON-ready
    res = finetune(model, tok, method="lora", rank=16, steps=48, out="runs/x")   # keyword form

On the addition task (TaskConfig) or your own JSONL chats (DataSettings -> lab.data). With
out=DIR (rank 0): DIR/results.json (with the whole config), DIR/adapter/ (LoRA, PEFT format by
default) or DIR/model.safetensors (full fine-tuning), DIR/plot.png, DIR/checkpoint/ (resumable;
written every checkpoint_every steps and on Ctrl-C). The merge check runs on a copy of the model,
so the model you keep is bit-for-bit the one you trained.
"""
from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from .checkpoint import atomic_write_text, swap_folder
from .config import FULL_FT_LR, ConfigError, FinetuneConfig, LoraConfig, TaskConfig, default_preset
from .distributed import dist_info
from .trainer import AnswerLoss, Trainer

SYSTEM = ""   # an empty system message: a short prompt (the template's default adds 15 tokens)


# ----------------------------------------------------------------------------- data


def make_data(tokenizer, task: TaskConfig, seed: int = 0):
    """(AdditionTask, train examples, test examples, encoded train) for the addition task."""
    from .tasks import AdditionTask, encode_examples
    t = AdditionTask(digits=task.digits, seed=seed, system=SYSTEM)
    train_ex, test_ex = t.make_splits(task.n_train, task.n_test)
    return t, train_ex, test_ex, encode_examples(tokenizer, train_ex)


def val_loss(model, rows: list[dict], pad_id: int, batch_size: int = 16) -> float:
    """Mean answer-token loss of `rows` (encoded examples), no gradients."""
    from .tasks import collate
    loss_fn, device = AnswerLoss(model), next(model.parameters()).device
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            b = {k: v.to(device) for k, v in collate(rows[i:i + batch_size], pad_id).items()}
            s, k = loss_fn(b["input_ids"], b["attention_mask"], b["labels"])
            total, n = total + float(s), n + int(k)
    return total / max(1, n)


# ----------------------------------------------------------------------------- checks


def check_targets(model, lora: LoraConfig) -> None:
    """Every name in a target list must match a Linear/Conv1D layer; a miss names the closest layer names."""
    import difflib
    from ..layers import LINEAR_TYPES
    if lora.method != "lora" or not isinstance(lora.targets, list):
        return
    linear = [n for n, m in model.named_modules() if isinstance(m, LINEAR_TYPES)]
    kinds = sorted({n.split(".")[-1] for n in linear})
    for t in lora.targets:
        if not any(n == t or n.endswith("." + t) for n in linear):
            close = difflib.get_close_matches(t, kinds, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"--targets {t!r} matches no linear layer of {type(model).__name__}: {hint}"
                              f"its linear layers are {', '.join(kinds)} (or use all-linear)")


def check_rank(model, lora: LoraConfig) -> None:
    """Refuse a rank larger than a targeted layer's smaller side (more parameters than W itself)."""
    from ..inject import find_targets
    if lora.method != "lora":
        return
    names = find_targets(model, lora.targets)
    modules = dict(model.named_modules())
    for name in names:
        w = modules[name].weight
        if lora.rank > min(w.shape):
            raise ConfigError(f"--rank {lora.rank} is larger than layer {name}'s width {min(w.shape)} "
                              f"(W is {tuple(w.shape)}): B·A would have more parameters than W; "
                              f"use --rank <= {min(w.shape)}")


def memory_check(model, cfg: FinetuneConfig, seq: int) -> dict:
    """The memory estimate (lora_mini.memory) beside the device's free memory; refuses if it cannot fit."""
    from ..memory import ModelShape, training_memory
    from .system import free_memory_bytes
    device = next(model.parameters()).device
    try:
        shape = ModelShape.from_config(model.config)
        dtype = "fp32" if next(model.parameters()).dtype == torch.float32 else "bf16"
        est = training_memory(shape, cfg.lora.method, cfg.lora.rank, cfg.lora.targets,
                              batch=cfg.train.batch_size, seq=seq, dtype=dtype)
        if cfg.train.memory == "low":                 # checkpointed layers + chunked loss: far fewer activations
            low = _low_activation_bytes(shape, cfg.train.batch_size, seq, dtype)
            est = {**est, "activations": low, "total": est["total"] - est["activations"] + low}
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        return {"estimate_bytes": None, "note": f"no estimate: {e}"}
    loaded = sum(p.numel() * p.element_size() for p in model.parameters())
    need = max(0, est["total"] - loaded)          # the weights are already in memory
    free = free_memory_bytes(device)
    out = {"estimate_bytes": est["total"], "still_needed_bytes": need, "free_bytes": free}
    if free is not None and need > free:
        raise ConfigError(f"training needs about {need / 2**30:.1f} GiB more on {device} but only "
                          f"{free / 2**30:.1f} GiB is free: lower --batch-size, --rank or --max-length, "
                          "use --method lora" + (", or --memory low" if cfg.train.memory != "low" else ""))
    return out


def _low_activation_bytes(shape, batch: int, seq: int, dtype: str) -> int:
    """Activation bytes of `--memory low` (lora_mini.lowmem): layer inputs kept, one layer recomputed at a time."""
    from ..lowmem import activation_bytes
    return activation_bytes(shape.hidden, shape.layers, shape.intermediate, shape.vocab, batch, seq,
                            elem=4 if dtype == "fp32" else 2)["total"]


# ----------------------------------------------------------------------------- the job


def _adapt(model, lora: LoraConfig) -> None:
    from ..inject import apply_lora
    if lora.method == "lora":
        apply_lora(model, lora.targets, r=lora.rank, alpha=lora.alpha, dropout=lora.dropout)
    else:
        for p in model.parameters():
            p.requires_grad_(True)


def _task_job(model, tokenizer, cfg: FinetuneConfig):
    """(encoded train rows, evaluate(model) -> dict, final-eval function, extra results) for the addition task."""
    from .tasks import exact_match
    task, train_ex, test_ex, enc = make_data(tokenizer, replace(cfg.task, n_train=cfg.task.n_train + cfg.task.n_val),
                                             cfg.train.seed)
    val_ex = []
    if cfg.task.n_val:
        train_ex, val_ex, enc = train_ex[:-cfg.task.n_val], train_ex[-cfg.task.n_val:], enc[:-cfg.task.n_val]
    max_new = task.digits[1] + 2              # the longest sum has digits+1 digits, then <|im_end|>
    last = {}

    def evaluate(m):
        last["result"] = exact_match(m, tokenizer, test_ex, cfg.eval_batch_size, max_new)
        return {"exact_match": last["result"]["exact_match"]}

    def final(m, res):
        done = last.get("result") if res["evals"] and res["evals"][-1]["step"] == cfg.train.steps else None
        result = done or exact_match(m, tokenizer, test_ex, cfg.eval_batch_size, max_new)
        first = res["evals"][0] if res["evals"] and res["evals"][0]["step"] == 0 else None
        out = {"exact_match_before": first["exact_match"] if first else None,
               "exact_match_after": result["exact_match"], "digits": list(task.digits),
               "samples": [{"question": ex["messages"][-1]["content"], "answer": ex["answer"], "model": a}
                           for ex, a in zip(test_ex[:8], result["answers"][:8])]}
        if val_ex:
            out["n_val"] = len(val_ex)
            out["exact_match_val"] = exact_match(m, tokenizer, val_ex, cfg.eval_batch_size, max_new)["exact_match"]
        return out, result

    def check(m):
        r = exact_match(m, tokenizer, test_ex, cfg.eval_batch_size, max_new)
        r["questions"] = [ex["messages"][-1]["content"] for ex in test_ex]
        return r

    return enc, evaluate, final, check


def _data_job(model, tokenizer, cfg: FinetuneConfig):
    """The same four things for your own data (lab.data: load_data, evaluate_replies)."""
    from .data import evaluate_replies, load_data
    split = load_data(data_config(cfg), tokenizer)
    pad = tokenizer.pad_token_id
    before = {}

    def evaluate(m):
        out = {"val_loss": val_loss(m, split.val, pad)} if split.val else {}
        if not before:
            before.update(evaluate_replies(m, tokenizer, split))
        return out

    def final(m, res):
        after = evaluate_replies(m, tokenizer, split)
        return {"data": dict(split.stats), "replies_before": before or None, "replies_after": after,
                "exact_match_before": before.get("exact_match"), "exact_match_after": after.get("exact_match")}, \
            _replies(after, split)

    def check(m):
        return _replies(evaluate_replies(m, tokenizer, split), split)

    return split.train, evaluate, final, check


def _replies(r: dict, split) -> dict:
    """evaluate_replies' dict -> the {"exact_match", "answers", "questions"} the merge check compares."""
    return {"exact_match": r.get("exact_match"), "answers": list(r.get("replies", [])),
            "questions": [p["messages"][-1]["content"] for p in split.val_prompts]}


def data_config(cfg: FinetuneConfig):
    """FinetuneConfig.data -> lab.data.DataConfig (the data helper's dataclass)."""
    from .data import DataConfig
    d = cfg.data
    return DataConfig(path=d.path, val_path=d.val_path, val_fraction=d.val_fraction,
                      train_on_all=d.train_on_all, max_length=d.max_length, seed=cfg.train.seed)


def merge_check(model, check, unmerged: dict) -> dict:
    """Merge a COPY of the model and compare its answers: the trained model stays bit-identical.

    check(model) -> {"exact_match", "answers"[, "questions"]}; unmerged: the same for the model.
    """
    from ..merge import merge
    merged_model = merge(copy.deepcopy(model))
    merged = check(merged_model)
    del merged_model
    a, b = unmerged["answers"], merged["answers"]
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    questions = merged.get("questions") or [i for i in range(len(a))]
    return {"exact_match_unmerged": unmerged.get("exact_match"), "exact_match_merged": merged.get("exact_match"),
            "n_differ": len(diff),
            "differ": [{"question": questions[i], "unmerged": a[i], "merged": b[i]} for i in diff[:10]]}


def run_finetune(model, tokenizer, cfg: FinetuneConfig, resume: bool = False, progress: bool = True) -> dict:
    """Fine-tune `model` (in place) as `cfg` says; returns the results dict (see the module docstring)."""
    from ..inject import count_parameters
    rank_, world = dist_info()
    device = next(model.parameters()).device
    torch.manual_seed(cfg.train.seed)
    job = _data_job if cfg.data is not None else _task_job
    enc, evaluate, final, check = job(model, tokenizer, cfg)
    check_targets(model, cfg.lora)
    check_rank(model, cfg.lora)
    _adapt(model, cfg.lora)
    trainable, total = count_parameters(model)
    memory = memory_check(model, cfg, max(len(e["input_ids"]) for e in enc))
    if progress and rank_ == 0 and memory.get("estimate_bytes"):
        free = memory["free_bytes"]
        print(f"memory: training needs about {memory['still_needed_bytes'] / 2**30:.2f} GiB more "
              f"(estimate {memory['estimate_bytes'] / 2**30:.2f} GiB in all); free on {device}: "
              + ("unknown" if free is None else f"{free / 2**30:.1f} GiB"), flush=True)
    from .tasks import batches
    it = batches(enc, cfg.train.batch_size, seed=cfg.train.seed, pad_id=tokenizer.pad_token_id,
                 rank=rank_, world_size=world)
    ckpt = Path(cfg.out) / "checkpoint" if cfg.out is not None else None
    trainer = Trainer(model, cfg.train, checkpoint_dir=ckpt, progress=progress, record=cfg.to_dict())
    result = trainer.fit(it, evaluate, resume=resume, pad_to=max(len(e["input_ids"]) for e in enc))
    res = {"config": cfg.to_dict(), "method": cfg.lora.method, "lr": cfg.train.lr, "steps": cfg.train.steps,
           "batch_size": cfg.train.batch_size, "n_train": cfg.task.n_train, "n_test": cfg.task.n_test,
           "seed": cfg.train.seed, "schedule": cfg.train.schedule, "warmup_steps": cfg.train.warmup_steps,
           **_lora_fields(cfg.lora), "trainable_params": trainable, "total_params": total,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "dtype": str(_frozen_dtype(model)), "world_size": world, "memory": memory, **result}
    if rank_ != 0 or result["stopped"] is not None:
        return res
    extra, unmerged = final(model, result)
    res.update(extra)
    if cfg.lora.method == "lora" and cfg.merge_check:
        res["merge_check"] = merge_check(model, check, unmerged)
    res["checkpoint_bytes"] = sum(p.numel() * (4 if cfg.lora.method == "lora" else p.element_size())
                                  for p in model.parameters() if p.requires_grad)
    if cfg.out is not None:
        write_outputs(model, res, cfg)
    return res


def _lora_fields(lora: LoraConfig) -> dict:
    on = lora.method == "lora"
    return {"rank": lora.rank if on else None, "alpha": lora.alpha if on else None,
            "targets": lora.targets if on else None}


def _frozen_dtype(model):
    frozen = [p for p in model.parameters() if not p.requires_grad]
    return (frozen or list(model.parameters()))[0].dtype


def write_outputs(model, res: dict, cfg: FinetuneConfig) -> None:
    """DIR/adapter/ (LoRA) or DIR/model.safetensors (full), then results.json and plot.png."""
    from ..io import adapter_bytes, save_adapter
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.lora.method == "lora":
        tmp, folder = out / "adapter.tmp", out / "adapter"
        shutil.rmtree(tmp, ignore_errors=True)
        save_adapter(model, tmp, format=cfg.adapter_format)
        atomic_write_text(tmp / "lora_mini_run.json", json.dumps({"config": cfg.to_dict()}, indent=1))
        swap_folder(tmp, folder)
        res["adapter_bytes"] = adapter_bytes(folder)
    else:
        from safetensors.torch import save_model
        tmp = out / "model.safetensors.tmp"
        save_model(model, str(tmp), metadata={"format": "pt"})
        tmp.replace(out / "model.safetensors")
        res["adapter_bytes"] = None
        res["model_file"] = str(out / "model.safetensors")
    atomic_write_text(out / "results.json", json.dumps(res, indent=1))
    plot_run(res, out / "plot.png")


def config_from_kwargs(device, **kw) -> FinetuneConfig:
    """The keyword form's settings (method=, rank=, steps=, digits=, ...) -> FinetuneConfig.

    Unset training/task settings come from the device's preset ("gpu" on CUDA, else "cpu-quick").
    """
    name = default_preset(device)
    base = FinetuneConfig.preset_config(name)
    lora_keys, train_keys, task_keys = ("method", "rank", "alpha", "targets", "dropout"), \
        ("lr", "steps", "batch_size", "warmup_steps", "schedule", "eval_every", "seed", "checkpoint_every",
         "weight_decay", "grad_clip", "budget_s", "strategy", "precision"), ("digits", "n_train", "n_test", "n_val")
    pick = lambda keys: {k: kw.pop(k) for k in keys if kw.get(k) is not None}   # noqa: E731
    lora, train, task = pick(lora_keys), pick(train_keys), pick(task_keys)
    if "cuda_graph" in kw:
        g = kw.pop("cuda_graph")
        train.setdefault("strategy", "auto" if g is None else "cuda_graph" if g else "eager")
    if lora.get("method") == "full" and "lr" not in train:
        train["lr"] = FULL_FT_LR[name]
    out = kw.pop("out", None)
    cfg = replace(base, lora=LoraConfig(**lora), train=replace(base.train, **train),
                  task=replace(base.task, **task), out=None if out is None else str(out), **kw)
    return cfg


def finetune(model, tokenizer, cfg: FinetuneConfig | None = None, *, resume: bool = False,
             progress: bool = True, **settings) -> dict:
    """run_finetune with the settings as keywords (method=, rank=, alpha=, targets=, lr=, steps=,
    batch_size=, digits=, n_train=, n_test=, n_val=, warmup_steps=, eval_every=, seed=, out=,
    merge_check=, cuda_graph=, ...); unset ones come from the device's preset."""
    if cfg is None:
        cfg = config_from_kwargs(next(model.parameters()).device.type, **settings)
    elif settings:
        raise TypeError("finetune: pass either cfg or keyword settings, not both")
    return run_finetune(model, tokenizer, cfg, resume=resume, progress=progress)


# ----------------------------------------------------------------------------- reporting


def plot_run(results, path=None, label=None, axes=None):
    """Loss (left) and held-out exact match (right) against step; saved to `path` at 150 dpi.

    With a path and no axes the figure is drawn off-screen (a bare matplotlib Figure: pyplot's
    backend is left alone, so a notebook keeps showing its own figures); with neither, on pyplot.
    """
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure
    runs = results if isinstance(results, list) else [results]
    fig = None
    if axes is None:
        fig = Figure(figsize=(10, 3.6)) if path is not None else plt.figure(figsize=(10, 3.6))
        axes = fig.subplots(1, 2)
    for r in runs:
        name = label or f"{r['method']} lr={r['lr']:g}"
        axes[0].plot([h["step"] for h in r["history"]], [h["loss"] for h in r["history"]], label=name, lw=1)
        evals = [e for e in r["evals"] if "exact_match" in e]
        axes[1].plot([e["step"] for e in evals], [100 * e["exact_match"] for e in evals], "o-", label=name)
    axes[0].set(xlabel="step", ylabel="loss (answer tokens)", yscale="log", title="training loss")
    axes[1].set(xlabel="step", ylabel="exact match (%)", ylim=(-2, 102), title="held-out exact match")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if fig is not None:
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=150)
    return axes


def fmt_pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def summary(res: dict) -> str:
    """The lines `finetune` prints."""
    lines = [f"method: {res['method']}  lr={res['lr']:g}  steps={res['steps']}  batch={res['batch_size']}  "
             f"device={res['device']} x{res['world_size']}",
             f"trainable parameters: {res['trainable_params']:,} of {res['total_params']:,} "
             f"({100 * res['trainable_params'] / res['total_params']:.2f}%)"]
    if "digits" in res:
        lines.append(f"exact match: before {fmt_pct(res.get('exact_match_before'))} -> after "
                     f"{fmt_pct(res['exact_match_after'])}  ({res['n_test']} held-out sums, "
                     f"{res['digits'][0]}-{res['digits'][1]} digits)")
    else:
        lines.append(f"exact match on the validation replies: before {fmt_pct(res.get('exact_match_before'))} "
                     f"-> after {fmt_pct(res.get('exact_match_after'))}")
    lines.append(f"train time: {res['train_seconds']:.1f} s   tokens/s: {res['tokens_per_s']:,.0f}   "
                 f"peak memory: {res['peak_mem_gib']:.2f} GiB")
    if res.get("step_mode", "eager") != "eager":
        lines.append(f"steps: {res['step_mode']}" + (f" ({res['graph_error']})" if res.get("graph_error") else ""))
    if res.get("adapter_bytes") is not None:
        lines.append(f"adapter on disk: {res['adapter_bytes'] / 2**20:.2f} MiB")
    else:
        lines.append(f"checkpoint: {res['checkpoint_bytes'] / 2**20:.1f} MiB (all weights)")
    if "merge_check" in res:
        mc, n = res["merge_check"], len(res.get("samples", [])) and res["n_test"]
        lines.append(f"merged model (a copy): {mc['n_differ']} of {n or 'the'} answers differ from the unmerged model")
    return "\n".join(lines)
