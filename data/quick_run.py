"""The CPU quick run on the sample data: SmolLM2-135M-Instruct + LoRA, replies before and after.

    python data/quick_run.py                    # -> data/quick_run_cpu.json (a few minutes on 2 cores)

Exact match is over the 48 validation chats (none of them is in the training file); the
validation loss is the mean cross-entropy over their answer tokens.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
import json
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
KINDS = {"conversion": lambda q: not q.startswith("Extract") and "DD/MM" not in q,
         "extraction": lambda q: q.startswith("Extract"), "date": lambda q: "DD/MM" in q}


def per_kind(split, ev) -> dict:
    out = {}
    for kind, test in KINDS.items():
        hits = [c for p, c in zip(split.val_prompts, ev["correct"]) if test(p["messages"][-1]["content"])]
        out[kind] = sum(hits) / len(hits)
    return out


def run(args) -> dict:
    from lora_mini import apply_lora, load_model
    from lora_mini.lab.config import TrainConfig
    from lora_mini.lab.data import DataConfig, check_data, evaluate_replies, load_data
    from lora_mini.lab.finetune import val_loss
    from lora_mini.lab.tasks import batches
    from lora_mini.lab.trainer import Trainer, cpu_threads

    torch.set_num_threads(cpu_threads())
    cfg = DataConfig(str(HERE / "sample_train.jsonl"), val_path=str(HERE / "sample_val.jsonl"))
    check_data(cfg)
    t0 = time.perf_counter()
    model, tok = load_model(device="cpu", dtype=torch.float32)
    load_s = time.perf_counter() - t0
    split = load_data(cfg, tok)
    t0 = time.perf_counter()
    before = evaluate_replies(model, tok, split, n_samples=6, max_new_tokens=args.max_new_tokens)
    loss_before = val_loss(model, split.val, tok.pad_token_id)
    eval_s = time.perf_counter() - t0
    torch.manual_seed(args.seed)
    apply_lora(model, "all-linear", r=args.rank, alpha=args.alpha)
    it = batches(split.train, args.batch_size, seed=args.seed, pad_id=tok.pad_token_id)
    train_cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
                            seed=args.seed, log_every=4)
    res = Trainer(model, train_cfg).fit(it)
    after = evaluate_replies(model, tok, split, n_samples=6, max_new_tokens=args.max_new_tokens)
    loss_after = val_loss(model, split.val, tok.pad_token_id)
    return {"config": {k: v for k, v in vars(args).items() if k != "out"}, "train": asdict(train_cfg),
            "data": split.stats, "threads": torch.get_num_threads(),
            "load_seconds": load_s, "eval_seconds_before": eval_s, "train_seconds": res["train_seconds"],
            "exact_match_before": before["exact_match"], "exact_match_after": after["exact_match"],
            "by_kind_before": per_kind(split, before), "by_kind_after": per_kind(split, after),
            "val_loss_before": loss_before, "val_loss_after": loss_after,
            "train_loss": [h["loss"] for h in res["history"]],
            "samples": [{"prompt": b["prompt"], "answer": b["answer"], "before": b["reply"], "after": a["reply"]}
                        for b, a in zip(before["samples"], after["samples"])]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--out", default=str(HERE / "quick_run_cpu.json"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    out = run(args)
    out["total_seconds"] = time.perf_counter() - t0
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"exact match {out['exact_match_before']:.1%} -> {out['exact_match_after']:.1%}  "
          f"val loss {out['val_loss_before']:.3f} -> {out['val_loss_after']:.3f}  "
          f"train {out['train_seconds']:.0f} s, total {out['total_seconds']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
