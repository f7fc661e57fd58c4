"""`python -m lora_mini finetune`: options -> FinetuneConfig -> checks -> run_finetune -> summary.

Everything that can be checked without a model is checked first (settings, device, output
folder, data file), so a bad option fails in well under a second with one line:
`error: --rank must be a positive integer, got 0` (exit status 2; `--debug` for the traceback).
"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from .. import kernels
from ..kernels import KERNELS
from .config import FULL_FT_LR, PRESETS, DataSettings, FinetuneConfig, LoraConfig, default_preset, parse_targets


def _preset_default(get) -> str:
    return "default: " + ", ".join(f"{name} {get(p)}" for name, p in PRESETS.items())


def add_arguments(p) -> None:
    """The finetune options; defaults marked "preset" come from --preset (shown in --help)."""
    t, k = lambda f: _preset_default(lambda c: getattr(c.train, f)), lambda f: _preset_default(lambda c: getattr(c.task, f))
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="named defaults for steps, batch, LR and task size (default: gpu on CUDA, else cpu-quick)")
    g = p.add_argument_group("what to train")
    g.add_argument("--method", choices=["lora", "full"], default="lora", help="LoRA adapters or every weight")
    g.add_argument("--rank", type=int, default=LoraConfig.rank, help="LoRA rank r")
    g.add_argument("--alpha", type=float, default=LoraConfig.alpha, help="LoRA alpha (scale = alpha / r)")
    g.add_argument("--targets", default="all-linear", help="'all-linear', comma-separated module names, or a regex")
    g.add_argument("--dropout", type=float, default=0.0, help="LoRA dropout")
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=float, default=None, help=t("lr") + f"; --method full: {FULL_FT_LR}")
    g.add_argument("--steps", type=int, default=None, help=t("steps"))
    g.add_argument("--batch-size", type=int, default=None, help="global batch (all ranks); " + t("batch_size"))
    g.add_argument("--warmup", type=int, default=None, help="warm-up steps; " + t("warmup_steps"))
    g.add_argument("--schedule", default="cosine", choices=["cosine", "linear", "constant"], help="LR decay")
    g.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    g.add_argument("--grad-clip", type=float, default=1.0, help="clip the gradient norm (0: off)")
    g.add_argument("--eval-every", type=int, default=None, help="evaluate every N steps (0: start and end); "
                   + t("eval_every"))
    g.add_argument("--seed", type=int, default=0, help="seed of the data order and the LoRA init")
    g.add_argument("--strategy", choices=["auto", "eager", "compiled", "cuda_graph"], default="auto",
                   help="step strategy (auto: CUDA graph for LoRA on one bf16 GPU, else eager)")
    g.add_argument("--cuda-graph", choices=["auto", "on", "off"], default=None,
                   help="old spelling of --strategy cuda_graph/eager")
    g.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                   help="auto: bf16 on a GPU that has it, else fp16 with loss scaling; fp32 on CPU")
    g.add_argument("--budget", type=float, default=None, help="stop after this many seconds of training (checkpoint)")
    g.add_argument("--memory", choices=["normal", "low"], default="normal",
                   help="low: layer checkpointing + chunked loss for a small GPU (lora_mini.lowmem; eager steps)")
    g.add_argument("--kernels", choices=list(KERNELS), default="plain",
                   help="liger: fused RMSNorm/SwiGLU/RoPE Triton kernels (lora_mini.kernels; needs liger-kernel, a GPU)")
    g = p.add_argument_group("the addition task (when --data is not given)")
    g.add_argument("--digits", default=None, help="operand digits 'lo,hi', e.g. 2,3; "
                   + _preset_default(lambda c: ",".join(map(str, c.task.digits))))
    g.add_argument("--n-train", type=int, default=None, help="training sums; " + k("n_train"))
    g.add_argument("--n-test", type=int, default=None, help="held-out sums; " + k("n_test"))
    g.add_argument("--n-val", type=int, default=0, help="training sums held out as a validation split")
    g = p.add_argument_group("your own data (JSONL chats)")
    g.add_argument("--data", default=None, help="training file (JSONL); replaces the addition task")
    g.add_argument("--val", default=None, help="validation file (default: --val-fraction of --data)")
    g.add_argument("--val-fraction", type=float, default=0.1, help="share of --data held out when --val is not given")
    g.add_argument("--train-on-all", action="store_true", help="train on prompt tokens too, not only replies")
    g.add_argument("--max-length", type=int, default=512, help="tokens per example (longer ones are truncated)")
    g = p.add_argument_group("model, device and outputs")
    g.add_argument("--model", default="smollm2-135m-instruct", help="smollm2-135m-instruct, a .gguf file, a hub id, "
                   "or tiny (a random 2-layer model for smoke runs)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    g.add_argument("--out", default="runs/finetune", help="folder for results.json, plot.png, adapter/, checkpoint/")
    g.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    g.add_argument("--checkpoint-every", type=int, default=0, help="save OUT/checkpoint every N steps (0: only on "
                   "Ctrl-C or --budget)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint (same settings; more --steps ok)")
    g.add_argument("--adapter-format", choices=["peft", "lora_mini"], default="peft", help="adapter file format")
    g.add_argument("--no-merge-check", action="store_true", help="skip the merged-vs-unmerged answer check")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" if a GPU is visible, else "cpu"."""
    if device != "auto":
        return device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _digits(text):
    if text is None:
        return None
    try:
        return tuple(int(d) for d in str(text).split(","))
    except ValueError:
        from .config import ConfigError
        raise ConfigError(f"--digits must be 'lo,hi' with 1 <= lo <= hi <= 9, e.g. 2,3; got {text!r}") from None


def config_from_args(args) -> FinetuneConfig:
    """The parsed options -> one validated FinetuneConfig (raises ConfigError on a bad value)."""
    name = args.preset or default_preset(resolve_device(args.device))
    base = PRESETS[name]
    strategy = {"on": "cuda_graph", "off": "eager", "auto": "auto", None: args.strategy}[args.cuda_graph]
    given = {"steps": args.steps, "batch_size": args.batch_size, "warmup_steps": args.warmup,
             "eval_every": args.eval_every,
             "lr": args.lr if args.lr is not None else (FULL_FT_LR[name] if args.method == "full" else None)}
    if args.warmup is None and args.steps is not None:       # the preset's warm-up, never past --steps
        given["warmup_steps"] = min(base.train.warmup_steps, args.steps)
    train = replace(base.train, **{k: v for k, v in given.items() if v is not None}, schedule=args.schedule,
                    weight_decay=args.weight_decay, grad_clip=args.grad_clip, seed=args.seed, strategy=strategy,
                    precision=args.precision, budget_s=args.budget, checkpoint_every=args.checkpoint_every,
                    memory=args.memory, kernels=args.kernels)
    task_given = {"digits": _digits(args.digits), "n_train": args.n_train, "n_test": args.n_test}
    task = replace(base.task, **{k: v for k, v in task_given.items() if v is not None}, n_val=args.n_val)
    data = None
    if args.data is not None:
        data = DataSettings(path=args.data, val_path=args.val, val_fraction=args.val_fraction,
                            train_on_all=args.train_on_all, max_length=args.max_length)
    lora = LoraConfig(method=args.method, rank=args.rank, alpha=args.alpha, targets=parse_targets(args.targets),
                      dropout=args.dropout)
    if train.warmup_steps > train.steps:
        from .config import ConfigError
        raise ConfigError(f"--warmup ({train.warmup_steps}) must not exceed --steps ({train.steps})")
    if args.checkpoint_every and args.checkpoint_every > train.steps:
        from .config import ConfigError
        raise ConfigError(f"--checkpoint-every ({args.checkpoint_every}) is more than --steps ({train.steps}): "
                          "no checkpoint would be written; use a smaller value or 0")
    return FinetuneConfig(model=args.model, device=args.device, lora=lora, train=train, task=task, data=data,
                          out=args.out, adapter_format=args.adapter_format, merge_check=not args.no_merge_check,
                          preset=name)


def check_before_loading(cfg: FinetuneConfig, args) -> None:
    """Everything that can fail without a model: device, output folder, data files, task size."""
    from .outputs import check_out_folder
    from .system import check_device
    from .tasks import AdditionTask
    from .trainer import resolve_precision
    check_device(cfg.device)
    try:
        resolve_precision(cfg.train.precision, resolve_device(cfg.device))
    except ValueError as e:
        from .config import ConfigError
        raise ConfigError(str(e)) from None
    if args.resume and args.overwrite:
        from .config import ConfigError
        raise ConfigError("--resume and --overwrite contradict each other: --resume keeps the run in --out")
    if cfg.train.kernels == "liger" and (why := kernels.missing(resolve_device(cfg.device))):
        from .config import ConfigError
        raise ConfigError(f"--kernels liger: {why}; use --device cuda with liger-kernel installed, or --kernels plain")
    from .distributed import launched_rank
    if launched_rank() == 0:                           # under torchrun rank 0 alone writes (and locks) --out
        check_out_folder(cfg.out, overwrite=args.overwrite, resume=args.resume)
    if args.resume and not (Path(cfg.out) / "checkpoint").is_dir() and not (Path(cfg.out) / "checkpoint.tmp").is_dir():
        from .checkpoint import CheckpointError
        raise CheckpointError(f"--resume: no checkpoint in {cfg.out}/checkpoint; run without --resume first")
    if cfg.data is not None:
        from .data import check_data
        from .finetune import data_config
        check_data(data_config(cfg))
    else:
        t = AdditionTask(digits=cfg.task.digits)
        need = cfg.task.n_train + cfg.task.n_val + cfg.task.n_test
        if need > t.n_pairs():
            from .config import ConfigError
            raise ConfigError(f"--n-train + --n-val + --n-test = {need} is more than the {t.n_pairs()} distinct sums "
                              f"of {cfg.task.digits[0]}-{cfg.task.digits[1]} digits; use fewer or more --digits")


def load_base(name: str, device: str, dtype):
    """(model, tokenizer): load_model(name), or for "tiny" a random 2-layer llama + a character tokenizer."""
    if name != "tiny":
        from ..models import load_model
        model, tok = load_model(name, device=device, dtype=dtype)
        if getattr(tok, "clean_up_tokenization_spaces", False):
            tok.clean_up_tokenization_spaces = False   # ignored for BPE anyway; silences the 4-line warning
        return model, tok
    from ..models import tiny_model
    from .tasks import char_tokenizer
    tok = char_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), initializer_range=0.2, pad_token_id=tok.pad_token_id,
                       eos_token_id=tok.eos_token_id)
    return model.to(device=device, dtype=dtype), tok


def _load(cfg: FinetuneConfig, device: str):
    import torch
    from .trainer import cpu_threads, model_dtype, resolve_precision
    if device == "cpu":
        torch.set_num_threads(cpu_threads())
    dtype = model_dtype(resolve_precision(cfg.train.precision, device), cfg.lora.method)
    t0 = time.perf_counter()
    model, tok = load_base(cfg.model, device, dtype)
    return model, tok, time.perf_counter() - t0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(args) -> int:
    from .distributed import launched_rank, setup_distributed, teardown_distributed, dist_info
    from .finetune import run_finetune, summary
    from .outputs import OutputLock
    from .trainer import Interrupted
    cfg = config_from_args(args)
    check_before_loading(cfg, args)
    signal.signal(signal.SIGTERM, _raise_interrupt)    # SIGTERM: checkpoint and stop, like Ctrl-C
    lock = OutputLock(cfg.out) if launched_rank() == 0 else None
    existed = Path(cfg.out).exists()
    try:
        if lock:
            lock.__enter__()
        device = resolve_device(setup_distributed(cfg.device))
        model, tok, load_s = _load(cfg, device)
        res = run_finetune(model, tok, cfg, resume=args.resume, progress=not args.no_progress)
    except Interrupted as e:
        again = shlex.join(["python", "-m", "lora_mini", "finetune", *getattr(args, "argv", sys.argv[2:])])
        where = f"a checkpoint is in {e.checkpoint_dir}; " if e.checkpoint_dir else ""
        print(f"interrupted at step {e.step}: {where}resume with:\n  {again}"
              + ("" if "--resume" in again else " --resume"), file=sys.stderr)
        return 130
    finally:
        if lock:
            lock.__exit__(None, None, None)
            if not existed and not any(Path(cfg.out).iterdir()):
                Path(cfg.out).rmdir()                  # a run that failed before writing leaves no folder
    if dist_info()[0] == 0:
        res["load_seconds"] = load_s
        print(summary(res))
        if res["stopped"] is None:
            print(f"wrote {Path(cfg.out) / 'results.json'} and {Path(cfg.out) / 'plot.png'}")
        else:
            print(f"stopped ({res['stopped']}) at step {res['steps']}; resume with --resume")
    teardown_distributed()
    return 0
