"""`python -m lora_mini beyond`: chapter 8's runs. LoRA beside its alternatives and variants,
several adapters, overfitting, continual learning; writes OUT/{methods,multi,overfit}.json after
every run (default OUT: figures/beyond; with --smoke: runs/beyond_smoke).

    python -m lora_mini beyond --parts methods,multi --budget-s 430
    python -m lora_mini beyond --smoke --model tiny --methods lora,prompt --out /tmp/b   # seconds, CPU

Resumable: results already in OUT/*.json with the same settings ("config" and "lr" in the JSON)
are kept and not run again, so a second call fills in what the first one had to skip; --fresh
redoes everything.

Parts, by priority (a run starts only if the time budget, lab.budget.Budget, leaves room for it):
  methods     every method in lora_mini.variants.METHODS on the chapter-6 addition task, same
              steps and batch: accuracy, trainable params, train time, peak memory, inference
              latency unmerged vs merged, and held-out loss on general text (stdlib) -> forgetting
  multi       LoRA adapters for subtraction and digit reversal (+ the addition one from methods),
              served from one base: switched per call and mixed per row; memory
  overfit     300 training examples: train vs held-out answer loss across rank and dropout
  sequential  fine-tuning add -> sub with one LoRA and with full FT (continual learning)
Each part writes its own JSON, so parts can run side by side on several GPUs; multi and
sequential share multi.json (not both at once in two processes).

The whole configuration (BeyondConfig, with the run settings BeyondSettings) is built once from
the command line, validated before any model is loaded, and saved in every JSON ("beyond"; the
settings also as "config", the per-method LRs as "lr", as in the files chapter 8 reads).
"""
from __future__ import annotations

import copy
import json
import platform
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from ..models import DEFAULT_MODEL
from .budget import Budget
from .config import ConfigError, _choice, _int, _num

PARTS = ("methods", "multi", "overfit", "sequential")
# the order part 1 runs the methods in (by priority: a budget cuts from the end)
ORDER = ("lora", "full", "dora", "qlora", "adapter", "prompt", "rslora", "loraplus", "pissa")
# peak LR per method: chapter 6's LoRA/full LRs; the others from their papers' usual ranges
# (not swept here: one budget, one LR each, stated in the JSON)
LRS = {"full": 1e-4, "lora": 2e-3, "rslora": 2e-3, "dora": 2e-3, "loraplus": 5e-4, "pissa": 2e-4,
       "qlora": 2e-3, "adapter": 2e-3, "prompt": 3e-2}
DEFAULT_BUDGET_S, SMOKE_BUDGET_S = 430.0, 3600.0
TASK_NAMES = ("add", "sub", "rev")


@dataclass(frozen=True)
class BeyondSettings:
    """What the runs do (sizes, steps, shapes). Saved as "config" in every JSON; resuming compares it."""
    digits: tuple = (2, 3)
    n_train: int = 20000
    n_test: int = 300
    steps: int = 200
    batch_size: int = 64
    warmup_steps: int = 20
    r: int = 16
    alpha: int = 32
    eval_batch_size: int = 150
    latency_repeats: int = 30
    overfit_n_train: int = 300
    overfit_steps: int = 300
    overfit_eval_every: int = 25
    text_files: int = 30
    text_blocks: int = 48
    text_block_len: int = 256
    latency_shapes: dict = field(default_factory=lambda: {"b1_t32": (1, 32), "b64_t64": (64, 64)})
    multi_latency_shape: tuple = (48, 48)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                _int(f.name, value, low=0 if f.name == "warmup_steps" else 1)
        if len(self.digits) != 2 or not 1 <= self.digits[0] <= self.digits[1]:
            raise ConfigError(f"digits must be (low, high) with 1 <= low <= high, got {self.digits!r}")
        if self.text_block_len < 2:
            raise ConfigError(f"text_block_len must be at least 2, got {self.text_block_len}")

    @classmethod
    def smoke(cls) -> "BeyondSettings":
        """Everything shrunk for a CPU check (a few steps, tiny splits): the numbers mean nothing."""
        return cls(n_train=64, n_test=8, steps=3, batch_size=4, warmup_steps=1, eval_batch_size=8,
                   latency_repeats=2, overfit_n_train=8, overfit_steps=4, overfit_eval_every=2,
                   text_files=2, text_blocks=2, text_block_len=64,
                   latency_shapes={"b1_t8": (1, 8), "b2_t8": (2, 8)}, multi_latency_shape=(3, 8))

    def to_dict(self) -> dict:
        """JSON-ready (tuples as lists): the same dict as the "config" of the committed files."""
        return json.loads(json.dumps(asdict(self)))


@dataclass(frozen=True)
class BeyondConfig:
    """One call of `beyond`: which parts, budget, output folder, model, device; and the settings."""
    parts: tuple = PARTS
    budget_s: float | None = None          # None: DEFAULT_BUDGET_S (SMOKE_BUDGET_S with smoke)
    smoke: bool = False
    out: str | None = None                 # None: figures/beyond (runs/beyond_smoke with smoke)
    fresh: bool = False
    methods: tuple = ORDER                 # part 1's methods, in ORDER
    model: str = DEFAULT_MODEL
    device: str = "auto"
    command: str = "python -m lora_mini beyond"
    settings: BeyondSettings | None = None   # None: BeyondSettings() (BeyondSettings.smoke() with smoke)
    lr: dict = field(default_factory=lambda: dict(LRS))

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)   # noqa: E731 (frozen: fill the defaults once)
        set_("parts", _names("--parts", self.parts, PARTS))
        set_("methods", tuple(m for m in ORDER if m in _names("--methods", self.methods, ORDER)))
        if self.budget_s is None:
            set_("budget_s", SMOKE_BUDGET_S if self.smoke else DEFAULT_BUDGET_S)
        _num("--budget-s", self.budget_s, what="a positive number of seconds")
        if self.out is None:
            set_("out", "runs/beyond_smoke" if self.smoke else "figures/beyond")
        if self.settings is None:
            set_("settings", BeyondSettings.smoke() if self.smoke else BeyondSettings())
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N; got {self.device!r}")
        if not str(self.model).strip():
            raise ConfigError("--model needs a name: smollm2-135m-instruct, tiny, a .gguf file or a hub id")
        missing = sorted(set(ORDER) - set(self.lr))
        if missing:
            raise ConfigError(f"lr needs a learning rate for every method; missing {missing}")
        for name, lr in self.lr.items():
            _num(f"lr[{name!r}]", lr)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["settings"] = self.settings.to_dict()
        return json.loads(json.dumps(d))


def _names(option: str, value, allowed) -> tuple:
    """"a,b" or ("a", "b") -> ("a", "b"), each checked against `allowed`."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if not names:
        raise ConfigError(f"{option} must name at least one of {','.join(allowed)}")
    for n in names:
        _choice(option, n, allowed)
    return tuple(dict.fromkeys(names))


# ----------------------------------------------------------------------------- one call's state


@dataclass
class Run:
    """What every part shares: the config, the device, the budget and the latest time per step."""
    cfg: BeyondConfig
    device: str
    budget: Budget
    sec_per_step: float = 0.0              # 0: a first guess from the device (fits)

    @property
    def s(self) -> BeyondSettings:
        return self.cfg.settings

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def log(self, msg: str) -> None:
        print(f"[{self.budget.elapsed():6.1f}s] {msg}", flush=True)

    def fits(self, steps: int, what, skipped: list) -> bool:
        """True if `steps` training steps (+ evals) still fit the budget; else log and record a skip."""
        per_step = self.sec_per_step or (0.3 if self.cuda else 60.0)
        need = steps * per_step * 1.15 + 8
        if self.budget.fits(need):
            return True
        self.log(f"skip {what}: budget (elapsed {self.budget.elapsed():.0f}s, needs ~{need:.0f}s)")
        skipped.append(what)
        return False

    def observe(self, seconds: float, steps: int) -> None:
        """Remember the wall time per step (training + evals) of the latest run."""
        self.sec_per_step = seconds / steps


# ----------------------------------------------------------------------------- the JSON files


def header(run: Run) -> dict:
    cfg = run.cfg
    device = torch.cuda.get_device_name(torch.device(run.device)) if run.cuda else platform.processor() or "cpu"
    return {"command": cfg.command, "smoke": cfg.smoke, "config": cfg.settings.to_dict(), "lr": dict(cfg.lr),
            "device": device, "torch": torch.__version__, "python": platform.python_version(),
            "budget_s": cfg.budget_s, "model": cfg.model, "beyond": cfg.to_dict()}


def previous(run: Run, name: str) -> dict | None:
    """The JSON from an earlier call with the same settings and LRs (to resume), else None."""
    path = Path(run.cfg.out) / name
    if run.cfg.fresh or not path.exists():
        return None
    old = json.loads(path.read_text())
    now = header(run)
    if (now["config"], now["lr"]) != (old.get("config"), old.get("lr")):
        run.log(f"{name}: earlier results use other settings; starting afresh")
        return None
    return old


def start(run: Run, name: str, **empty) -> dict:
    """The results dict of one file: the earlier call's (resumed) or a new one."""
    res = previous(run, name)
    if res is None:
        res = {**header(run), **empty, "commands": []}
    else:   # files from before "commands" existed hold one "command"
        res["commands"] = res.get("commands") or [res["command"]]
    res.update({k: v for k, v in header(run).items() if k != "command"})
    res["commands"].append(run.cfg.command)
    res["command"] = run.cfg.command
    res["skipped"] = []
    return res


def write(run: Run, name: str, obj: dict) -> None:
    """OUT/name, written whole or not at all (a temporary file, then a rename)."""
    from .checkpoint import atomic_write_text
    atomic_write_text(Path(run.cfg.out) / name, json.dumps(obj, indent=1))


def check_out(out) -> None:
    """--out must be a folder that exists or can be made, and takes files: checked before any work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; name a folder (it holds methods.json, multi.json, overfit.json)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write there ({e.strerror or e}); name another folder") from None


# ----------------------------------------------------------------------------- data and evals


def task_data(run: Run, tok, name: str, n_train: int, n_test: int):
    from .finetune import SYSTEM
    from .tasks import TASKS, encode_examples
    task = TASKS[name](digits=tuple(run.s.digits), seed=0, system=SYSTEM)
    train_ex, test_ex = task.make_splits(n_train, n_test)
    return train_ex, test_ex, encode_examples(tok, train_ex)


def max_new(run: Run, name: str) -> int:
    return 2 * run.s.digits[1] + 1 if name == "rev" else run.s.digits[1] + 2


def em(run: Run, model, tok, examples, name="add") -> float:
    from .tasks import exact_match
    return exact_match(model, tok, examples, run.s.eval_batch_size, max_new(run, name))["exact_match"]


@torch.no_grad()
def answer_loss(model, encoded, pad_id) -> float:
    """Mean answer-token loss over encoded examples (eval mode, bf16 autocast on GPU)."""
    from .tasks import collate
    from .trainer import AnswerLoss
    was = model.training
    model.eval()
    lm = AnswerLoss(model)
    total = count = 0.0
    dev = next(model.parameters()).device
    for i in range(0, len(encoded), 100):
        b = {k: v.to(dev) for k, v in collate(encoded[i:i + 100], pad_id).items()}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            s, n = lm(b["input_ids"], b["attention_mask"], b["labels"])
        total += s.item()
        count += n.item()
    model.train(was)
    return total / count


def text_loss(run: Run, model, blocks) -> float:
    from .corpus import heldout_loss
    return heldout_loss(model, blocks, batch_size=16, autocast_dtype=torch.bfloat16 if run.cuda else None)


def fresh(run: Run, pristine, method: str):
    """A copy of the base: fp32 master weights for full FT, the bf16 base for everything else."""
    m = copy.deepcopy(pristine)
    if method != "full" and run.cuda:
        m = m.to(torch.bfloat16)
    return m


def thin(history, every=5):
    return [h for h in history if h["step"] % every == 0 or h["step"] == 1]


def token_ids(vocab_size: int, shape, generator, device):
    """Random token ids for latency timing: 100..4999 (SmolLM2), inside a smaller vocabulary."""
    high = min(5000, vocab_size)
    return torch.randint(min(100, high // 2), high, tuple(shape), generator=generator).to(device)


def latencies(run: Run, model, inputs: dict) -> dict:
    from ..variants import forward_latency
    return {k: forward_latency(model, x, run.s.latency_repeats) for k, x in inputs.items()}


def fit(run: Run, model, encoded, pad_id, lr, **kw) -> dict:
    """The lab's trainer (eager; bf16 autocast on a GPU for every method, as in the first runs, so
    all rows of methods.json stay comparable)."""
    from .tasks import batches
    from .trainer import train
    seed = kw.pop("seed", 0)
    steps = kw.pop("steps", run.s.steps)
    it = batches(encoded, run.s.batch_size, seed=seed, pad_id=pad_id)
    return train(model, it, steps=steps, lr=lr, warmup_steps=run.s.warmup_steps, progress=False,
                 amp=run.cuda, **kw)


def prepare(run: Run, pristine, method: str, r=None, **kw):
    """prepare_method on a fresh copy, with this call's LR, rank and alpha."""
    from ..variants import prepare_method
    r = r or run.s.r
    alpha = kw.pop("alpha", run.s.alpha)
    return prepare_method(fresh(run, pristine, method), method, lr=run.cfg.lr[method], r=r, alpha=alpha, **kw)


def _release(run: Run) -> None:
    if run.cuda:
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- 1. methods


def base_row(run: Run, pristine, tok, test_ex, blocks, lat_inputs) -> dict:
    base = fresh(run, pristine, "lora")
    row = {"exact_match": em(run, base, tok, test_ex), "text_loss": text_loss(run, base, blocks),
           "latency_s": latencies(run, base, lat_inputs)}
    run.log(f"base: exact match {row['exact_match']:.3f}, text loss {row['text_loss']:.3f}")
    return row


def method_row(run: Run, pristine, tok, method: str, data, blocks, lat_inputs):
    """Train one method; returns (row, the trained model if methods 2 and 4 reuse it else None)."""
    from ..merge import merge
    train_ex, test_ex, enc = data
    model, opt, info = prepare(run, pristine, method)
    if method == "qlora":
        info["quant_exact_match_before"] = em(run, model, tok, test_ex)
    out = fit(run, model, enc, tok.pad_token_id, run.cfg.lr[method], optimizer=opt)
    steps = run.s.steps
    hist = out["history"]
    row = {**info, "lr": run.cfg.lr[method], "steps": steps, "train_seconds": out["train_seconds"],
           "step_ms": 1000 * out["train_seconds"] / steps, "tokens_per_s": out["tokens_per_s"],
           "peak_mem_gib": out["peak_mem_gib"],
           "final_loss": sum(h["loss"] for h in hist[-10:]) / 10 if len(hist) >= 10 else hist[-1]["loss"],
           "history": thin(hist)}
    row["exact_match"] = em(run, model, tok, test_ex)
    row["text_loss"] = text_loss(run, model, blocks)
    if method != "full":   # full FT's model is the base model (its latency is the base's)
        row["latency_s"] = latencies(run, model, lat_inputs)
    keep = method in ("lora", "full")          # kept for several adapters (2.) and continual learning (4.)
    if info["can_merge"] and method != "full":
        merged = copy.deepcopy(model) if keep else model   # the unmerged LoRA goes on to part 2
        merge(merged)
        row["merged_exact_match"] = em(run, merged, tok, test_ex)
        row["latency_merged_s"] = latencies(run, merged, lat_inputs)
        del merged
    return row, (model if keep else None)


def run_methods(run: Run, pristine, tok, data, blocks, results) -> dict:
    """Part 1: every method of --methods not yet in results; returns the LoRA and full FT models."""
    import time
    g = torch.Generator().manual_seed(0)
    vocab = pristine.config.vocab_size
    lat_inputs = {k: token_ids(vocab, shape, g, run.device) for k, shape in run.s.latency_shapes.items()}
    if "base" not in results:
        results["base"] = base_row(run, pristine, tok, data[1], blocks, lat_inputs)
        write(run, "methods.json", results)
    kept = {}
    done = {r["method"] for r in results["runs"]}
    for method in run.cfg.methods:
        if method in done or not run.fits(run.s.steps, method, results["skipped"]):
            continue
        t_start = time.time()
        row, model = method_row(run, pristine, tok, method, data, blocks, lat_inputs)
        if model is not None:
            kept[method] = model
        del model
        _release(run)
        per_run = time.time() - t_start
        run.observe(per_run, run.s.steps)
        row["wall_seconds"] = per_run
        row["command"] = run.cfg.command
        results["runs"].append(row)
        write(run, "methods.json", results)
        run.log(f"{method:8s} trainable {row['trainable']:>11,}  step {row['step_ms']:6.1f} ms  exact match "
                f"{row['exact_match']:.3f}  text loss {row['text_loss']:.3f}  ({per_run:.0f}s)")
    return kept


# ----------------------------------------------------------------------------- 2. several adapters


def train_adapters(run: Run, pristine, tok, splits, todo) -> tuple[dict, dict]:
    """One LoRA per task in `todo`: ({task: adapter state}, {task: single-model results})."""
    import time
    from ..multi import lora_state
    states, singles = {}, {}
    for name in todo:
        t0 = time.time()
        model, _, _ = prepare(run, pristine, "lora")
        out = fit(run, model, splits[name][2], tok.pad_token_id, run.cfg.lr["lora"])
        states[name] = lora_state(model)
        singles[name] = {"exact_match": em(run, model, tok, splits[name][1], name),
                         "train_seconds": out["train_seconds"]}
        run.observe(time.time() - t0, run.s.steps)
        run.log(f"adapter {name}: exact match {singles[name]['exact_match']:.3f}")
        del model
    return states, singles


def mixed_batch(run: Run, multi, tok, splits, names) -> dict:
    """One batch with rows of every task interleaved, each row through its own adapter."""
    import time
    from ..multi import use_adapter
    from .tasks import generate, parse_answer
    mixed, idx = [], []
    for i in range(run.s.n_test):
        for k, name in enumerate(names):
            mixed.append(splits[name][1][i])
            idx.append(k)
    answers = []
    bs = len(names) * (run.s.eval_batch_size // len(names))
    t = time.time()
    for i in range(0, len(mixed), bs):
        with use_adapter(multi, torch.tensor(idx[i:i + bs])):
            answers += generate(multi, tok, mixed[i:i + bs], bs, max_new(run, "rev"))
    seconds = time.time() - t
    right = {name: sum(parse_answer(a) == ex["answer"] for a, ex, j in zip(answers, mixed, idx) if j == k)
             / run.s.n_test for k, name in enumerate(names)}
    return {"mixed_seconds": seconds, "mixed": right, "mixed_batch_size": bs}


def multi_latency(run: Run, multi, vocab_size: int) -> dict:
    from ..multi import use_adapter
    from ..variants import forward_latency
    g = torch.Generator().manual_seed(0)
    b, t = run.s.multi_latency_shape
    x = token_ids(vocab_size, (b, t), g, run.device)
    lat = {}
    for label, index in [("base", None), ("one_adapter", 0), ("mixed_rows", torch.arange(b) % 3)]:
        with use_adapter(multi, index):
            lat[label] = forward_latency(multi, x, run.s.latency_repeats)
    return {"latency_s": lat, "latency_shape": [b, t]}


def run_multi(run: Run, pristine, tok, kept, results) -> None:
    """Part 2: three LoRAs on one base, switched per call and mixed per row."""
    from ..multi import apply_multi_lora, lora_state, parameter_bytes, use_adapter
    if "multi" in results:
        return
    names = list(TASK_NAMES)
    splits = {name: task_data(run, tok, name, run.s.n_train, run.s.n_test) for name in names}
    have = {"add": lora_state(kept["lora"])} if "lora" in kept else {}
    todo = [n for n in names if n not in have]
    if not run.fits(len(todo) * run.s.steps, "multi", results["skipped"]):
        return
    states, singles = train_adapters(run, pristine, tok, splits, todo)
    states.update(have)
    base = fresh(run, pristine, "lora")
    base_bytes = parameter_bytes(base)
    multi = apply_multi_lora(base, [states[n] for n in names])
    res = {"tasks": names, "single_model_exact_match": singles,
           "base_bytes": base_bytes, "multi_bytes": parameter_bytes(multi),
           "separate_models_bytes": len(names) * base_bytes, "switched": {}, "base_model": {}}
    for k, name in enumerate(names):
        with use_adapter(multi, k):
            res["switched"][name] = em(run, multi, tok, splits[name][1], name)
        with use_adapter(multi, None):
            res["base_model"][name] = em(run, multi, tok, splits[name][1], name)
    res.update(mixed_batch(run, multi, tok, splits, names))
    res.update(multi_latency(run, multi, pristine.config.vocab_size))
    results["multi"] = res
    write(run, "multi.json", results)
    run.log(f"multi: switched {res['switched']}  mixed {res['mixed']}  bytes {res['multi_bytes']/2**20:.0f} MiB vs "
            f"{res['separate_models_bytes']/2**20:.0f} MiB")


# ----------------------------------------------------------------------------- 3. overfitting

OVERFIT_GRID = (dict(method="lora", r=4, dropout=0.0), dict(method="lora", r=64, dropout=0.0),
                dict(method="lora", r=64, dropout=0.1), dict(method="lora", r=4, dropout=0.1),
                dict(method="full", r=None, dropout=0.0), dict(method="lora", r=64, dropout=0.0, weight_decay=0.1))


def overfit_row(run: Run, pristine, tok, g: dict, data, enc_test) -> dict:
    train_ex, test_ex, enc = data
    pad = tok.pad_token_id
    method, r = g["method"], g["r"]
    model, _, info = prepare(run, pristine, method, r=r or 16, alpha=2 * (r or 16), dropout=g["dropout"])

    def evaluate(m):
        return {"train_loss": answer_loss(m, enc, pad), "test_loss": answer_loss(m, enc_test, pad)}

    out = fit(run, model, enc, pad, run.cfg.lr[method], steps=run.s.overfit_steps,
              weight_decay=g.get("weight_decay", 0.0), eval_fn=evaluate, eval_every=run.s.overfit_eval_every)
    row = {**g, "alpha": 2 * r if r else None, "lr": run.cfg.lr[method], "trainable": info["trainable"],
           "n_train": run.s.overfit_n_train, "steps": run.s.overfit_steps, "evals": out["evals"],
           "history": thin(out["history"]), "exact_match_test": em(run, model, tok, test_ex),
           "exact_match_train": em(run, model, tok, train_ex[:run.s.n_test]), "command": run.cfg.command}
    return row


def run_overfit(run: Run, pristine, tok, results) -> None:
    """Part 3: 300 training examples, train vs held-out answer loss across rank, dropout, decay."""
    import time
    from .tasks import encode_examples
    data = task_data(run, tok, "add", run.s.overfit_n_train, run.s.n_test)
    enc_test = encode_examples(tok, data[1])
    done = [{k: r[k] for k in g} for r in results["runs"] for g in OVERFIT_GRID
            if all(r.get(k) == v for k, v in g.items())]
    for g in OVERFIT_GRID:
        if g in done or not run.fits(run.s.overfit_steps, g, results["skipped"]):
            continue
        t = time.time()
        row = overfit_row(run, pristine, tok, g, data, enc_test)
        results["runs"].append(row)
        write(run, "overfit.json", results)
        per_run = time.time() - t
        run.observe(per_run, run.s.overfit_steps)
        curve = row["evals"]
        run.log(f"overfit {g}: train loss {curve[-1]['train_loss']:.3f} test loss {curve[-1]['test_loss']:.3f} "
                f"min test {min(e['test_loss'] for e in curve):.3f}  EM train {row['exact_match_train']:.2f} "
                f"test {row['exact_match_test']:.2f} ({per_run:.0f}s)")
        _release(run)


# ----------------------------------------------------------------------------- 4. continual learning


def run_sequential(run: Run, pristine, tok, kept, blocks, results) -> None:
    """Part 4: train on addition, then keep training the same weights on subtraction: does addition survive?"""
    import time
    splits = {name: task_data(run, tok, name, run.s.n_train, run.s.n_test) for name in ("add", "sub")}
    seq = results.setdefault("sequential", {})

    def scores(model):
        return {"add": em(run, model, tok, splits["add"][1], "add"), "sub": em(run, model, tok, splits["sub"][1], "sub"),
                "text_loss": text_loss(run, model, blocks)}

    for method in ("lora", "full"):
        steps = run.s.steps * (1 if method in kept else 2)
        if method in seq or not run.fits(steps, f"sequential_{method}", results["skipped"]):
            continue
        t0 = time.time()
        if method in kept:
            model = kept.pop(method)
        else:   # the addition run of part 1 was in an earlier call: train it again (same seed)
            model, _, _ = prepare(run, pristine, method)
            fit(run, model, splits["add"][2], tok.pad_token_id, run.cfg.lr[method])
        before = scores(model)
        fit(run, model, splits["sub"][2], tok.pad_token_id, run.cfg.lr[method], seed=1)
        after = scores(model)
        seq[method] = {"after_add": before, "after_add_then_sub": after, "command": run.cfg.command}
        run.observe(time.time() - t0, steps)
        run.log(f"sequential {method}: add {before['add']:.3f} -> {after['add']:.3f}, sub {before['sub']:.3f} -> "
                f"{after['sub']:.3f}")
        del model
        write(run, "multi.json", results)


# ----------------------------------------------------------------------------- the whole call


def resolve_device(device: str) -> str:
    """"auto" -> cuda if a GPU is visible, else cpu; a named device is checked (lab.system)."""
    from .system import check_device
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    return device


def load(run: Run):
    """(pristine float32 model, tokenizer, held-out text blocks, corpus info)."""
    from .commands import load_base
    from .corpus import build_corpus, to_blocks
    pristine, tok = load_base(run.cfg.model, run.device, torch.float32)
    run.log("model loaded")
    corpus = build_corpus(tok, max_files=run.s.text_files)
    blocks = to_blocks(corpus["heldout"], run.s.text_block_len)[:run.s.text_blocks]
    run.log(f"general text: {len(blocks)} held-out blocks of {run.s.text_block_len} tokens "
            f"({corpus['info']['heldout_files']} stdlib files)")
    return pristine, tok, blocks, {**corpus["info"], "blocks": len(blocks)}


def run_beyond(cfg: BeyondConfig) -> dict:
    """Run the parts of `cfg` inside its budget; returns {file name: results dict} as written."""
    run = Run(cfg, resolve_device(cfg.device), Budget(cfg.budget_s))
    torch.manual_seed(0)
    run.log(f"device {run.device}, smoke={cfg.smoke}, budget {cfg.budget_s:.0f}s, parts {','.join(cfg.parts)}")
    pristine, tok, blocks, text_info = load(run)
    written, kept = {}, {}
    if "methods" in cfg.parts:
        methods = start(run, "methods.json", runs=[])
        methods["text"] = text_info
        data = task_data(run, tok, "add", run.s.n_train, run.s.n_test)
        kept = run_methods(run, pristine, tok, data, blocks, methods)
        written["methods.json"] = methods
    if "multi" in cfg.parts or "sequential" in cfg.parts:
        multi = written["multi.json"] = start(run, "multi.json")
        if "multi" in cfg.parts:
            run_multi(run, pristine, tok, kept, multi)
    if "overfit" in cfg.parts:
        overfit = written["overfit.json"] = start(run, "overfit.json", runs=[])
        run_overfit(run, pristine, tok, overfit)
    if "sequential" in cfg.parts:      # last: it trains on the models that parts 1 and 2 kept
        run_sequential(run, pristine, tok, kept, blocks, written["multi.json"])
    for name, obj in written.items():
        obj["finished_at_s"] = run.budget.elapsed()
        write(run, name, obj)
    run.log("done")
    return written


# ----------------------------------------------------------------------------- command line


def add_arguments(p) -> None:
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {','.join(PARTS)} (default: all)")
    p.add_argument("--methods", default=",".join(ORDER), help="part 'methods' only: a comma list of "
                   f"{','.join(ORDER)} (default: all, in that order)")
    p.add_argument("--budget-s", type=float, default=None,
                   help=f"start a run only if it should end within this many seconds of the start "
                        f"(default {DEFAULT_BUDGET_S:g}; {SMOKE_BUDGET_S:g} with --smoke)")
    p.add_argument("--smoke", action="store_true", help="tiny settings (a few steps, small splits): a CPU check "
                   "of the code path, its numbers mean nothing")
    p.add_argument("--out", default=None, help="folder for methods.json, multi.json, overfit.json "
                   "(default figures/beyond; runs/beyond_smoke with --smoke)")
    p.add_argument("--fresh", action="store_true", help="ignore earlier results in --out and redo every run")
    p.add_argument("--model", default=DEFAULT_MODEL, help="smollm2-135m-instruct (default), a .gguf file, a hub id, "
                   "or tiny (a random 2-layer model with a character tokenizer)")
    p.add_argument("--device", default="auto", help="auto (default: cuda if visible), cpu, cuda or cuda:N")


def command_line(argv) -> str:
    return " ".join(["python -m lora_mini beyond", *argv])


def config_from_args(args) -> BeyondConfig:
    argv = getattr(args, "argv", None)
    return BeyondConfig(parts=args.parts, methods=args.methods, budget_s=args.budget_s, smoke=args.smoke,
                        out=args.out, fresh=args.fresh, model=args.model, device=args.device,
                        command=command_line(sys.argv[1:] if argv is None else argv))


def main(args) -> int:
    cfg = config_from_args(args)            # every setting checked before anything loads
    resolve_device(cfg.device)
    check_out(cfg.out)
    written = run_beyond(cfg)
    for name, obj in written.items():
        skipped = f", skipped for time: {obj['skipped']}" if obj["skipped"] else ""
        print(f"wrote {Path(cfg.out) / name}{skipped}")
    return 0


if __name__ == "__main__":   # python -m lora_mini.lab.beyond ... (the same as python -m lora_mini beyond ...)
    from lora_mini.__main__ import main as _cli
    sys.exit(_cli(["beyond", *sys.argv[1:]]))
