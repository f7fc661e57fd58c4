"""`python -m lora_mini sweep`: grids of training runs (method × rank × LR × layers × batch) -> JSONL.

    python -m lora_mini sweep --plan regret_a --out figures/without_regret/regret_a.jsonl --budget-s 420
    python -m lora_mini sweep --methods full,lora --ranks 4,16 --lrs 1e-4,1e-3 --steps 100 --out x.jsonl

One run = one config (a plain, validated dict, see `make_config`; its canonical JSON is the run's
identity) trained with `lora_mini.lab.trainer.train` on the stdlib corpus (`lora_mini.lab.corpus`);
its record (config, final and curve of train / held-out loss, time, corpus info, command, and the
sweep call's own SweepConfig as "sweep") is appended as one JSON line as soon as it finishes. A
config already present in any *.jsonl of the output folder is never run again, so a sweep can be
stopped and resumed, and GPU time is never spent twice. The time budget is the lab's Budget.

A plan is a list of groups run in priority order; a group is a list of conditions (a config
without its LR) and a way to choose LRs:
  "search"  bracket the best LR on a half-decade grid: start, one step down, one step up, then
            keep stepping toward the better side until the best LR has a worse neighbour each side;
  "best_of" one run at the best LR already found for another condition (e.g. the LR sweep's).
Conditions of a group take turns (one run each per round), so a time budget cuts every condition
a little rather than one completely. Before each run the runner estimates its time from measured
step times and skips it if it would not end before the budget.
"""
from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..models import DEFAULT_MODEL
from .budget import Budget
from .config import ConfigError, _choice, _int, _num
from .system import code_version

LR_GRID = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
LAYERS = {"all": "all-linear", "attn": ["q_proj", "k_proj", "v_proj", "o_proj"],
          "mlp": ["gate_proj", "up_proj", "down_proj"]}
SAVE_MODULES = ("q_proj", "v_proj")      # adapters kept for the subspace analysis (Hu et al. §7)
SAVE_LAYERS = (0, 6, 12, 18, 24, 29)     # which transformer blocks (clipped to the model's depth)
DEFAULTS = dict(method="lora", rank=None, alpha=32.0, layers="all", lr=None, batch_size=32,
                block_size=256, steps=200, warmup_steps=10, schedule="constant", weight_decay=0.0,
                grad_clip=1.0, seed=0, save=False, model="smollm2-135m-instruct", data="stdlib")


def make_config(**kw) -> dict:
    """A full run config: DEFAULTS updated by kw. Raises on unknown keys or bad values."""
    unknown = set(kw) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **kw}
    if cfg["method"] not in ("lora", "full"):
        raise ValueError(f"method must be 'lora' or 'full', got {cfg['method']!r}")
    if cfg["method"] == "lora" and not (isinstance(cfg["rank"], int) and cfg["rank"] >= 1):
        raise ValueError(f"a LoRA config needs rank >= 1, got {cfg['rank']!r}")
    if cfg["method"] == "full":
        cfg.update(rank=None, alpha=None, layers="all")
    if cfg["layers"] not in LAYERS:
        raise ValueError(f"layers must be one of {sorted(LAYERS)}, got {cfg['layers']!r}")
    return cfg


def config_key(cfg: dict) -> str:
    """The identity of a run: its config as canonical JSON (floats rounded to 6 significant digits)."""
    norm = {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in cfg.items()}
    return json.dumps(norm, sort_keys=True)


def condition_of(cfg: dict) -> str:
    """The config without its LR (what an LR search varies)."""
    return config_key({k: v for k, v in cfg.items() if k != "lr"})


def load_records(paths) -> list[dict]:
    """All records of the given .jsonl files or folders (every *.jsonl inside)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = []
    for p in map(Path, paths):
        files += sorted(p.glob("*.jsonl")) if p.is_dir() else [p] if p.is_file() else []
    out = []
    for f in files:
        for line in f.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def final_loss(rec: dict) -> float:
    """The number LR searches minimise: final held-out loss (inf if the run diverged)."""
    x = rec["final"]["heldout_loss"]
    return x if x is not None and math.isfinite(x) and not rec.get("diverged") else math.inf


def lr_results(records: list[dict], cond: str) -> dict[float, float]:
    """{lr: final held-out loss} of the records whose config matches condition `cond`."""
    return {r["config"]["lr"]: final_loss(r) for r in records if condition_of(r["config"]) == cond}


def _grid_index(lr: float, grid) -> int:
    return min(range(len(grid)), key=lambda i: abs(math.log(grid[i] / lr)))


def next_lr(results: dict[float, float], start: float, grid=LR_GRID, max_runs: int = 7):
    """The next LR a bracket search should try, or None when the best LR is bracketed (or the
    search is at the grid's end or has used max_runs). results: {lr: loss}, lr values from grid."""
    done = {_grid_index(lr, grid): loss for lr, loss in results.items()}
    i0 = _grid_index(start, grid)
    for i in (i0, i0 - 1, i0 + 1):
        if 0 <= i < len(grid) and i not in done:
            return grid[i]
    if len(done) >= max_runs:
        return None
    tried = sorted(done)
    best = min(tried, key=lambda i: (done[i], i))
    if best == tried[0] and best > 0:
        return grid[best - 1]
    if best == tried[-1] and best + 1 < len(grid):
        return grid[best + 1]
    return None


def best_lr(records: list[dict], cond: str):
    """The grid LR with the lowest final held-out loss for a condition, or None if none ran."""
    res = {lr: loss for lr, loss in lr_results(records, cond).items() if math.isfinite(loss)}
    return min(res, key=res.get) if res else None


# --------------------------------------------------------------------------- plans
def group(name, conditions, lrs="search", start=None, lr_of=None, fallback_lr=1e-3, start_of=None):
    """A group of conditions. lrs="search" (bracket search from `start`, an LR or a function of the
    condition; with start_of, from the best LR already recorded for the condition start_of(cond) if
    there is one), "best_of" (the best LR found for the condition lr_of(cond)), "around" (the LRs
    QUARTER around the best LR recorded for the condition itself: a finer grid once the half-decade
    search has bracketed it), or a list of LRs."""
    return dict(name=name, conditions=conditions, lrs=lrs, start=start, lr_of=lr_of, fallback_lr=fallback_lr,
                start_of=start_of)


QUARTER = (10 ** -0.25, 10 ** 0.25)      # the quarter-decade neighbours of a bracketed optimum


def on_grid(lr: float, grid=LR_GRID) -> bool:
    """Is lr one of the half-decade grid's values (not a quarter-decade point in between)?"""
    return any(abs(math.log(lr / g)) < 1e-3 for g in grid)


def _start(c):
    return 1e-4 if c["method"] == "full" else 1e-3


def plan_regret_a(scale=None) -> list[dict]:
    """Claims 1, 2 (LR sweeps: full FT and LoRA r = 1..256), 6-7 (adapters at r = 8, 64), 3 (one epoch)."""
    s = scale or (lambda c: c)
    sweep = [make_config(**s(dict(method="full")))] + [
        make_config(**s(dict(method="lora", rank=r))) for r in (16, 64, 1, 4, 256)]
    lr64 = lambda c: condition_of(make_config(**s(dict(method="lora", rank=64))))
    subspace = [make_config(**s(dict(method="lora", rank=8, save=True))),
                make_config(**s(dict(method="lora", rank=64, save=True))),
                make_config(**s(dict(method="lora", rank=64, save=True, seed=1)))]
    epoch = [make_config(**s(dict(method=m, rank=r, steps=270))) for m, r in
             (("full", None), ("lora", 1), ("lora", 4), ("lora", 16), ("lora", 64), ("lora", 256))]
    same_short = lambda c: condition_of({**c, "steps": sweep[0]["steps"]})
    return [group("lr_sweep", sweep, "search", start=_start),
            group("subspace", subspace, "best_of", lr_of=lr64),
            group("capacity", epoch, "best_of", lr_of=same_short)]


def plan_regret_b(scale=None) -> list[dict]:
    """Claims 4 (attention vs MLP vs all at matched parameters), 5 (batch size)."""
    s = scale or (lambda c: c)
    lora64 = condition_of(make_config(**s(dict(method="lora", rank=64))))
    # per layer of SmolLM2: attention r·3840, MLP r·6336, all r·10176 -> r = 64, 39, 24 ≈ 245k each
    layers = [make_config(**s(dict(method="lora", layers=L, rank=r))) for L, r in
              (("attn", 64), ("mlp", 39), ("all", 24))]
    bs = []
    for b in (128, 8):   # 6400 sequences each, as the batch-32 LR sweep (200 steps)
        for m, r in (("full", None), ("lora", 64)):
            bs.append(make_config(**s(dict(method=m, rank=r, batch_size=b, steps=200 * 32 // b))))
    def batch32(c):   # the same method at batch 32 (the LR sweep of plan a): its best LR starts the search
        return condition_of(make_config(**s(dict(method=c["method"], rank=c["rank"], batch_size=32, steps=200))))
    return [group("layers", layers, "search", start=1e-3, start_of=lambda c: lora64),
            group("batch", bs, "search", start=_start, start_of=batch32)]


def plan_regret_c(scale=None) -> list[dict]:
    """Second seeds and the missing cells: claim 6 (r = 8 and r = 64 adapters, seed 1), claims 1-2
    (every method's LR search again at seed 1, then the quarter-decade points around each bracketed
    optimum, both seeds), claim 5 (batch 8, 32, 128 at equal sequences seen x {full FT, r = 4, r = 64},
    each cell's own LR search, seeds 0 and 1). Cheap groups first; batch 8 (800 steps a run) last."""
    s = scale or (lambda c: c)
    cfg = lambda **kw: make_config(**s(dict(kw)))
    methods = [("full", None), ("lora", 1), ("lora", 4), ("lora", 16), ("lora", 64), ("lora", 256)]
    lr64 = lambda c: condition_of(cfg(method="lora", rank=64))
    subspace = [cfg(method="lora", rank=r, save=True, seed=1) for r in (8, 64)]
    seed0 = lambda c: condition_of({**c, "seed": 0})
    lr_seed1 = [cfg(method=m, rank=r, seed=1) for m, r in methods]
    quarter = [cfg(method=m, rank=r, seed=seed) for seed in (0, 1) for m, r in methods]

    def batch_cells(b):
        return [cfg(method=m, rank=r, batch_size=b, steps=200 * 32 // b, seed=seed)
                for seed in (0, 1) for m, r in (("full", None), ("lora", 4), ("lora", 64))]

    def from_seed0_or_batch32(c):   # seed 1 starts at seed 0's optimum; seed 0 at batch 32's
        if c["seed"] == 1:
            return seed0(c)
        return condition_of(cfg(method=c["method"], rank=c["rank"]))
    return [group("subspace", subspace, "best_of", lr_of=lr64),
            group("lr_sweep", lr_seed1, "search", start=_start, start_of=seed0),
            group("batch", batch_cells(128), "search", start=_start, start_of=from_seed0_or_batch32),
            group("lr_quarter", quarter, "around"),
            group("batch", batch_cells(8), "search", start=_start, start_of=from_seed0_or_batch32)]


PLANS = {"regret_a": plan_regret_a, "regret_b": plan_regret_b, "regret_c": plan_regret_c}


def family(cfg: dict) -> tuple:
    """Runs that depend on each other's results (seeds, LRs, quarter points of one method at one batch)."""
    return (cfg["method"], cfg["rank"] or 0, cfg["layers"], cfg["batch_size"], cfg["save"])


def _cost(g: dict, cfg: dict) -> float:
    runs = {"best_of": 1.0, "around": 2.0}.get(g["lrs"], 3.5 if g["lrs"] == "search" else len(g["lrs"]))
    return runs * cfg["steps"] * max(1.0, cfg["batch_size"] / 32)


def plan_part(groups: list[dict], part: int, parts: int) -> list[dict]:
    """The share of a plan that process `part` of `parts` runs side by side with the others: whole
    families (see family), dealt out largest first to the least loaded part, so no run waits for a
    result that another process is making."""
    cost: dict[tuple, float] = {}
    for g in groups:
        for c in g["conditions"]:
            cost[family(c)] = cost.get(family(c), 0.0) + _cost(g, c)
    load, owner = [0.0] * parts, {}
    for fam in sorted(cost, key=lambda f: (-cost[f], str(f))):
        i = min(range(parts), key=lambda j: (load[j], j))
        owner[fam], load[i] = i, load[i] + cost[fam]
    return [{**g, "conditions": [c for c in g["conditions"] if owner[family(c)] == part]} for g in groups]


def smoke_scale(c: dict) -> dict:
    """Shrink a config for a CPU smoke run (tiny model, byte corpus, a few steps)."""
    c = dict(c)
    c["batch_size"] = max(2, c.get("batch_size", DEFAULTS["batch_size"]) // 8)
    c["steps"] = max(2, c.get("steps", DEFAULTS["steps"]) // 50)
    c["block_size"] = 32
    c["warmup_steps"] = 1
    c["model"] = "tiny-llama"
    c["data"] = "stdlib-small"
    return c


# --------------------------------------------------------------------------- running
class RunContext:
    """What every run shares: the base model (pristine, on the device), the corpus, step times."""

    def __init__(self, model_name: str, data: str, device: str | None = None, heldout_blocks: int = 128):
        from .corpus import build_corpus
        from ..models import load_model, tiny_model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.cuda = self.device.startswith("cuda")
        self.amp = torch.bfloat16 if self.cuda else None       # autocast dtype for matmuls
        self.lora_base_dtype = torch.bfloat16 if self.cuda else torch.float32
        if model_name.startswith("tiny-"):
            self.model, tok = tiny_model(model_name[5:]).to(self.device), None
        else:
            self.model, tok = load_model(model_name, device=self.device, dtype=torch.float32)
        self.model.requires_grad_(False)
        self.model_name, self.data = model_name, data
        cache = Path(__file__).resolve().parents[2] / "runs" / "cache"   # the repository's runs/ (git-ignored)
        self.corpus = build_corpus(tok, max_files=20 if data == "stdlib-small" else None, cache_dir=cache)
        self.n_heldout = heldout_blocks if data == "stdlib" else 8
        self.step_s: dict[tuple, float] = {}     # (method, tokens per step) -> seconds per step
        self._init_loss: dict[int, float] = {}

    def blocks(self, block_size: int):
        from .corpus import to_blocks
        return (to_blocks(self.corpus["train"], block_size),
                to_blocks(self.corpus["heldout"], block_size)[: self.n_heldout])

    def heldout(self, model, block_size: int) -> float:
        from .corpus import heldout_loss
        return heldout_loss(model, self.blocks(block_size)[1], batch_size=64, autocast_dtype=self.amp)

    def init_loss(self, block_size: int) -> float:
        if block_size not in self._init_loss:
            self._init_loss[block_size] = self.heldout(self.model, block_size)
        return self._init_loss[block_size]

    def estimate_s(self, cfg: dict) -> float | None:
        """Seconds a run should take, from measured step times (None before any measurement).
        Smaller batches are assumed as slow per step as the nearest measured one (overhead-bound)."""
        tokens = cfg["batch_size"] * cfg["block_size"]
        known = [(k[1], v) for k, v in self.step_s.items() if k[0] == cfg["method"]] or \
                [(k[1], v) for k, v in self.step_s.items()]
        if not known:
            return None
        t, s = min(known, key=lambda kv: abs(math.log(kv[0] / tokens)))
        return cfg["steps"] * s * max(1.0, tokens / t) * 1.15 + 3.0


def build_model(S: RunContext, cfg: dict):
    """A fresh copy of the base model set up for cfg: full FT (all of W trains, fp32 master weights)
    or LoRA on cfg["layers"] (W frozen, bf16 on GPU; A, B fp32). Seeds A's init with cfg["seed"]."""
    from ..inject import apply_lora
    torch.manual_seed(cfg["seed"])
    model = copy.deepcopy(S.model)
    if cfg["method"] == "full":
        model.requires_grad_(True)
    else:
        model.to(S.lora_base_dtype)
        apply_lora(model, LAYERS[cfg["layers"]], r=cfg["rank"], alpha=cfg["alpha"])
    return model


def save_adapter_subset(model, path: Path) -> None:
    """A (r × in) and B (out × r) of SAVE_MODULES in SAVE_LAYERS, bf16, as safetensors."""
    from safetensors.torch import save_file
    from ..inject import lora_modules
    n_layers = model.config.num_hidden_layers
    keep = {min(i, n_layers - 1) for i in SAVE_LAYERS}
    tensors = {}
    for name, m in lora_modules(model).items():
        parts = name.split(".")
        idx = next((int(p) for p in parts if p.isdigit()), None)
        if parts[-1] in SAVE_MODULES and idx in keep:
            tensors[f"{name}.lora_A"] = m.lora_A.detach().to("cpu", torch.bfloat16).contiguous()
            tensors[f"{name}.lora_B"] = m.lora_B.detach().to("cpu", torch.bfloat16).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"scaling": str(next(iter(lora_modules(model).values())).scaling)})


def run_one(S: RunContext, cfg: dict, out_dir: Path | None = None) -> dict:
    """Train one config and return its record (a plain dict, JSON-ready)."""
    from .corpus import block_batches
    from ..inject import count_parameters
    from .trainer import train
    train_blocks, _ = S.blocks(cfg["block_size"])
    init = None
    model = build_model(S, cfg)
    trainable, _ = count_parameters(model)
    eval_every = max(1, cfg["steps"] // 8)

    def eval_fn(m):
        return {"heldout_loss": S.heldout(m, cfg["block_size"])}

    t_start = time.time()
    out = train(model, block_batches(train_blocks, cfg["batch_size"], seed=cfg["seed"]),
                steps=cfg["steps"], lr=cfg["lr"], warmup_steps=cfg["warmup_steps"],
                schedule=cfg["schedule"], weight_decay=cfg["weight_decay"], grad_clip=cfg["grad_clip"],
                eval_fn=eval_fn, eval_every=eval_every, log_every=max(1, cfg["steps"] // 10),
                progress=False, amp=S.amp is not None)
    hist, evals = out["history"], out["evals"]
    if not evals or evals[0]["step"] != 0:
        evals = [{"step": 0, "heldout_loss": S.init_loss(cfg["block_size"])}] + evals
    tail = [h["loss"] for h in hist[-max(1, len(hist) // 10):]]
    final_train = sum(tail) / len(tail)
    final_held = evals[-1]["heldout_loss"]
    init = evals[0]["heldout_loss"]
    diverged = not (math.isfinite(final_held) and math.isfinite(final_train)) or final_held > init + 1.0
    rec = {"config": cfg, "key": config_key(cfg), "trainable_params": trainable,
           "final": {"train_loss": final_train, "heldout_loss": final_held},
           "heldout_loss_init": init, "diverged": diverged,
           "curve": {"step": [h["step"] for h in hist], "train_loss": [round(h["loss"], 5) for h in hist],
                     "eval_step": [e["step"] for e in evals],
                     "heldout_loss": [round(e["heldout_loss"], 5) for e in evals]},
           "train_seconds": out["train_seconds"], "seconds_per_step": out["train_seconds"] / cfg["steps"],
           "wall_seconds": time.time() - t_start,
           "tokens_per_s": out.get("tokens_per_s"), "peak_mem_gib": out.get("peak_mem_gib"),
           "corpus": S.corpus["info"], "device": torch.cuda.get_device_name() if S.cuda else "cpu",
           "torch": torch.__version__}
    if cfg["save"] and cfg["method"] == "lora" and out_dir is not None:
        name = f"r{cfg['rank']}_{cfg['layers']}_lr{cfg['lr']:g}_s{cfg['seed']}_b{cfg['batch_size']}.safetensors"
        save_adapter_subset(model, out_dir / "adapters" / name)
        rec["adapter_file"] = f"adapters/{name}"
    S.step_s[(cfg["method"], cfg["batch_size"] * cfg["block_size"])] = rec["wall_seconds"] / cfg["steps"]
    del model
    if S.cuda:
        torch.cuda.empty_cache()
    return rec


def _describe(cfg: dict) -> str:
    what = "full FT" if cfg["method"] == "full" else f"LoRA r={cfg['rank']} {cfg['layers']}"
    return f"{what} lr={cfg['lr']:g} batch={cfg['batch_size']} steps={cfg['steps']} seed={cfg['seed']}"


def search_start(g: dict, cond: dict, records: list[dict]) -> float:
    """Where a group's LR search starts for a condition: the recorded best LR of g["start_of"](cond)
    if there is one, else g["start"] (an LR or a function of the condition), else _start(cond)."""
    if g.get("start_of") is not None:
        lr = best_lr(records, g["start_of"](cond))
        if lr is not None:
            return lr
    start = g["start"]
    return start(cond) if callable(start) else (start or _start(cond))


def next_config(g: dict, cond: dict, records: list[dict], done: set) -> tuple[dict | None, bool]:
    """(the next config to run for a condition of group g, or None; whether the condition is finished)."""
    if g["lrs"] == "search":
        grid_results = {x: v for x, v in lr_results(records, condition_of(cond)).items() if on_grid(x)}
        lr = next_lr(grid_results, search_start(g, cond, records))
        finished = lr is None
    elif g["lrs"] == "around":
        grid_results = {x: v for x, v in lr_results(records, condition_of(cond)).items() if on_grid(x)}
        centre = best_lr([r for r in records if on_grid(r["config"]["lr"])], condition_of(cond))
        if centre is None or next_lr(grid_results, centre) is not None:
            return None, True           # not bracketed on the half-decade grid yet: nothing to refine
        todo = [centre * f for f in QUARTER if config_key({**cond, "lr": centre * f}) not in done]
        lr = todo[0] if todo else None
        finished = lr is None
    elif g["lrs"] == "best_of":
        lr = best_lr(records, g["lr_of"](cond)) or g["fallback_lr"]
        finished = True   # one run per condition
    else:
        todo = [x for x in g["lrs"] if config_key({**cond, "lr": x}) not in done]
        lr = todo[0] if todo else None
        finished = lr is None
    if lr is None or config_key({**cond, "lr": lr}) in done:
        return None, finished
    return {**cond, "lr": lr}, finished


def _append(out: Path, rec: dict) -> None:
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")


def run_plan(groups: list[dict], out, budget=None, context_factory=None, command: str = "",
             log=print, extra: dict | None = None) -> list[dict]:
    """Run the groups in order within the time budget; append each record to `out` (JSONL).

    budget: a lab Budget, a number of seconds, or None (no limit). extra: keys added to every record
    (main adds the sweep's config). Returns the records written now. Resumes: configs recorded in
    any *.jsonl beside `out` are not run again."""
    budget = budget if isinstance(budget, Budget) else Budget(budget)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = load_records(out.parent)
    done = {r["key"] for r in records}
    S, new, version = None, [], code_version()
    for g in groups:
        finished: set[int] = set()
        progressed = True
        while progressed:
            progressed = False
            for ci, cond in enumerate(g["conditions"]):
                if ci in finished:
                    continue
                cfg, over = next_config(g, cond, records, done)
                if over:
                    finished.add(ci)
                if cfg is None:
                    continue
                if S is None:
                    S = context_factory(cfg) if context_factory else RunContext(cfg["model"], cfg["data"])
                    info = S.corpus["info"]
                    log(f"[sweep] model and corpus ready after {budget.elapsed():.0f} s; corpus: python {info['python']}, "
                        f"{info['train_tokens']:,} train / {info['heldout_tokens']:,} held-out tokens")
                est = S.estimate_s(cfg)
                if est is not None and not budget.fits(est):
                    log(f"[sweep] skip (needs ~{est:.0f} s, {budget.remaining():.0f} s left): {_describe(cfg)}")
                    finished.add(ci)
                    continue
                rec = run_one(S, cfg, out.parent)
                rec.update(group=g["name"], command=command, code_version=version,
                           finished_at=time.strftime("%Y-%m-%d %H:%M:%S"), **(extra or {}))
                _append(out, rec)
                records.append(rec)
                done.add(rec["key"])
                new.append(rec)
                progressed = True
                log(f"[sweep] {g['name']}: {_describe(cfg)} -> held-out {rec['final']['heldout_loss']:.4f} "
                    f"(init {rec['heldout_loss_init']:.4f}), {rec['seconds_per_step']:.3f} s/step, "
                    f"{budget.elapsed():.0f} s elapsed" + (" DIVERGED" if rec["diverged"] else ""))
    log(f"[sweep] done: {len(new)} new runs in {budget.elapsed():.0f} s; {len(records)} records in {out.parent}")
    return new


# --------------------------------------------------------------------------- command line
def _list(option: str, text: str, kind=str, allowed=None) -> tuple:
    items = []
    for part in (t.strip() for t in str(text).split(",")):
        if not part:
            continue
        try:
            value = kind(part)
        except ValueError:
            raise ConfigError(f"{option}: {part!r} is not a valid {kind.__name__}; write e.g. {option} "
                              f"{'1e-4,1e-3' if kind is float else '4,16'}") from None
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{option} must be a comma list of {','.join(map(str, allowed))}; got {part!r}")
        if kind is not str and not value > 0:
            raise ConfigError(f"{option} values must be positive, got {part!r}")
        items.append(value)
    if not items:
        raise ConfigError(f"{option} must name at least one value")
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class SweepConfig:
    """One sweep call: a named plan or a grid, the output file, the budget. Saved in every record ("sweep")."""
    plan: str | None = None                # a name in PLANS, or None for the grid below
    out: str = "runs/sweep/sweep.jsonl"
    budget_s: float | None = None
    smoke: bool = False
    methods: tuple = ("lora",)
    ranks: tuple = (16,)
    lrs: tuple | str = "search"
    layers: tuple = ("all",)
    batch_sizes: tuple = (32,)
    steps: int = 200
    block_size: int = 256
    alpha: float = 32.0
    seed: int = 0
    model: str = DEFAULT_MODEL
    script: str | None = None              # the script that made this call, if any (recorded)
    part: tuple | None = None              # (k, n): run the k-th of n shares of the plan (see plan_part)
    command: str = "python -m lora_mini sweep"

    def __post_init__(self):
        if self.plan is not None:
            _choice("--plan", self.plan, sorted(PLANS))
        if self.budget_s is not None:
            _num("--budget-s", self.budget_s, what="a positive number of seconds")
        _int("--steps", self.steps)
        _int("--block-size", self.block_size, low=2, what="an integer >= 2")
        _num("--alpha", self.alpha)
        _int("--seed", self.seed, low=0, what="a non-negative integer")
        if self.part is not None and not (len(self.part) == 2 and 0 <= self.part[0] < self.part[1]):
            raise ConfigError(f"--part must be K/N with 0 <= K < N (e.g. --part 0/4), got {self.part!r}")
        if self.lrs != "search" and not (isinstance(self.lrs, tuple) and self.lrs):
            raise ConfigError(f"--lrs must be 'search' or a comma list of LRs, got {self.lrs!r}")

    @classmethod
    def from_args(cls, args) -> "SweepConfig":
        argv = getattr(args, "argv", None)
        lrs = "search" if args.lrs.strip() == "search" else _list("--lrs", args.lrs, float)
        return cls(part=_part(args.part), plan=args.plan, out=args.out, budget_s=args.budget_s, smoke=args.smoke,
                   methods=_list("--methods", args.methods, str, ("lora", "full")),
                   ranks=_list("--ranks", args.ranks, int), lrs=lrs,
                   layers=_list("--layers", args.layers, str, tuple(LAYERS)),
                   batch_sizes=_list("--batch-sizes", args.batch_sizes, int), steps=args.steps,
                   block_size=args.block_size, alpha=args.alpha, seed=args.seed, model=args.model,
                   script=args.script, command=" ".join(["python -m lora_mini sweep", *(sys.argv[1:] if argv is None else argv)]))

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def _part(text: str | None) -> tuple | None:
    if text is None:
        return None
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--part must be K/N with whole numbers (e.g. --part 0/4), got {text!r}") from None
    return k, n


def add_arguments(p) -> None:
    p.add_argument("--part", default=None, help="K/N: run the K-th of N shares of the plan (N processes side by side)")
    p.add_argument("--plan", choices=sorted(PLANS), help="a predefined plan (chapter 7's GPU batches)")
    p.add_argument("--out", default="runs/sweep/sweep.jsonl", help="JSONL file to append records to")
    p.add_argument("--budget-s", type=float, default=None, help="stop starting runs that would end after this")
    p.add_argument("--smoke", action="store_true", help="tiny model, byte corpus, a few steps (CPU test)")
    p.add_argument("--methods", default="lora", help="comma-separated: full,lora (grid mode)")
    p.add_argument("--ranks", default="16", help="comma-separated LoRA ranks (grid mode)")
    p.add_argument("--lrs", default="search", help="comma-separated LRs, or 'search' (grid mode)")
    p.add_argument("--layers", default="all", help="comma-separated: all,attn,mlp (grid mode)")
    p.add_argument("--batch-sizes", default="32", help="comma-separated (grid mode)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=DEFAULTS["model"], help="model name or 'tiny-llama'")
    p.add_argument("--script", default=None, help="the script that makes this call, recorded in every record "
                   "(e.g. 'bash scripts/gpu/regret_a.sh')")


def grid_plan(cfg) -> list[dict]:
    """The grid of a SweepConfig (or of parsed options) as one group."""
    if not isinstance(cfg, SweepConfig):
        cfg = SweepConfig.from_args(cfg)
    conds = []
    for m in cfg.methods:
        for b in cfg.batch_sizes:
            for L in cfg.layers:
                for r in (cfg.ranks if m == "lora" else [None]):
                    c = dict(method=m, rank=r, layers=L, batch_size=b, steps=cfg.steps,
                             block_size=cfg.block_size, alpha=cfg.alpha, seed=cfg.seed, model=cfg.model)
                    c = make_config(**(smoke_scale(c) if cfg.smoke else c))
                    if c not in conds:
                        conds.append(c)
    return [group("grid", conds, "search" if cfg.lrs == "search" else list(cfg.lrs), start=_start)]


def plan_of(cfg: SweepConfig) -> list[dict]:
    groups = PLANS[cfg.plan](smoke_scale if cfg.smoke else None) if cfg.plan else grid_plan(cfg)
    return plan_part(groups, *cfg.part) if cfg.part else groups


def main(args) -> int:
    cfg = SweepConfig.from_args(args)     # every option checked before anything loads
    if Path(cfg.out).is_dir():
        raise ConfigError(f"--out {cfg.out} is a folder; name a .jsonl file in it, e.g. {Path(cfg.out) / 'sweep.jsonl'}")
    groups = plan_of(cfg)
    budget = Budget(cfg.budget_s)         # the clock starts here: the model load counts
    extra = {"sweep": cfg.to_dict(), **({"script": cfg.script} if cfg.script else {})}
    run_plan(groups, Path(cfg.out), budget=budget, command=cfg.command, extra=extra)
    return 0


if __name__ == "__main__":   # python -m lora_mini.lab.sweep ... (same as python -m lora_mini sweep ...)
    from lora_mini.__main__ import main as _cli
    sys.exit(_cli(["sweep", *sys.argv[1:]]))
