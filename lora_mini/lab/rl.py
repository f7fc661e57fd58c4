"""`python -m lora_mini rl`: policy-gradient RL on the arithmetic task, with LoRA (even rank 1) or full FT.

    python -m lora_mini rl --method lora --rank 1 --lr 1e-4 --steps 100 --out runs/rl/lora_r1.json
    python -m lora_mini rl --model tiny --steps 3 --out runs/rl/smoke.json      # a CPU smoke run

The question it answers ("LoRA Without Regret", Thinking Machines 2025): supervised fine-tuning
needs capacity (many bits per example), policy-gradient RL gets about one bit per episode, so even
a rank-1 adapter should learn as well as full fine-tuning does.

One step, in the style of GRPO (Shao et al. 2024) without its KL term, one update per batch:

  1. take P prompts "What is a + b?"; sample G replies to each from the current policy (temperature T)
  2. reward r = 1 if the first integer in a reply is a + b, else 0 (so the reward measures the sum,
     not the reply's format)
  3. advantage of a reply = r − mean(r over its group of G)   [÷ the group's std with `normalize`]
     — a group whose replies are all right or all wrong has advantage 0 and teaches nothing
  4. loss = − Σ_replies advantage · Σ_tokens log π(token) / (number of reply tokens); one AdamW step

Every `eval_every` steps the policy answers held-out sums greedily; the result records both the
lenient accuracy (the first integer is right) and exact match (the whole reply is the number).
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..inject import apply_lora, count_parameters
from .tasks import AdditionTask, end_token_id, generate, left_pad, parse_answer, prompt_ids

_INTEGER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class RLConfig:
    method: str = "lora"            # "lora" (rank `rank` on every linear layer) or "full"
    rank: int = 1
    alpha: float = 32.0
    lr: float = 1e-4
    steps: int = 50
    prompts_per_step: int = 8       # P
    group_size: int = 8             # G replies per prompt
    temperature: float = 1.0
    max_new_tokens: int = 8
    normalize: bool = True          # divide advantages by the group's std (GRPO); False: r − mean only
    digits: tuple = (1, 2)          # operands of 1-2 digits: the base model is right some of the time
    n_eval: int = 64
    eval_every: int = 10
    grad_clip: float = 1.0
    seed: int = 0
    format_steps: int = 0           # supervised warm-up steps on one-digit sums before RL (0: none)
    format_lr: float = 1e-4         # its LR (full fine-tuning, seed 0 for every run: one shared start)

    def __post_init__(self):
        if self.method not in ("lora", "full"):
            raise ValueError(f"method must be 'lora' or 'full', got {self.method!r}")
        if not (isinstance(self.format_steps, int) and self.format_steps >= 0):
            raise ValueError(f"format_steps must be a whole number >= 0, got {self.format_steps!r}")
        if self.format_steps and self.digits[0] < 2:
            raise ValueError("the format warm-up trains on one-digit sums: RL digits must then start at 2 "
                             f"(e.g. digits=(2, 2)), got {self.digits}")
        positive = dict(rank=self.rank, steps=self.steps, prompts_per_step=self.prompts_per_step,
                        group_size=self.group_size, max_new_tokens=self.max_new_tokens,
                        n_eval=self.n_eval, eval_every=self.eval_every)
        for name, v in positive.items():
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a whole number >= 1, got {v!r}")
        for name, v in dict(lr=self.lr, alpha=self.alpha, temperature=self.temperature,
                            grad_clip=self.grad_clip).items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (the group mean is the baseline), got {self.group_size}")
        AdditionTask(self.digits)                   # raises on bad digits


# ----------------------------------------------------------------------------- rewards and advantages
def first_integer(text: str) -> str | None:
    """The first integer in a reply ("The sum is 57." -> "57"), or None."""
    m = _INTEGER.search(text)
    return m.group(0).lstrip("+") if m else None


def sum_reward(reply: str, example: dict) -> float:
    """1.0 if the reply's first integer is the right answer, else 0.0."""
    return 1.0 if first_integer(reply) == example["answer"] else 0.0


def group_advantages(rewards: torch.Tensor, normalize: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """rewards (P, G) -> advantages (P, G): r − group mean, ÷ group std if normalize (0 where std = 0)."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not normalize:
        return centred
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    return torch.where(std > eps, centred / std.clamp_min(eps), torch.zeros_like(centred))


# ----------------------------------------------------------------------------- sampling and log-probs
def left_padded(tokenizer, examples, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples' chat prompts, left-padded: ids (P, T) and mask (P, T)."""
    return left_pad([prompt_ids(tokenizer, ex["messages"]) for ex in examples], pad)


def reply_mask(replies: torch.Tensor, end: int) -> torch.Tensor:
    """replies (N, L) of generated ids -> (N, L) 1 up to and including the first end token, then 0."""
    is_end = (replies == end).long()
    after_end = (is_end.cumsum(dim=1) - is_end) > 0        # strictly after the first end token
    return (~after_end).long()


@torch.no_grad()
def sample_replies(model, tokenizer, examples, cfg: RLConfig) -> dict:
    """G sampled replies per prompt: {"ids" (P·G, T+L), "mask" (same), "T", "texts" [P·G]}."""
    device = next(model.parameters()).device
    end = end_token_id(tokenizer)
    pad = end if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    ids, mask = left_padded(tokenizer, examples, pad)
    was_training = model.training
    model.eval()
    try:
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                             temperature=cfg.temperature, top_k=0, top_p=1.0, max_new_tokens=cfg.max_new_tokens,
                             num_return_sequences=cfg.group_size, eos_token_id=end, pad_token_id=pad)
    finally:
        model.train(was_training)
    T = ids.shape[1]
    replies = out[:, T:]                                                   # (P·G, L)
    rmask = reply_mask(replies, end)
    full_mask = torch.cat([mask.to(device).repeat_interleave(cfg.group_size, dim=0), rmask], dim=1)
    texts = []
    for row, m in zip(replies.tolist(), rmask.tolist()):
        row = [t for t, k in zip(row, m) if k and t != end]
        texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return {"ids": out, "mask": full_mask, "T": T, "texts": texts}


def reply_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log π over each sequence's reply tokens (positions ≥ T with mask 1): (N,), and their count (N,)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, T - 1:-1].float()   # predicts ids[:, T:]
    target = ids[:, T:]
    logp = torch.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)   # (N, L)
    m = mask[:, T:].to(logp.dtype)
    return (logp * m).sum(dim=1), m.sum(dim=1)


# ----------------------------------------------------------------------------- the loop
def rl_step(model, tokenizer, optimizer, examples, cfg: RLConfig, reward_fn=sum_reward) -> dict:
    """One policy-gradient step on P prompts; returns {"reward": mean reward, "loss": float}."""
    batch = sample_replies(model, tokenizer, examples, cfg)
    grouped = [ex for ex in examples for _ in range(cfg.group_size)]
    rewards = torch.tensor([reward_fn(t, ex) for t, ex in zip(batch["texts"], grouped)])
    adv = group_advantages(rewards.view(len(examples), cfg.group_size), cfg.normalize).flatten()
    model.train()
    logp, n_tokens = reply_logprobs(model, batch["ids"], batch["mask"], batch["T"])
    loss = -(adv.to(logp.device) * logp).sum() / n_tokens.sum().clamp_min(1)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
    optimizer.step()
    return {"reward": rewards.mean().item(), "loss": loss.item()}


def evaluate(model, tokenizer, examples, max_new_tokens: int) -> dict:
    """Greedy replies: {"accuracy": first integer right, "exact_match": whole reply right}."""
    replies = generate(model, tokenizer, examples, batch_size=64, max_new_tokens=max_new_tokens)
    lenient = [first_integer(r) == ex["answer"] for r, ex in zip(replies, examples)]
    strict = [parse_answer(r) == ex["answer"] for r, ex in zip(replies, examples)]
    return {"accuracy": sum(lenient) / len(examples), "exact_match": sum(strict) / len(examples)}


def format_warmup(model, tokenizer, cfg: RLConfig) -> dict:
    """Teach the reply format, not the skill: `format_steps` steps of supervised full fine-tuning on
    one-digit sums ("What is 3 + 4?" -> "7"), seed 0 whatever cfg.seed is, so every RL run starts from
    the same model, one that answers with a number. RL then trains on sums of two-digit numbers
    (none of which the warm-up shows). Returns {"steps", "loss_first", "loss_last"}."""
    from .tasks import batches, encode_examples
    device = next(model.parameters()).device
    torch.manual_seed(0)
    task = AdditionTask((1, 1), seed=0, system="")
    train, _ = task.make_splits(task.n_pairs(), 0)
    pad = end_token_id(tokenizer) if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    stream = batches(encode_examples(tokenizer, train), 16, seed=0, pad_id=pad)
    model.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.format_lr, weight_decay=0.0)
    losses = []
    for _ in range(cfg.format_steps):
        b = {k: v.to(device) for k, v in next(stream).items()}
        loss = model(**b).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.requires_grad_(False)
    del opt
    return {"steps": cfg.format_steps, "loss_first": losses[0], "loss_last": losses[-1]}


def prepare_policy(model, cfg: RLConfig):
    """LoRA (seeded, every linear layer) or every parameter trainable; returns the AdamW optimizer."""
    torch.manual_seed(cfg.seed)
    if cfg.method == "lora":
        apply_lora(model, "all-linear", r=cfg.rank, alpha=cfg.alpha)
    else:
        model.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)


def run_rl(model, tokenizer, cfg: RLConfig, reward_fn=sum_reward, progress: bool = True) -> dict:
    """Train `model` in place by RL; the result: config, reward curve, evals, final accuracy, time."""
    from tqdm.auto import tqdm

    task = AdditionTask(cfg.digits, seed=cfg.seed, system="")
    train, test = task.make_splits(cfg.steps * cfg.prompts_per_step, cfg.n_eval)
    warmup = format_warmup(model, tokenizer, cfg) if cfg.format_steps else None
    optimizer = prepare_policy(model, cfg)
    curve, evals = [], [{"step": 0, **evaluate(model, tokenizer, test, cfg.max_new_tokens)}]
    torch.manual_seed(cfg.seed)                                   # the sampling RNG
    t0 = time.perf_counter()
    for step in tqdm(range(1, cfg.steps + 1), desc=f"rl {cfg.method}", disable=not progress):
        batch = train[(step - 1) * cfg.prompts_per_step: step * cfg.prompts_per_step]
        curve.append({"step": step, **rl_step(model, tokenizer, optimizer, batch, cfg, reward_fn)})
        if not math.isfinite(curve[-1]["loss"]):
            raise FloatingPointError(f"rl: the loss is {curve[-1]['loss']} at step {step}; lower --lr")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            evals.append({"step": step, **evaluate(model, tokenizer, test, cfg.max_new_tokens)})
    trainable, total = count_parameters(model)
    return {"config": asdict(cfg), "format_warmup": warmup, "curve": curve, "evals": evals, "final": evals[-1],
            "trainable_params": trainable, "total_params": total,
            "train_seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- reading results (chapter 7)
def load_results(folder) -> list[dict]:
    """Every result JSON of `python -m lora_mini rl` in `folder` (e.g. figures/rl/)."""
    paths = sorted(Path(folder).glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"no rl result JSON in {folder}: run `bash scripts/gpu/rl.sh` or "
                                "`python -m lora_mini rl ... --out FOLDER/NAME.json` first")
    return [json.loads(p.read_text()) for p in paths]


def method_label(cfg: dict) -> str:
    """"full FT" or "LoRA r=<rank>" for a result's config."""
    return "full FT" if cfg["method"] == "full" else f"LoRA r={cfg['rank']}"


def final_runs(results: list[dict], key: str = "exact_match") -> list[dict]:
    """The results as brackets.bracket's runs: {method: label, lr, seed, val: final `key`, test: None}."""
    return [{"method": method_label(r["config"]), "lr": r["config"]["lr"], "seed": r["config"]["seed"],
             "val": r["final"][key], "test": None} for r in results]


def best_by_method(results: list[dict]) -> dict:
    """{label: brackets.bracket(...)}: each method's best LR by mean final exact match over seeds,
    its plateau and whether the grid brackets it (the chapter's rule)."""
    from .brackets import bracket
    runs = final_runs(results)
    return {m: bracket(runs, m) for m in sorted({r["method"] for r in runs})}


def mean_curves(results: list[dict], label: str, lr: float, window: int = 10) -> dict:
    """Mean over seeds of one method at one LR: {"steps", "reward"} (training reward, running mean
    over `window` steps), {"eval_steps", "exact_match"} (held-out, greedy), and "seeds"."""
    mine = [r for r in results if method_label(r["config"]) == label and math.isclose(r["config"]["lr"], lr)]
    if not mine:
        raise ValueError(f"no results for {label} at lr {lr:g}")
    n = min(len(r["curve"]) for r in mine)
    reward = [sum(r["curve"][i]["reward"] for r in mine) / len(mine) for i in range(n)]
    smooth = [sum(reward[max(0, i - window + 1): i + 1]) / len(reward[max(0, i - window + 1): i + 1])
              for i in range(n)]
    ev = [e["step"] for e in mine[0]["evals"]]
    em = [sum(r["evals"][k]["exact_match"] for r in mine) / len(mine) for k in range(len(ev))]
    return {"steps": list(range(1, n + 1)), "reward": smooth, "eval_steps": ev, "exact_match": em,
            "seeds": sorted(r["config"]["seed"] for r in mine)}


def plot_curves(results: list[dict], best: dict, path=None):
    """Training reward (left) and held-out exact match (right), mean over seeds, each method at its best LR."""
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, b in best.items():
        c = mean_curves(results, label, b["best_lr"])
        style = "k--" if label == "full FT" else "-"
        a1.plot(c["steps"], c["reward"], style, label=f"{label}, lr {b['best_lr']:g}")
        a2.plot(c["eval_steps"], [100 * x for x in c["exact_match"]], style, marker=".", label=label)
    a1.set(xlabel="RL step", ylabel="mean reward (running mean, 10 steps)", title="training reward")
    a2.set(xlabel="RL step", ylabel="held-out exact match (%)", title="greedy answers to 128 new sums")
    a1.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


# ----------------------------------------------------------------------------- command line
def add_arguments(p) -> None:
    d = RLConfig()
    p.add_argument("--model", default="smollm2-135m-instruct", help="a model name, or tiny (a random 2-layer model)")
    p.add_argument("--method", default=d.method, choices=["lora", "full"], help="lora or full fine-tuning")
    p.add_argument("--rank", type=int, default=d.rank, help="LoRA rank r (1 is the claim's case)")
    p.add_argument("--alpha", type=float, default=d.alpha, help="LoRA alpha (scale alpha/r)")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate")
    p.add_argument("--steps", type=int, default=d.steps, help="policy-gradient steps")
    p.add_argument("--prompts-per-step", type=int, default=d.prompts_per_step, help="prompts P per step")
    p.add_argument("--group-size", type=int, default=d.group_size, help="sampled replies G per prompt (the group baseline)")
    p.add_argument("--temperature", type=float, default=d.temperature, help="sampling temperature")
    p.add_argument("--no-normalize", action="store_true", help="advantage r - mean only (no ÷ std)")
    p.add_argument("--digits", default="1,2", help="operand digits lo,hi")
    p.add_argument("--n-eval", type=int, default=d.n_eval, help="held-out sums for the greedy evaluation")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="evaluate every N steps")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the data, the LoRA init and the sampling")
    p.add_argument("--format-steps", type=int, default=d.format_steps,
                   help="supervised warm-up steps on one-digit sums first (teaches the reply format; needs --digits 2,2 or more)")
    p.add_argument("--format-lr", type=float, default=d.format_lr, help="the warm-up's LR (full fine-tuning)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if there is one)")
    p.add_argument("--out", required=True, help="the result JSON file (written when the run ends)")


def config_from_args(args) -> RLConfig:
    try:
        digits = tuple(int(x) for x in args.digits.split(","))
    except ValueError:
        raise ValueError(f"--digits must be lo,hi such as 1,2; got {args.digits!r}") from None
    return RLConfig(method=args.method, rank=args.rank, alpha=args.alpha, lr=args.lr, steps=args.steps,
                    prompts_per_step=args.prompts_per_step, group_size=args.group_size,
                    temperature=args.temperature, normalize=not args.no_normalize,
                    digits=digits if len(digits) == 2 else digits * 2, n_eval=args.n_eval,
                    eval_every=args.eval_every, seed=args.seed, format_steps=args.format_steps,
                    format_lr=args.format_lr)


def main(args) -> int:
    from .commands import load_base
    cfg = config_from_args(args)                         # bad settings fail here, before loading
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name such as {out / 'rl.json'}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tok = load_base("tiny" if args.model == "tiny" else args.model, device, torch.float32)
    result = run_rl(model, tok, cfg)
    import sys
    from .system import code_version
    result.update(model=args.model, device=torch.cuda.get_device_name() if device == "cuda" else "cpu",
                  torch=torch.__version__, code_version=code_version(),
                  command=" ".join(["python -m lora_mini rl", *getattr(args, "argv", sys.argv[1:])]))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)                                     # never a half-written result
    f = result["final"]
    print(f"{cfg.method}{' r=' + str(cfg.rank) if cfg.method == 'lora' else ''} lr={cfg.lr}: "
          f"accuracy {result['evals'][0]['accuracy']:.1%} -> {f['accuracy']:.1%} "
          f"(exact match {f['exact_match']:.1%}) in {result['train_seconds']:.0f} s; wrote {out}")
    return 0
