"""Chapter 8 GPU runs: LoRA beside its alternatives and variants, several adapters, forgetting,
overfitting. Called by scripts/gpu/variants.sh; writes figures/beyond/*.json after every run.

Resumable: results already in figures/beyond/*.json with the same config are kept and not run
again, so a second call (another ≤ 8 minutes) fills in what the first one had to skip.

Order (by priority; a run starts only if the time budget leaves room for it):
  1. methods   every method in lora_mini.variants.METHODS on the chapter-6 addition task, same
               steps and batch: accuracy, trainable params, train time, peak memory, inference
               latency unmerged vs merged, and held-out loss on general text (stdlib) -> forgetting
  2. multi     LoRA adapters for subtraction and digit reversal (+ the addition one from 1),
               served from one base: switched per call and mixed per row; memory
  3. overfit   300 training examples: train vs held-out answer loss across rank and dropout
  4. sequential fine-tuning add -> sub with one LoRA and with full FT (continual learning)
SMOKE=1 shrinks everything for a CPU check (a few steps, tiny splits). PARTS=methods,overfit (a
comma list of methods, multi, overfit, sequential) runs only some parts, e.g. one part per GPU in
parallel (each part writes its own JSON; multi and sequential share multi.json: not both at once).
"""
from __future__ import annotations

import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from lora_mini import load_model, merge
from lora_mini.lab.corpus import build_corpus, heldout_loss, to_blocks
from lora_mini.lab.tasks import TASKS
from lora_mini.multi import apply_multi_lora, lora_state, parameter_bytes, use_adapter
from lora_mini.lab.tasks import batches, encode_examples, exact_match, IGNORE
from lora_mini.lab.finetune import SYSTEM
from lora_mini.lab.trainer import AnswerLoss, train
from lora_mini.variants import forward_latency, prepare_method

T0 = time.time()
# bf16 autocast for every method, as in the first runs of this table (train() would otherwise skip
# it for a bf16 base); keeps all rows of methods.json comparable
AMP = torch.cuda.is_available()
SMOKE = os.environ.get("SMOKE") == "1"
BUDGET = float(os.environ.get("BUDGET_S", 3600 if SMOKE else 430))   # seconds for this script
OUT = Path(os.environ.get("OUT_DIR", "figures/beyond"))
COMMAND = os.environ.get("COMMAND", "bash scripts/gpu/variants.sh")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CFG = dict(digits=(2, 3), n_train=20000, n_test=300, steps=200, batch_size=64, warmup_steps=20,
           r=16, alpha=32, eval_batch_size=150, latency_repeats=30,
           overfit_n_train=300, overfit_steps=300, overfit_eval_every=25,
           text_files=30, text_blocks=48, text_block_len=256, latency_shapes={"b1_t32": (1, 32), "b64_t64": (64, 64)},
           multi_latency_shape=(48, 48))
if SMOKE:
    CFG.update(n_train=64, n_test=8, steps=3, batch_size=4, warmup_steps=1, eval_batch_size=8,
               latency_repeats=2, overfit_n_train=8, overfit_steps=4, overfit_eval_every=2,
               text_files=2, text_blocks=2, text_block_len=64, latency_shapes={"b1_t8": (1, 8), "b2_t8": (2, 8)},
               multi_latency_shape=(3, 8))
# peak LR per method: chapter 6's LoRA/full LRs; the others from their papers' usual ranges
# (not swept here: one budget, one LR each, stated in the JSON)
LR = {"full": 1e-4, "lora": 2e-3, "rslora": 2e-3, "dora": 2e-3, "loraplus": 5e-4, "pissa": 2e-4,
      "qlora": 2e-3, "adapter": 2e-3, "prompt": 3e-2}


def elapsed() -> float:
    return time.time() - T0


SEC_PER_STEP = [0.3 if DEVICE == "cuda" else 60.0]   # a first guess, then the latest run's


def fits(steps: int, what, skipped: list) -> bool:
    """True if `steps` training steps (+ evals) still fit the budget; else log and record a skip."""
    need = steps * SEC_PER_STEP[0] * 1.15 + 8
    if elapsed() + need <= BUDGET:
        return True
    log(f"skip {what}: budget (elapsed {elapsed():.0f}s, needs ~{need:.0f}s)")
    skipped.append(what)
    return False


def observe(seconds: float, steps: int) -> None:
    """Remember the wall time per step (training + evals) of the latest run."""
    SEC_PER_STEP[0] = seconds / steps


def previous(name: str) -> dict | None:
    """The JSON from an earlier call with the same config (to resume), else None."""
    path = OUT / name
    if os.environ.get("FRESH") == "1" or not path.exists():
        return None
    old = json.loads(path.read_text())
    same = json.loads(json.dumps({"config": CFG, "lr": LR})) == {"config": old.get("config"), "lr": old.get("lr")}
    if not same:
        log(f"{name}: earlier results use another config; starting afresh")
        return None
    return old


def start(name: str, **empty) -> dict:
    res = previous(name)
    if res is None:
        res = {**header(), **empty, "commands": []}
    else:   # files from before "commands" existed hold one "command"
        res["commands"] = res.get("commands") or [res["command"]]
    res.update({k: v for k, v in header().items() if k != "command"})
    res["commands"].append(COMMAND)
    res["command"] = COMMAND
    res["skipped"] = []
    return res


def log(msg: str) -> None:
    print(f"[{elapsed():6.1f}s] {msg}", flush=True)


def write(name: str, obj: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(obj, indent=1))


def header() -> dict:
    return {"command": COMMAND, "smoke": SMOKE, "config": CFG, "lr": LR,
            "device": torch.cuda.get_device_name(0) if DEVICE == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "python": platform.python_version(), "budget_s": BUDGET}


# ----------------------------------------------------------------------------- data and evals

def task_data(tok, name: str, n_train: int, n_test: int):
    task = TASKS[name](digits=CFG["digits"], seed=0, system=SYSTEM)
    train_ex, test_ex = task.make_splits(n_train, n_test)
    return train_ex, test_ex, encode_examples(tok, train_ex)


def max_new(name: str) -> int:
    return 2 * CFG["digits"][1] + 1 if name == "rev" else CFG["digits"][1] + 2


def em(model, tok, examples, name="add") -> float:
    return exact_match(model, tok, examples, CFG["eval_batch_size"], max_new(name))["exact_match"]


@torch.no_grad()
def answer_loss(model, encoded, pad_id) -> float:
    """Mean answer-token loss over encoded examples (eval mode, bf16 autocast on GPU)."""
    from lora_mini.lab.tasks import collate
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


def text_loss(model, blocks) -> float:
    return heldout_loss(model, blocks, batch_size=16,
                        autocast_dtype=torch.bfloat16 if DEVICE == "cuda" else None)


def fresh(pristine, method: str):
    """A copy of the base: fp32 master weights for full FT, the bf16 base for everything else."""
    m = copy.deepcopy(pristine)
    if method != "full" and DEVICE == "cuda":
        m = m.to(torch.bfloat16)
    return m


def thin(history, every=5):
    return [h for h in history if h["step"] % every == 0 or h["step"] == 1]


# ----------------------------------------------------------------------------- 1. methods

def run_methods(pristine, tok, data, blocks, results):
    train_ex, test_ex, enc = data
    g = torch.Generator().manual_seed(0)
    lat_inputs = {k: torch.randint(100, 5000, shape, generator=g).to(DEVICE) for k, shape in CFG["latency_shapes"].items()}
    if "base" not in results:
        base = fresh(pristine, "lora")
        results["base"] = {"exact_match": em(base, tok, test_ex), "text_loss": text_loss(base, blocks),
                           "latency_s": {k: forward_latency(base, x, CFG["latency_repeats"]) for k, x in lat_inputs.items()}}
        log(f"base: exact match {results['base']['exact_match']:.3f}, text loss {results['base']['text_loss']:.3f}")
        del base
        write("methods.json", results)
    kept = {}
    done = {r["method"] for r in results["runs"]}
    order = ["lora", "full", "dora", "qlora", "adapter", "prompt", "rslora", "loraplus", "pissa"]
    if os.environ.get("ONLY"):   # e.g. ONLY=lora,prompt for a quicker smoke test
        order = [m for m in order if m in os.environ["ONLY"].split(",")]
    for method in order:
        if method in done:
            continue
        if not fits(CFG["steps"], method, results["skipped"]):
            continue
        t_start = time.time()
        model = fresh(pristine, method)
        model, opt, info = prepare_method(model, method, lr=LR[method], r=CFG["r"], alpha=CFG["alpha"])
        if method == "qlora":
            info["quant_exact_match_before"] = em(model, tok, test_ex)
        it = batches(enc, CFG["batch_size"], seed=0, pad_id=tok.pad_token_id)
        out = train(model, it, steps=CFG["steps"], lr=LR[method], warmup_steps=CFG["warmup_steps"],
                    optimizer=opt, progress=False, amp=AMP)
        step_ms = 1000 * out["train_seconds"] / CFG["steps"]
        row = {**info, "lr": LR[method], "steps": CFG["steps"], "train_seconds": out["train_seconds"],
               "step_ms": step_ms, "tokens_per_s": out["tokens_per_s"], "peak_mem_gib": out["peak_mem_gib"],
               "final_loss": sum(h["loss"] for h in out["history"][-10:]) / 10 if len(out["history"]) >= 10
               else out["history"][-1]["loss"],
               "history": thin(out["history"])}
        row["exact_match"] = em(model, tok, test_ex)
        row["text_loss"] = text_loss(model, blocks)
        if method != "full":   # full FT's model is the base model (its latency is the base's)
            row["latency_s"] = {k: forward_latency(model, x, CFG["latency_repeats"]) for k, x in lat_inputs.items()}
        if method in ("lora", "full"):   # kept for several adapters (2.) and continual learning (4.)
            kept[method] = model
        elif info["can_merge"] and method != "full":
            merge(model)
            row["merged_exact_match"] = em(model, tok, test_ex)
            row["latency_merged_s"] = {k: forward_latency(model, x, CFG["latency_repeats"])
                                       for k, x in lat_inputs.items()}
        if method == "lora":   # merged latency on a copy (the unmerged one goes on to part 2)
            m2 = copy.deepcopy(model)
            merge(m2)
            row["merged_exact_match"] = em(m2, tok, test_ex)
            row["latency_merged_s"] = {k: forward_latency(m2, x, CFG["latency_repeats"]) for k, x in lat_inputs.items()}
            del m2
        if method not in kept:
            del model
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
        per_run = time.time() - t_start
        observe(per_run, CFG["steps"])
        row["wall_seconds"] = per_run
        row["command"] = COMMAND
        results["runs"].append(row)
        write("methods.json", results)
        log(f"{method:8s} trainable {info['trainable']:>11,}  step {step_ms:6.1f} ms  exact match "
            f"{row['exact_match']:.3f}  text loss {row['text_loss']:.3f}  ({per_run:.0f}s)")
    return kept


# ----------------------------------------------------------------------------- 2. several adapters

def run_multi(pristine, tok, kept, blocks, results):
    if "multi" in results:
        return
    splits = {name: task_data(tok, name, CFG["n_train"], CFG["n_test"]) for name in ("add", "sub", "rev")}
    states, singles = {}, {}
    if "lora" in kept:
        states["add"] = lora_state(kept["lora"])
    todo = [n for n in ("add", "sub", "rev") if n not in states]
    if not fits(len(todo) * CFG["steps"], "multi", results["skipped"]):
        return
    for name in todo:
        t0 = time.time()
        model, _, _ = prepare_method(fresh(pristine, "lora"), "lora", lr=LR["lora"], r=CFG["r"], alpha=CFG["alpha"])
        it = batches(splits[name][2], CFG["batch_size"], seed=0, pad_id=tok.pad_token_id)
        out = train(model, it, steps=CFG["steps"], lr=LR["lora"], warmup_steps=CFG["warmup_steps"], progress=False, amp=AMP)
        states[name] = lora_state(model)
        singles[name] = {"exact_match": em(model, tok, splits[name][1], name), "train_seconds": out["train_seconds"]}
        observe(time.time() - t0, CFG["steps"])
        log(f"adapter {name}: exact match {singles[name]['exact_match']:.3f}")
        del model
    names = ["add", "sub", "rev"]
    base = fresh(pristine, "lora")
    base_bytes = parameter_bytes(base)
    multi = apply_multi_lora(base, [states[n] for n in names])
    res = {"tasks": names, "single_model_exact_match": singles,
           "base_bytes": base_bytes, "multi_bytes": parameter_bytes(multi),
           "separate_models_bytes": len(names) * base_bytes, "switched": {}, "base_model": {}}
    for k, name in enumerate(names):
        test_ex = splits[name][1]
        with use_adapter(multi, k):
            res["switched"][name] = em(multi, tok, test_ex, name)
        with use_adapter(multi, None):
            res["base_model"][name] = em(multi, tok, test_ex, name)
    # one mixed batch: rows from all three tasks interleaved, each row with its own adapter
    mixed, idx = [], []
    for i in range(CFG["n_test"]):
        for k, name in enumerate(names):
            mixed.append(splits[name][1][i])
            idx.append(k)
    from lora_mini.lab.tasks import generate, parse_answer
    answers = []
    bs = 3 * (CFG["eval_batch_size"] // 3)
    t = time.time()
    for i in range(0, len(mixed), bs):
        with use_adapter(multi, torch.tensor(idx[i:i + bs])):
            answers += generate(multi, tok, mixed[i:i + bs], bs, max_new("rev"))
    res["mixed_seconds"] = time.time() - t
    res["mixed"] = {name: sum(parse_answer(a) == ex["answer"] for a, ex, j in zip(answers, mixed, idx) if j == k)
                    / CFG["n_test"] for k, name in enumerate(names)}
    res["mixed_batch_size"] = bs
    g = torch.Generator().manual_seed(0)
    b, t = CFG["multi_latency_shape"]
    x = torch.randint(100, 5000, (b, t), generator=g).to(DEVICE)
    lat = {}
    for label, index in [("base", None), ("one_adapter", 0), ("mixed_rows", torch.arange(b) % 3)]:
        with use_adapter(multi, index):
            lat[label] = forward_latency(multi, x, CFG["latency_repeats"])
    res["latency_s"] = lat
    res["latency_shape"] = [b, t]
    results["multi"] = res
    write("multi.json", results)
    log(f"multi: switched {res['switched']}  mixed {res['mixed']}  bytes {res['multi_bytes']/2**20:.0f} MiB vs "
        f"{res['separate_models_bytes']/2**20:.0f} MiB")
    del multi


# ----------------------------------------------------------------------------- 3. overfitting

def run_overfit(pristine, tok, results):
    train_ex, test_ex, enc = task_data(tok, "add", CFG["overfit_n_train"], CFG["n_test"])
    enc_test = encode_examples(tok, test_ex)
    pad = tok.pad_token_id
    grid = [dict(method="lora", r=4, dropout=0.0), dict(method="lora", r=64, dropout=0.0),
            dict(method="lora", r=64, dropout=0.1), dict(method="lora", r=4, dropout=0.1),
            dict(method="full", r=None, dropout=0.0), dict(method="lora", r=64, dropout=0.0, weight_decay=0.1)]
    done = [{k: r[k] for k in g} for r in results["runs"] for g in grid if all(r.get(k) == v for k, v in g.items())]
    for g in grid:
        if g in done:
            continue
        if not fits(CFG["overfit_steps"], g, results["skipped"]):
            continue
        t = time.time()
        method, r = g["method"], g["r"]
        model, _, info = prepare_method(fresh(pristine, method), method, lr=LR[method], r=r or 16,
                                        alpha=2 * (r or 16), dropout=g["dropout"])
        curve = []
        eval_fn = lambda m: {"train_loss": answer_loss(m, enc, pad), "test_loss": answer_loss(m, enc_test, pad)}  # noqa
        it = batches(enc, CFG["batch_size"], seed=0, pad_id=pad)
        out = train(model, it, steps=CFG["overfit_steps"], lr=LR[method], warmup_steps=CFG["warmup_steps"],
                    weight_decay=g.get("weight_decay", 0.0), eval_fn=eval_fn,
                    eval_every=CFG["overfit_eval_every"], progress=False, amp=AMP)
        curve = out["evals"]
        row = {**g, "alpha": 2 * r if r else None, "lr": LR[method], "trainable": info["trainable"],
               "n_train": CFG["overfit_n_train"], "steps": CFG["overfit_steps"], "evals": curve,
               "history": thin(out["history"]), "exact_match_test": em(model, tok, test_ex),
               "exact_match_train": em(model, tok, train_ex[:CFG["n_test"]])}
        row["command"] = COMMAND
        results["runs"].append(row)
        write("overfit.json", results)
        per_run = time.time() - t
        observe(per_run, CFG["overfit_steps"])
        log(f"overfit {g}: train loss {curve[-1]['train_loss']:.3f} test loss {curve[-1]['test_loss']:.3f} "
            f"min test {min(e['test_loss'] for e in curve):.3f}  EM train {row['exact_match_train']:.2f} "
            f"test {row['exact_match_test']:.2f} ({per_run:.0f}s)")
        del model


# ----------------------------------------------------------------------------- 4. continual learning

def run_sequential(pristine, tok, kept, blocks, results):
    """Train on addition, then keep training the same weights on subtraction: does addition survive?"""
    splits = {name: task_data(tok, name, CFG["n_train"], CFG["n_test"]) for name in ("add", "sub")}
    seq = results.setdefault("sequential", {})
    for method in ("lora", "full"):
        if method in seq:
            continue
        steps = CFG["steps"] * (1 if method in kept else 2)
        if not fits(steps, f"sequential_{method}", results["skipped"]):
            continue
        t0 = time.time()
        if method in kept:
            model = kept.pop(method)
        else:   # the addition run of part 1 was in an earlier call: train it again (same seed)
            model, _, _ = prepare_method(fresh(pristine, method), method, lr=LR[method], r=CFG["r"], alpha=CFG["alpha"])
            it = batches(splits["add"][2], CFG["batch_size"], seed=0, pad_id=tok.pad_token_id)
            train(model, it, steps=CFG["steps"], lr=LR[method], warmup_steps=CFG["warmup_steps"], progress=False, amp=AMP)
        before = {"add": em(model, tok, splits["add"][1], "add"), "sub": em(model, tok, splits["sub"][1], "sub"),
                  "text_loss": text_loss(model, blocks)}
        it = batches(splits["sub"][2], CFG["batch_size"], seed=1, pad_id=tok.pad_token_id)
        train(model, it, steps=CFG["steps"], lr=LR[method], warmup_steps=CFG["warmup_steps"], progress=False, amp=AMP)
        after = {"add": em(model, tok, splits["add"][1], "add"), "sub": em(model, tok, splits["sub"][1], "sub"),
                 "text_loss": text_loss(model, blocks)}
        seq[method] = {"after_add": before, "after_add_then_sub": after, "command": COMMAND}
        observe(time.time() - t0, steps)
        log(f"sequential {method}: add {before['add']:.3f} -> {after['add']:.3f}, sub {before['sub']:.3f} -> "
            f"{after['sub']:.3f}")
        del model
        write("multi.json", results)


def main() -> int:
    torch.manual_seed(0)
    log(f"device {DEVICE}, smoke={SMOKE}, budget {BUDGET:.0f}s")
    pristine, tok = load_model(device=DEVICE, dtype=torch.float32)
    log("model loaded")
    corpus = build_corpus(tok, max_files=CFG["text_files"])
    blocks = to_blocks(corpus["heldout"], CFG["text_block_len"])[:CFG["text_blocks"]]
    log(f"general text: {len(blocks)} held-out blocks of {CFG['text_block_len']} tokens "
        f"({corpus['info']['heldout_files']} stdlib files)")
    data = task_data(tok, "add", CFG["n_train"], CFG["n_test"])
    parts = os.environ.get("PARTS", "methods,multi,overfit,sequential").split(",")
    written, kept = [], {}
    if "methods" in parts:
        methods = start("methods.json", runs=[])
        methods["text"] = {**corpus["info"], "blocks": len(blocks)}
        kept = run_methods(pristine, tok, data, blocks, methods)
        written.append(("methods.json", methods))
    if "multi" in parts or "sequential" in parts:
        multi = start("multi.json")
        if "multi" in parts:
            run_multi(pristine, tok, kept, blocks, multi)
        written.append(("multi.json", multi))
    if "overfit" in parts:
        overfit = start("overfit.json", runs=[])
        run_overfit(pristine, tok, overfit)
        written.append(("overfit.json", overfit))
    if "sequential" in parts:
        run_sequential(pristine, tok, kept, blocks, multi)
    for name, obj in written:
        obj["finished_at_s"] = elapsed()
        write(name, obj)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
