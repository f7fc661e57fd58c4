"""Bisect 6: bisect 5 found that the NaN in a full fine-tuning run (fp32 weights + bf16 autocast) after a
LoRA run in the same process needs lora_mini's fused LoRA backward (`nofast` stays finite, `nosplit` does
not). Is the poison the *contents of memory* the LoRA run leaves behind (read later by a kernel that does
not initialise what it reads), or the way the fused backward computes grad_x? One process per variant,
random-init SmolLM2-shape Llama, random tokens, the same two runs as bisect5.py:

    for v in lora_full fresh_nanfill fresh_zerofill lora_zerofill contig nocat; do
      PYTHONPATH=$PWD python3 figures/graph_nan/bisect6.py $v; done

lora_full       bisect5's control: LoRA bf16 run (fused path), then the full run (NaN expected)
fresh_nanfill   no LoRA run; the allocator's free memory filled with NaN first (large and small pools)
fresh_zerofill  the same, filled with zeros (the control for the fill itself)
lora_zerofill   LoRA run, then free memory filled with zeros before the full run
contig          LoRA run whose fused backward makes grad_x contiguous (G[:, :in].contiguous())
nocat           LoRA run whose fused backward computes g W' and g (s·B) as two GEMMs (no [W' | s·B] cat)
"""
import json, os, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bisect5 as b5
from lora_mini import fast

variant = sys.argv[1]


def fill_free_memory(value: float):
    """Allocate 8 GiB of float32 `value` in large (64 MiB) blocks and 1 GiB in small (512 KiB) ones, then
    free them without empty_cache: the caching allocator hands these bytes out next (a full run needs less)."""
    big = [torch.full((16 << 20,), value, device="cuda") for _ in range(128)]
    small = [torch.full((128 << 10,), value, device="cuda") for _ in range(2048)]
    torch.cuda.synchronize()
    del big, small


def patched_grads(kind):
    """lora_grads with grad_x computed another way (the same maths)."""
    def grads(g, saved, s, need=(True, True, True), split_rows=None):
        x, W, sA, B_, hs = saved
        out, d_in = W.shape
        g2, x2 = g.reshape(-1, out), x.reshape(-1, d_in)
        W_eff = torch.addmm(W, B_, sA)
        if kind == "contig":
            G = g2 @ torch.cat([W_eff, B_ * s], dim=1)
            grad_x, sgB = G[:, :d_in].contiguous().view(x.shape), G[:, d_in:]
        else:
            grad_x, sgB = (g2 @ W_eff).view(x.shape), g2 @ (B_ * s)
        return (grad_x if need[0] else None, fast.tn_matmul(sgB, x2, split_rows) if need[1] else None,
                fast.tn_matmul(g2, hs.reshape(-1, hs.shape[-1]), split_rows) if need[2] else None)
    return grads


if variant in ("contig", "nocat"):
    fast.lora_grads = patched_grads(variant)
first = None if variant.startswith("fresh") else b5.first_run("lora_full")
if variant.endswith("nanfill"):
    fill_free_memory(float("nan"))
elif variant.endswith("zerofill"):
    fill_free_memory(0.0)
row = {"variant": variant, "first_losses": first, **b5.full_run("fused")}
print(json.dumps(row), flush=True)
if os.environ.get("OUT"):
    open(os.path.join(os.environ["OUT"], f"bisect6_{variant}.json"), "w").write(json.dumps(row, indent=1))
