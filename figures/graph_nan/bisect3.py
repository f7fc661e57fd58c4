"""Bisect 3: the finetune.sh sequence in ONE process (old code in .diag/old): LoRA graph run, then
full FT graph + autocast (refusal removed), as the 2026-12-02 sweep did; and full FT first."""
import copy, importlib.util, json, math, os, sys, time
CODE = os.environ.get("CODE", "old")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), CODE))
import torch
import lora_mini
assert f"/{CODE}/" in lora_mini.__file__, lora_mini.__file__
from lora_mini import load_model
src = open(os.path.join(os.path.dirname(lora_mini.__file__), "train.py")).read()
s = src.replace("if cuda_graph and amp:", "if False:")
spec = importlib.util.spec_from_loader("lora_mini._train_diag", loader=None)
mod = importlib.util.module_from_spec(spec); mod.__package__ = "lora_mini"; sys.modules[spec.name] = mod
exec(compile(s, spec.name, "exec"), mod.__dict__)
base, tok = load_model(device="cpu", dtype=torch.float32)
rows = []
def go(name, method, lr, steps=300, warmup=30, graph=True):
    import gc
    dtype = torch.bfloat16 if method == "lora" else torch.float32
    m = copy.deepcopy(base).to("cuda", dtype)
    t = time.perf_counter()
    res = mod.finetune(m, tok, method=method, lr=lr, steps=steps, batch_size=64, digits=(2, 3), n_train=20000,
                       n_test=300, n_val=300, warmup_steps=warmup, eval_every=100, seed=0, merge_check=False,
                       progress=False, cuda_graph=graph)
    losses = [h["loss"] for h in res["history"]]
    row = {"code": CODE, "name": name, "method": method, "lr": lr, "step_mode": res["step_mode"], "amp": res["amp"],
           "first_nan_step": next((i + 1 for i, x in enumerate(losses) if not math.isfinite(x)), None),
           "loss_first5": losses[:5], "loss_last": losses[-1], "exact_match_after": res["exact_match_after"],
           "exact_match_val": res.get("exact_match_val"), "train_seconds": res["train_seconds"],
           "wall_seconds": time.perf_counter() - t}
    print(json.dumps(row), flush=True); rows.append(row)
    del m, res; gc.collect(); torch.cuda.empty_cache()
go("lora graph", "lora", 1e-3)
go("full graph+autocast, after a LoRA graph run", "full", 5e-5)
if os.environ.get("OUT"):
    open(os.path.join(os.environ["OUT"], f"bisect3_{CODE}.json"), "w").write(json.dumps(rows, indent=1))
