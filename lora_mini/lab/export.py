"""Hand the tuned model on: merge the adapter into W and write a plain transformers model folder.

    python -m lora_mini export --adapter runs/finetune/adapter --merged runs/merged
    # then, anywhere:  AutoModelForCausalLM.from_pretrained("runs/merged")

W' = W + (α/r)·B·A in every adapted layer (lora_mini.merge_and_unload), then the model is
saved with transformers' own save_pretrained: model.safetensors, config.json,
generation_config.json (stops at the end-of-turn token), and the tokenizer with its chat
template. A model loaded from a GGUF is saved as the plain architecture it was dequantized to:
no quantization_config or GGUF leftovers in config.json.

The folder is written under a temporary name, loaded back with plain
AutoModelForCausalLM.from_pretrained and compared with the merged model in memory (logits on
a probe chat, and its greedy reply), and only then renamed to OUT. An existing non-empty OUT
is refused unless overwrite=True.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import torch

PROBE = [{"role": "user", "content": "Convert 3 km to m."}]
LEFTOVERS = ("quantization_config", "gguf_file")   # config attributes a GGUF load can leave behind


def check_out(out, overwrite: bool) -> Path:
    """Refuse a non-empty OUT (before any model is loaded) unless overwrite."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is a file; pass a folder path for --merged")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it, or another folder")
    return out


def plain_config(model) -> None:
    """Remove quantization / GGUF attributes so the saved config.json loads as the plain model."""
    for name in LEFTOVERS:
        if hasattr(model.config, name):
            delattr(model.config, name)
    model.hf_quantizer, model.is_quantized = None, False


def set_generation(model, tokenizer) -> None:
    """generation_config: greedy, stopping at the end-of-turn token (and eos), with a pad id."""
    from transformers import GenerationConfig
    from .generate import end_of_turn_id, stop_ids
    end = end_of_turn_id(tokenizer)
    if end is not None and tokenizer.convert_ids_to_tokens(end) != tokenizer.eos_token:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(end)   # e.g. a GGUF tokenizer's eos
    stops = stop_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    model.generation_config = GenerationConfig(eos_token_id=stops if len(stops) > 1 else stops[0],
                                               pad_token_id=pad, bos_token_id=model.config.bos_token_id,
                                               do_sample=False)


@torch.no_grad()
def compare(model, folder, tokenizer, dtype) -> dict:
    """Load `folder` with plain transformers; {"max_logit_diff", "same_greedy", "tokens"} on PROBE."""
    from transformers import AutoModelForCausalLM
    from .generate import GenerateConfig, prompt_ids, reply_tokens
    device = next(model.parameters()).device
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).to(device).eval()
    ids = torch.tensor([prompt_ids(tokenizer, PROBE)], device=device)
    diff = (model(input_ids=ids).logits.float() - loaded(input_ids=ids).logits.float()).abs().max().item()
    cfg = GenerateConfig(max_new_tokens=16)
    mine, theirs = reply_tokens(model, tokenizer, PROBE, cfg), reply_tokens(loaded, tokenizer, PROBE, cfg)
    del loaded
    return {"max_logit_diff": diff, "same_greedy": mine == theirs, "tokens": len(mine)}


def tolerance(dtype: torch.dtype) -> float:
    return 1e-4 if dtype in (torch.float32, torch.float64) else 5e-2


def export_merged(model, tokenizer, out, overwrite: bool = False, verify: bool = True,
                  dtype: torch.dtype | None = None, source: dict | None = None) -> dict:
    """Merge the LoRA layers of `model` (changed in place) and write OUT; returns the check's numbers.

    dtype: cast the merged model to it before saving (default: keep the model's dtype); merging
    happens first, in the weights' own dtype with the update computed in float32.
    source: facts recorded in OUT/lora_mini_export.json (adapter folder, base model).
    Raises (and leaves OUT as it was) if the reloaded model does not match.
    """
    from lora_mini import merge_and_unload
    from lora_mini.inject import lora_modules
    out = check_out(out, overwrite)
    if lora_modules(model):
        merge_and_unload(model)
    if dtype is not None:
        model.to(dtype)
    plain_config(model)
    tokenizer = copy.deepcopy(tokenizer)              # set_generation may fix its eos: not the caller's
    set_generation(model, tokenizer)
    dtype = next(model.parameters()).dtype
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        leftovers = [k for k in json.loads((tmp / "config.json").read_text()) if "quant" in k or "gguf" in k]
        if leftovers:
            raise RuntimeError(f"export: config.json still has {leftovers}; it would not load as a plain model")
        check = compare(model, tmp, tokenizer, dtype) if verify else {}
        if verify and not (check["max_logit_diff"] <= tolerance(dtype) and check["same_greedy"]):
            raise RuntimeError(f"export: the saved model does not reproduce the merged one ({check}); "
                               f"{out} was not written")
        info = {"dtype": str(dtype).replace("torch.", ""), **(source or {}), "check": check}
        (tmp / "lora_mini_export.json").write_text(json.dumps(info, indent=1))
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def _replace(tmp: Path, out: Path) -> None:
    """Rename tmp to out; an existing out is moved aside first and removed after."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- command line


def add_arguments(p) -> None:
    p.add_argument("--adapter", required=True, help="adapter folder written by finetune (its adapter/ folder)")
    p.add_argument("--merged", required=True, help="output folder for the merged transformers model")
    p.add_argument("--model", default=None, help="base model (default: the one the adapter records; SmolLM2)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the saved weights (merging happens in float32)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --merged folder")
    p.add_argument("--no-verify", action="store_true", help="skip loading the folder back and comparing")


def main(args) -> int:
    from .generate import _dtype, adapter_folder, load_tuned
    check_out(args.merged, args.overwrite)             # before the model loads
    folder = adapter_folder(args.adapter)
    model, tok, what = load_tuned(folder, args.model, device="cpu", dtype=torch.float32)
    info = export_merged(model, tok, args.merged, args.overwrite, not args.no_verify, _dtype(args.dtype),
                         source={"adapter": str(folder), "model": what})
    check = info.get("check") or {}
    print(f"wrote {args.merged} ({what}, {info['dtype']})")
    if check:
        print(f"checked: transformers loads it; max |logit difference| {check['max_logit_diff']:.2e}, "
              f"same greedy reply: {check['same_greedy']}")
    return 0
