"""`python -m lora_mini forgetting`: how much a fine-tune forgets by the time it has learnt the new task.

    python -m lora_mini forgetting --method lora --rank 16 --lr 2e-3 --seed 0 --target-acc 0.9 \\
        --max-steps 300 --eval-every 10 --out figures/forgetting/lora_r16_seed0.json --budget-s 480
    python -m lora_mini forgetting --model tiny --preset cpu-quick --digits 1,1 --n-train 40 --n-test 8 \\
        --batch-size 8 --max-steps 6 --eval-every 2 --text-files 2 --text-block-len 32 --text-blocks 4 \\
        --chat-max-new 8 --out /tmp/f.json                                       # seconds, CPU

Chapter 6's arithmetic task and schedule (the `gpu` preset: 2-3 digit sums, batch 64, 30 warm-up
steps, cosine decay over --max-steps, the lab's Trainer), evaluated every --eval-every steps on
three things:

  exact_match   the new task: greedy answers to the held-out sums (as `finetune` measures it);
  text_loss     old knowledge: next-token loss on held-out Python standard-library blocks (the first
                128 blocks of 256 tokens of the held-out split, the blocks chapter 7 scores: the
                held-out stream of the first --text-files files is a prefix of the whole one);
  chat_loglik   old behaviour: the mean log-likelihood per token of the base model's own greedy
                replies to CHAT_PROMPTS (general questions), computed once before training; a drop
                means the model has moved away from what it used to say.

Training stops at the first evaluation whose exact match reaches --target-acc (the record keeps the
step) or at --max-steps, so runs of different methods can be compared at the same accuracy. The
JSON is rewritten after every evaluation ("finished": false until the end) and a --budget-s stops
training early enough to write it whole.
"""
from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .budget import Budget
from .config import PRESETS, ConfigError, FinetuneConfig, LoraConfig, _int, _num
from .system import code_version

CHAT_PROMPTS = (
    "What is the capital of France?",
    "Give me three tips for sleeping better.",
    "How do I boil an egg?",
    "What is the difference between weather and climate?",
    "Write a short thank-you note to a friend who helped me move.",
    "Why is the sky blue?",
    "What are some good habits for saving money?",
    "Can you explain what photosynthesis is?",
    "Suggest a healthy breakfast.",
    "How many days are there in a leap year?",
    "What should I pack for a weekend trip to the beach?",
    "Tell me a fun fact about octopuses.",
    "How can I stay focused while studying?",
    "What is a good way to start learning to cook?",
    "Explain what a noun is.",
    "What is the tallest mountain in the world?",
)


class TargetReached(Exception):
    """Raised from the evaluation that first reaches the target accuracy: training stops there."""


@dataclass(frozen=True)
class ForgettingConfig:
    """One run: the fine-tune (FinetuneConfig: model, method, rank, LR, steps = max steps, ...) and
    what is measured (target accuracy, text blocks, chat replies), the output file and the budget."""
    finetune: FinetuneConfig = field(default_factory=lambda: replace(PRESETS["gpu"], out=None))
    target_acc: float = 0.9
    text_files: int = 60              # held-out stdlib files tokenized (the blocks come from the first ones)
    text_blocks: int = 128
    text_block_len: int = 256
    chat_max_new: int = 64            # tokens of each base reply
    out: str = "runs/forgetting/run.json"
    budget_s: float | None = None
    overwrite: bool = False
    command: str = "python -m lora_mini forgetting"

    def __post_init__(self):
        _num("--target-acc", self.target_acc, what="a number in (0, 1]")
        if self.target_acc > 1:
            raise ConfigError(f"--target-acc must be a number in (0, 1], got {self.target_acc!r}")
        if self.finetune.train.eval_every < 1:
            raise ConfigError("--eval-every must be a positive integer (the curve needs evaluations), got "
                              f"{self.finetune.train.eval_every!r}")
        for name in ("text_files", "text_blocks", "chat_max_new"):
            _int("--" + name.replace("_", "-"), getattr(self, name))
        _int("--text-block-len", self.text_block_len, low=2, what="an integer >= 2")
        if self.budget_s is not None:
            _num("--budget-s", self.budget_s, what="a positive number of seconds")
        if not str(self.out).endswith(".json"):
            raise ConfigError(f"--out must name a .json file, got {self.out!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["finetune"] = self.finetune.to_dict()
        return json.loads(json.dumps(d))


# ----------------------------------------------------------------------------- the three measures


def task_accuracy(model, tok, examples, cfg: FinetuneConfig) -> float:
    """Exact match of greedy answers on the held-out sums (as `finetune` measures it)."""
    from .tasks import exact_match
    return exact_match(model, tok, examples, cfg.eval_batch_size, cfg.task.digits[1] + 2)["exact_match"]


def text_blocks(tok, cfg: ForgettingConfig):
    """(the held-out stdlib blocks, corpus info); refuses if the files give fewer blocks than asked."""
    from .corpus import build_corpus, to_blocks
    corpus = build_corpus(tok, max_files=cfg.text_files)
    blocks = to_blocks(corpus["heldout"], cfg.text_block_len)[:cfg.text_blocks]
    if len(blocks) < cfg.text_blocks:
        raise ConfigError(f"{cfg.text_files} held-out files give only {len(blocks)} blocks of {cfg.text_block_len} "
                          f"tokens, not {cfg.text_blocks}; raise --text-files or lower --text-blocks")
    return blocks, {**corpus["info"], "blocks": len(blocks), "block_len": cfg.text_block_len}


@torch.no_grad()
def base_replies(model, tok, prompts, max_new: int) -> list[list[int]]:
    """The model's greedy reply to each prompt (its default chat template), as token ids; the end
    of turn token is kept when the reply ends inside max_new tokens."""
    from .tasks import end_token_id, left_pad, prompt_ids
    end = end_token_id(tok)
    pad = end if tok.pad_token_id is None else tok.pad_token_id
    ids, mask = left_pad([prompt_ids(tok, [{"role": "user", "content": p}]) for p in prompts], pad)
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), max_new_tokens=max_new,
                         do_sample=False, eos_token_id=end, pad_token_id=pad, temperature=None, top_p=None, top_k=None)
    model.train(was)
    replies = []
    for row in out[:, ids.shape[1]:].tolist():
        replies.append(row[:row.index(end) + 1] if end in row else row)
    return replies


def encode_replies(tok, prompts, replies) -> list[dict]:
    """Prompt + reply rows with labels on the reply only (for the answer-token loss)."""
    from .tasks import IGNORE, prompt_ids
    rows = []
    for p, r in zip(prompts, replies):
        prompt = prompt_ids(tok, [{"role": "user", "content": p}])
        rows.append({"input_ids": prompt + r, "labels": [IGNORE] * len(prompt) + r, "prompt_len": len(prompt)})
    return rows


@dataclass
class Probe:
    """Everything one evaluation needs: the held-out sums, text blocks and encoded base replies."""
    tok: object
    cfg: ForgettingConfig
    test_ex: list
    blocks: torch.Tensor
    replies: list

    def __call__(self, model) -> dict:
        from .beyond import answer_loss
        from .corpus import heldout_loss
        cuda = next(model.parameters()).device.type == "cuda"
        return {"exact_match": task_accuracy(model, self.tok, self.test_ex, self.cfg.finetune),
                "text_loss": heldout_loss(model, self.blocks, batch_size=32,
                                          autocast_dtype=torch.bfloat16 if cuda else None),
                "chat_loglik": -answer_loss(model, self.replies, self.tok.pad_token_id)}


# ----------------------------------------------------------------------------- the record


def header(cfg: ForgettingConfig, device: str) -> dict:
    import transformers
    ft = cfg.finetune
    lora = ft.lora.method == "lora"
    return {"command": cfg.command, "config": cfg.to_dict(), "method": ft.lora.method,
            "rank": ft.lora.rank if lora else None, "alpha": ft.lora.alpha if lora else None,
            "lr": ft.train.lr, "seed": ft.train.seed, "target_acc": cfg.target_acc, "max_steps": ft.train.steps,
            "eval_every": ft.train.eval_every, "model": ft.model,
            "device": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu",
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "code_version": code_version(), "finished": False}


def summarize(rec: dict) -> None:
    """Fill in, from rec["curve"]: where the target was reached, and the forgetting there (in place)."""
    curve = rec["curve"]
    base, last = curve[0], curve[-1]
    hit = next((p for p in curve if p["exact_match"] >= rec["target_acc"]), None)
    rec["reached_at_step"] = None if hit is None else hit["step"]
    rec["final"] = last
    rec["forgetting"] = {"text_loss_increase": last["text_loss"] - base["text_loss"],
                         "chat_loglik_drop": base["chat_loglik"] - last["chat_loglik"]}


def write(cfg: ForgettingConfig, rec: dict) -> None:
    from .checkpoint import atomic_write_text
    summarize(rec)
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg.out, json.dumps(rec, indent=1))


# ----------------------------------------------------------------------------- the run


def load(cfg: ForgettingConfig, device: str):
    """(model in its training dtype, tokenizer, Probe): base replies come from the float32 model, so
    every method and seed is scored against the same replies."""
    from .commands import load_base
    from .finetune import make_data
    from .trainer import cpu_threads, model_dtype, resolve_precision
    ft = cfg.finetune
    if device == "cpu":
        torch.set_num_threads(cpu_threads())
    model, tok = load_base(ft.model, device, torch.float32)
    replies = base_replies(model, tok, CHAT_PROMPTS, cfg.chat_max_new)
    model = model.to(model_dtype(resolve_precision(ft.train.precision, device), ft.lora.method))
    _, _, test_ex, enc = make_data(tok, ft.task, ft.train.seed)
    blocks, info = text_blocks(tok, cfg)
    probe = Probe(tok, cfg, test_ex, blocks, encode_replies(tok, CHAT_PROMPTS, replies))
    return model, tok, probe, enc, {"text": info, "chat_prompts": list(CHAT_PROMPTS),
                                    "base_replies": [tok.decode(r, skip_special_tokens=True) for r in replies],
                                    "base_reply_tokens": sum(map(len, replies))}


def train_until_target(model, tok, enc, probe: Probe, rec: dict, cfg: ForgettingConfig, train_budget):
    """The Trainer on the task, evaluating every eval_every steps; stops at the target (TargetReached)."""
    from .finetune import _adapt, check_rank, check_targets
    from .tasks import batches
    from .trainer import Trainer
    ft = cfg.finetune
    check_targets(model, ft.lora)
    check_rank(model, ft.lora)
    _adapt(model, ft.lora)
    rec["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trainer = Trainer(model, replace(ft.train, budget_s=train_budget), progress=False)

    def evaluate(m):
        step = trainer.state["step"]
        point = rec["curve"][0] if step == 0 else {"step": step, **probe(m)}
        point["train_seconds"] = trainer.state["train_seconds"]
        if step:
            rec["curve"].append(point)
            write(cfg, rec)
            print(f"step {step:4d}  exact match {point['exact_match']:.3f}  text loss {point['text_loss']:.4f}  "
                  f"chat log-lik {point['chat_loglik']:.4f}", flush=True)
        if point["exact_match"] >= cfg.target_acc:
            raise TargetReached(step)
        return {k: v for k, v in point.items() if k != "step"}

    it = batches(enc, ft.train.batch_size, seed=ft.train.seed, pad_id=tok.pad_token_id)
    try:
        out = trainer.fit(it, evaluate, pad_to=max(len(e["input_ids"]) for e in enc))
        stopped = "budget" if out["stopped"] == "budget" else "max_steps"
    except TargetReached:
        stopped = "target"
        if trainer.graphed is not None:
            trainer.graphed.release()
    st = trainer.state
    rec.update(stopped=stopped, steps=st["step"], train_seconds=st["train_seconds"], history=st["history"],
               step_mode=trainer.graphed.mode if trainer.graphed is not None else trainer.plan.strategy)
    return stopped


def run_forgetting(cfg: ForgettingConfig, device: str) -> dict:
    """Load, score the base, train until the target or the end, write cfg.out; returns the record."""
    budget = Budget(cfg.budget_s)
    torch.manual_seed(cfg.finetune.train.seed)
    rec = header(cfg, device)
    model, tok, probe, enc, info = load(cfg, device)
    rec.update(info)
    t = time.perf_counter()
    rec["curve"] = [{"step": 0, **probe(model), "train_seconds": 0.0}]
    eval_s = time.perf_counter() - t
    rec["eval_seconds"] = eval_s
    write(cfg, rec)
    reserve = 1.5 * eval_s + 5.0                      # a last evaluation and the write
    if rec["curve"][0]["exact_match"] >= cfg.target_acc:
        rec.update(stopped="target", steps=0, train_seconds=0.0, history=[])
    elif budget.remaining() - reserve <= 0:
        rec.update(stopped="budget", steps=0, train_seconds=0.0, history=[])
    else:
        left = budget.remaining() - reserve
        stopped = train_until_target(model, tok, enc, probe, rec, cfg, None if left == float("inf") else left)
        if stopped == "budget" and rec["curve"][-1]["step"] != rec["steps"]:
            rec["curve"].append({"step": rec["steps"], **probe(model), "train_seconds": rec["train_seconds"]})
    rec["wall_seconds"] = budget.elapsed()
    rec["finished"] = True
    write(cfg, rec)
    return rec


# ----------------------------------------------------------------------------- command line


def add_arguments(p) -> None:
    g = p.add_argument_group("what to train (chapter 6's task and schedule)")
    g.add_argument("--method", choices=["lora", "full"], default="lora", help="LoRA adapters or every weight")
    g.add_argument("--rank", type=int, default=LoraConfig.rank, help="LoRA rank r")
    g.add_argument("--alpha", type=float, default=LoraConfig.alpha, help="LoRA alpha (scale = alpha / r)")
    g.add_argument("--lr", type=float, required=True, help="peak learning rate (each method at its best)")
    g.add_argument("--seed", type=int, default=0, help="seed of the data split and order and the LoRA init")
    g.add_argument("--target-acc", type=float, default=0.9, help="stop at the first evaluation with this exact match")
    g.add_argument("--max-steps", type=int, default=300, help="steps of the schedule (the most it trains)")
    g.add_argument("--eval-every", type=int, default=10, help="evaluate every N steps")
    g.add_argument("--preset", choices=list(PRESETS), default="gpu", help="task size, batch and warm-up (finetune's)")
    g.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    g.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: the preset's, at most --max-steps)")
    g.add_argument("--digits", default=None, help="operand digits 'lo,hi' (default: the preset's)")
    g.add_argument("--n-train", type=int, default=None, help="training sums (default: the preset's)")
    g.add_argument("--n-test", type=int, default=None, help="held-out sums (default: the preset's)")
    g = p.add_argument_group("what is measured, where it goes")
    g.add_argument("--text-files", type=int, default=ForgettingConfig.text_files, help="held-out stdlib files read")
    g.add_argument("--text-blocks", type=int, default=ForgettingConfig.text_blocks, help="held-out text blocks scored")
    g.add_argument("--text-block-len", type=int, default=ForgettingConfig.text_block_len, help="tokens per block")
    g.add_argument("--chat-max-new", type=int, default=ForgettingConfig.chat_max_new, help="tokens per base reply")
    g.add_argument("--model", default="smollm2-135m-instruct", help="smollm2-135m-instruct, a hub id, or tiny")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    g.add_argument("--out", required=True, help="the JSON record, e.g. figures/forgetting/lora_r16_seed0.json")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    g.add_argument("--budget-s", type=float, default=None, help="stop training in time to write within this many s")


def config_from_args(args) -> ForgettingConfig:
    from .commands import _digits
    base = PRESETS[args.preset]
    _int("--max-steps", args.max_steps)
    warmup = args.warmup if args.warmup is not None else min(base.train.warmup_steps, args.max_steps)
    if warmup > args.max_steps:
        raise ConfigError(f"--warmup ({warmup}) must not exceed --max-steps ({args.max_steps})")
    train = replace(base.train, steps=args.max_steps, lr=args.lr, seed=args.seed, eval_every=args.eval_every,
                    warmup_steps=warmup, batch_size=args.batch_size or base.train.batch_size)
    given = {"digits": _digits(args.digits), "n_train": args.n_train, "n_test": args.n_test}
    task = replace(base.task, **{k: v for k, v in given.items() if v is not None})
    lora = LoraConfig(method=args.method, rank=args.rank, alpha=args.alpha)
    ft = replace(base, model=args.model, device=args.device, lora=lora, train=train, task=task, out=None)
    argv = getattr(args, "argv", None)
    command = shlex.join(["python", "-m", "lora_mini", "forgetting", *(sys.argv[2:] if argv is None else argv)])
    return ForgettingConfig(finetune=ft, target_acc=args.target_acc, text_files=args.text_files,
                            text_blocks=args.text_blocks, text_block_len=args.text_block_len,
                            chat_max_new=args.chat_max_new, out=args.out, budget_s=args.budget_s,
                            overwrite=args.overwrite, command=command)


def check_out(cfg: ForgettingConfig) -> None:
    out = Path(cfg.out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; name a .json file")
    if out.exists() and not cfg.overwrite:
        raise ConfigError(f"--out {out} exists; pass --overwrite to replace it or choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create its folder ({e.strerror or e})") from None


def main(args) -> int:
    from .commands import resolve_device
    from .system import check_device
    cfg = config_from_args(args)                  # every setting checked before anything loads
    check_device(cfg.finetune.device)
    check_out(cfg)
    rec = run_forgetting(cfg, resolve_device(cfg.finetune.device))
    at = rec["reached_at_step"]
    print(f"{rec['method']} lr={rec['lr']:g}: " + (f"reached {cfg.target_acc:.0%} at step {at}" if at is not None
          else f"did not reach {cfg.target_acc:.0%} ({rec['stopped']}, step {rec['steps']})")
          + f"; text loss {rec['forgetting']['text_loss_increase']:+.4f}, chat log-lik "
          f"{-rec['forgetting']['chat_loglik_drop']:+.4f}; wrote {cfg.out} ({rec['wall_seconds']:.0f} s)")
    return 0


# ----------------------------------------------------------------------------- reading the records (chapter 8b)

MEASURES = {"text_loss_increase": "rise of the held-out stdlib loss (nats/token)",
            "chat_loglik_drop": "drop of the base replies' log-likelihood (nats/token)"}


def load_records(folder) -> list[dict]:
    """Every finished record in `folder` (*.json), sorted by method, rank and seed; refuses a folder
    without one, and records of different target accuracies (they cannot be matched)."""
    recs = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]
    recs = [r for r in recs if r.get("finished") and "curve" in r]
    if not recs:
        raise FileNotFoundError(f"{folder} holds no finished forgetting record (*.json); on a GPU machine "
                                "`GPU=0 bash scripts/gpu/forgetting.sh` writes them")
    targets = sorted({r["target_acc"] for r in recs})
    if len(targets) > 1:
        raise ValueError(f"{folder} mixes records of target accuracies {targets}; keep one target per folder")
    return sorted(recs, key=lambda r: (r["method"] != "lora", r["rank"] or 0, r["seed"]))


def label(rec: dict) -> str:
    return "full FT" if rec["method"] == "full" else f"LoRA r={rec['rank']}"


def at_target(rec: dict) -> dict | None:
    """Forgetting at the first evaluation that reached the target (None if none did)."""
    if rec["reached_at_step"] is None:
        return None
    base = rec["curve"][0]
    p = next(q for q in rec["curve"] if q["step"] == rec["reached_at_step"])
    return {"step": p["step"], "exact_match": p["exact_match"],
            "text_loss_increase": p["text_loss"] - base["text_loss"],
            "chat_loglik_drop": base["chat_loglik"] - p["chat_loglik"]}


def matched(records: list[dict]) -> dict:
    """{label: {"seeds", "reached", "lr", "step"/measure: {"mean", "spread", "values"}}} at the target."""
    import statistics
    out = {}
    for rec in records:
        g = out.setdefault(label(rec), {"seeds": [], "reached": [], "lr": rec["lr"], "points": []})
        g["seeds"].append(rec["seed"])
        hit = at_target(rec)
        if hit is not None:
            g["reached"].append(rec["seed"])
            g["points"].append(hit)
    for g in out.values():
        for key in ("step", *MEASURES):
            vals = [p[key] for p in g["points"]]
            g[key] = {"values": vals, "mean": statistics.fmean(vals) if vals else None,
                      "spread": statistics.pstdev(vals) if vals else None}
    return out


def verdict(lora: dict, full: dict, key: str) -> str:
    """"LoRA forgets less than full FT" on one measure, by the book's rule (brackets.SPREADS): a
    difference counts when it exceeds twice the larger seed spread; needs >= 2 seeds that reached."""
    from .brackets import SPREADS
    a, b = lora[key], full[key]
    if len(a["values"]) < 2 or len(b["values"]) < 2:
        return "inconclusive at this scale"
    diff = b["mean"] - a["mean"]                  # > 0: LoRA forgot less
    if abs(diff) <= SPREADS * max(a["spread"], b["spread"]):
        return "inconclusive at this scale"
    return "supported" if diff > 0 else "contradicted"


def verdicts(m: dict, reference: str = "full FT") -> dict:
    """{(method, measure): verdict of "it forgets less than `reference`"} for every other method of
    matched(...)'s result."""
    if reference not in m:
        raise KeyError(f"no {reference!r} runs among {sorted(m)}; the verdicts compare against it")
    return {(name, key): verdict(g, m[reference], key) for name, g in m.items() if name != reference
            for key in MEASURES}


def table(m: dict) -> str:
    """matched(...)'s result as a table: mean ± spread (population std over seeds) at the target."""
    lines = [f"{'method':11s} {'LR':>6s} {'reached':>8s} {'step':>12s} {'text loss rise':>15s} {'chat log-lik drop':>18s}"]
    for name, g in m.items():
        cell = lambda k, f: "—" if g[k]["mean"] is None else f"{g[k]['mean']:{f}} ± {g[k]['spread']:{f}}"  # noqa: E731
        lines.append(f"{name:11s} {g['lr']:>6g} {len(g['reached'])}/{len(g['seeds'])} seeds {cell('step', '.0f'):>12s} "
                     f"{cell('text_loss_increase', '.2f'):>15s} {cell('chat_loglik_drop', '.2f'):>18s}")
    return "\n".join(lines)


def _symlog(ax):
    """Linear below 1, logarithmic above, from 0 to just above the highest curve, plain tick labels."""
    from matplotlib.ticker import FuncFormatter, NullLocator
    top = 1.25 * max(max(line.get_ydata()) for line in ax.lines)
    ax.set_yscale("symlog", linthresh=1.0, linscale=1.0)
    ax.set_ylim(0, top)
    ax.set_yticks([t for t in (0, 0.25, 0.5, 0.75, 1, 2, 4, 8, 16, 32) if t <= top])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def plot_curves(records: list[dict], axes=None, yscale: str = "linear"):
    """Learning against forgetting (Biderman et al. 2024): new-task exact match on x, the old-task
    measures on y (change from the step-0 model), one colour per method, one thin line per seed and
    a ring where each run reached the target. yscale: "linear", or "symlog" for measures that differ
    by orders of magnitude between methods."""
    import matplotlib.pyplot as plt
    if yscale not in ("linear", "symlog"):
        raise ValueError(f"yscale must be 'linear' or 'symlog', got {yscale!r}")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours, first = {}, {}
    for rec in records:
        name = label(rec)
        c = colours.setdefault(name, f"C{len(colours)}")
        first.setdefault(name, rec["seed"])
        base, xs = rec["curve"][0], [100 * p["exact_match"] for p in rec["curve"]]
        hit = at_target(rec)
        for ax, key in zip(axes, MEASURES):
            ys = [p["text_loss"] - base["text_loss"] if key == "text_loss_increase" else
                  base["chat_loglik"] - p["chat_loglik"] for p in rec["curve"]]
            ax.plot(xs, ys, color=c, lw=0.9, alpha=0.7, marker=".", ms=3,
                    label=name if rec["seed"] == first[name] else None)
            if hit is not None:
                ax.plot([100 * hit["exact_match"]], [hit[key]], "o", mfc="none", mec=c, ms=7)
    for ax, (key, text) in zip(axes, MEASURES.items()):
        if yscale == "symlog":
            _symlog(ax)
        ax.axvline(100 * records[0]["target_acc"], color="k", lw=0.7, ls=":")
        ax.set(xlabel="new task: held-out exact match (%)", ylabel=text)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return axes
