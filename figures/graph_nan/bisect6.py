"""Bisect 6: bisect 5 found that the NaN in a full fine-tuning run (fp32 weights + bf16 autocast) after a
LoRA run in the same process needs lora_mini's fused LoRA backward (`nofast` stays finite, `nosplit` does
not). Is the poison the *contents of memory* the LoRA run leaves behind (read later by a kernel that does
not initialise what it reads), or the way the fused backward computes grad_x? One process per variant,
random-init SmolLM2-shape Llama, random tokens, the same two runs as bisect5.py:

    for v in lora_full fresh_nanfill fresh_zerofill lora_zerofill contig nocat plain_strided plain_contig; do
      PYTHONPATH=$PWD python3 figures/graph_nan/bisect6.py $v; done

lora_full       bisect5's control: LoRA bf16 run (fused path), then the full run (NaN expected)
fresh_nanfill   no LoRA run; the allocator's free memory filled with NaN first (large and small pools)
fresh_zerofill  the same, filled with zeros (the control for the fill itself)
lora_zerofill   LoRA run, then free memory filled with zeros before the full run
contig          LoRA run whose fused backward makes grad_x contiguous (G[:, :in].contiguous())
nocat           LoRA run whose fused backward computes g W' and g (s·B) as two GEMMs (no [W' | s·B] cat)
plain_strided   no lora_mini: a bf16 model whose linear layers' backward returns grad_x as a strided view
                (rows of g [W | 0]), as the fused LoRA backward does; forward + backward only, then the full run
plain_contig    the same with grad_x made contiguous (the control)
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


class StridedGradLinear(torch.autograd.Function):
    """y = x Wᵀ, W frozen; backward returns grad_x as the first `in` columns of g [W | 0] (row stride in + 16)."""

    @staticmethod
    def forward(ctx, x, W, contiguous):
        ctx.save_for_backward(W)
        ctx.contiguous = contiguous
        return torch.nn.functional.linear(x, W)

    @staticmethod
    def backward(ctx, g):
        (W,) = ctx.saved_tensors
        G = g.reshape(-1, W.shape[0]) @ torch.cat([W, W.new_zeros(W.shape[0], 16)], dim=1)
        gx = G[:, :W.shape[1]]
        return (gx.contiguous() if ctx.contiguous else gx).view(*g.shape[:-1], W.shape[1]), None, None


def plain_run(contiguous):
    """bf16 model, frozen linear layers through StridedGradLinear, the embedding trainable: 5 x (fwd + bwd)."""
    m = b5.model_for(torch.bfloat16)
    for p in m.parameters():
        p.requires_grad_(False)
    m.model.embed_tokens.weight.requires_grad_(True)
    for mod in m.model.layers.modules():
        if isinstance(mod, torch.nn.Linear):
            mod.forward = lambda x, mod=mod: StridedGradLinear.apply(x, mod.weight, contiguous)
    params = [m.model.embed_tokens.weight]
    losses = [b5.step(m, params, "nostep", b5.batch(s), amp=False) for s in range(5)]
    del m, params
    torch.cuda.empty_cache()
    return losses


if variant in ("contig", "nocat"):
    fast.lora_grads = patched_grads(variant)
if variant.startswith("plain_"):
    first = plain_run(variant == "plain_contig")
else:
    first = None if variant.startswith("fresh") else b5.first_run("lora_full")
if variant.endswith("nanfill"):
    fill_free_memory(float("nan"))
elif variant.endswith("zerofill"):
    fill_free_memory(0.0)
row = {"variant": variant, "first_losses": first, **b5.full_run("fused")}
print(json.dumps(row), flush=True)
if os.environ.get("OUT"):
    open(os.path.join(os.environ["OUT"], f"bisect6_{variant}.json"), "w").write(json.dumps(row, indent=1))
