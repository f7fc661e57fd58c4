"""Bisect 4: in ONE process, a LoRA CUDA-graph run, then full FT + autocast in a CUDA graph (random-init
SmolLM2-shape Llama, random tokens). Variants: argv[1] in {plain, clear_cublas, lora_eager, new_capture_stream}."""
import json, math, os, sys, gc
import torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bisect_nan import model_for, batch, IGN
from lora_mini import apply_lora
from lora_mini.lab.graphs import GraphedStep, make_adamw
variant = sys.argv[1]

def run(model, amp, graph, steps=10, lr=5e-5, stream=None):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_adamw(params, lr, graphs=graph)
    head = model.get_output_embeddings()
    def step_fn(b):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            h = model.model(input_ids=b["input_ids"]).last_hidden_state
            logits = head(h[:, :-1]); tgt = b["labels"][:, 1:]
            loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), ignore_index=IGN, reduction="sum") / (tgt != IGN).sum()
        loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
        return loss.detach()
    gs = GraphedStep(step_fn, opt, warmup=3) if graph else None
    out = []
    for s in range(steps):
        b = batch(s)
        if gs is not None: out.append(float(gs(b)))
        else: out.append(float(step_fn(b))); opt.zero_grad(set_to_none=True)
    if gs is not None: gs.release()
    return out

lora = model_for(torch.bfloat16)
apply_lora(lora, "all-linear", r=16, alpha=32)
la = run(lora, amp=False, graph=variant != "lora_eager", lr=1e-3)
del lora; gc.collect(); torch.cuda.empty_cache()
if variant == "clear_cublas":
    torch._C._cuda_clearCublasWorkspaces()
if variant == "new_capture_stream":
    import torch.cuda.graphs as G
    G.graph.default_capture_stream = torch.cuda.Stream()
full = model_for(torch.float32)
fb = run(full, amp=True, graph=True)
row = {"variant": variant, "lora_losses": la, "full_losses": fb,
       "full_first_nan_step": next((i + 1 for i, x in enumerate(fb) if not math.isfinite(x)), None)}
print(json.dumps(row), flush=True)
if os.environ.get("OUT"):
    open(os.path.join(os.environ["OUT"], f"bisect4_{variant}.json"), "w").write(json.dumps(row, indent=1))
