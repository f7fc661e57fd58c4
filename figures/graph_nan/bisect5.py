"""Bisect 5 (run 2026-12-04 for the first eight variants: bisect5_variants.jsonl; `nofast` and `nosplit`
prepared, not yet run; `noclip` and `clear_ws` added): which part of a LoRA run leaves the state that turns the next
full fine-tuning run (fp32 weights + bf16 autocast, fused capturable AdamW with a tensor LR) NaN at its
first optimizer step (bisect4). One process per variant, random-init SmolLM2-shape Llama, random tokens:

    for v in fresh lora_full fwd_only no_step fp32_lora plain_bf16 full_foreach full_float_lr nofast nosplit noclip clear_ws; do
      PYTHONPATH=$PWD python3 figures/graph_nan/bisect5.py $v; done

fresh          no first run (the control: finite, bisect1)
lora_full      bisect4's "lora_eager": LoRA bf16 run with fused AdamW, then the full run (NaN expected)
fwd_only       the first run only does forward passes (no backward, no optimizer)
no_step        the first run does forward + backward, no optimizer step
fp32_lora      the LoRA run on fp32 weights instead of bf16
plain_bf16     the first run is full fine-tuning of a bf16 model (no LoRA at all)
full_foreach   as lora_full, but the full run's AdamW is foreach, not fused (lr a float)
full_float_lr  as lora_full, but the full run's fused AdamW gets lr as a float (not capturable)
nofast         as lora_full, the LoRA run with lora_mini's fused layer off (fast_path(False): plain autograd)
nosplit        as lora_full, the fused layer without split-K (fast_path(split_rows=0): no batched GEMM)
noclip         as lora_full, the LoRA run without clip_grad_norm_ (no foreach norm kernels)
clear_ws       as lora_full, then cuBLAS's workspaces cleared (torch._C._cuda_clearCublasWorkspaces()) before the full run
"""
import gc, json, math, os, sys
import torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bisect_nan import model_for, batch, IGN
from lora_mini import apply_lora, fast

def step(model, params, opt, b, amp, clip=True):
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        h = model.model(input_ids=b["input_ids"]).last_hidden_state
        logits = model.get_output_embeddings()(h[:, :-1])
        tgt = b["labels"][:, 1:]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), ignore_index=IGN)
    if opt == "fwd":
        return float(loss)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(params, 1.0)
    if opt is not None and opt != "nostep":
        opt.step()
    for p in params:
        p.grad = None
    return float(loss)


def first_run(kind):
    if kind == "plain_bf16":
        m = model_for(torch.bfloat16)
    else:
        m = model_for(torch.float32 if kind == "fp32_lora" else torch.bfloat16)
        apply_lora(m, "all-linear", r=16, alpha=32)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = {"fwd_only": "fwd", "no_step": "nostep"}.get(kind) or torch.optim.AdamW(params, lr=1e-3, fused=True)
    setting = {"nofast": dict(enabled=False), "nosplit": dict(split_rows=0)}.get(kind, {})
    with fast.fast_path(**setting):
        losses = [step(m, params, opt, batch(s), amp=False, clip=kind != "noclip") for s in range(5)]
    del m, opt, params
    gc.collect()
    torch.cuda.empty_cache()
    if kind == "clear_ws":
        torch.cuda.synchronize()
        torch._C._cuda_clearCublasWorkspaces()
    return losses


def full_run(variant):
    """Full fine-tuning, fp32 weights + bf16 autocast, 5 steps: its losses and the first NaN step."""
    full = model_for(torch.float32)
    params = list(full.parameters())
    if variant == "full_foreach":
        opt = torch.optim.AdamW(params, lr=5e-5, foreach=True)
    elif variant == "full_float_lr":
        opt = torch.optim.AdamW(params, lr=5e-5, fused=True)
    else:
        opt = torch.optim.AdamW(params, lr=torch.tensor(5e-5, device="cuda"), fused=True, capturable=True)
    fb = [step(full, params, opt, batch(s), amp=True) for s in range(5)]
    return {"full_losses": fb, "full_first_nan_step": next((i + 1 for i, x in enumerate(fb) if not math.isfinite(x)), None)}


if __name__ == "__main__":
    variant = sys.argv[1]
    first = None if variant == "fresh" else first_run("lora_full" if variant.startswith("full_") else variant)
    row = {"variant": variant, "first_losses": first, **full_run(variant)}
    print(json.dumps(row), flush=True)
    if os.environ.get("OUT"):
        open(os.path.join(os.environ["OUT"], f"bisect5_{variant}.json"), "w").write(json.dumps(row, indent=1))
