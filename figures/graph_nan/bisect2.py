"""Bisect 2: the real finetune() path, full FT + CUDA graph + autocast, with the refusal removed."""
import copy, importlib.util, json, math, os, sys, time
import torch
import lora_mini
from lora_mini import load_model

src = open(os.path.join(os.path.dirname(lora_mini.__file__), "train.py")).read()
assert "if cuda_graph and amp:" in src
def variant(cache=True):
    s = src.replace("if cuda_graph and amp:", "if False:")
    if not cache:
        s = s.replace("with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):",
                      "with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=False):")
        assert "cache_enabled=False" in s
    name = f"lora_mini._train_diag_{int(cache)}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    mod = importlib.util.module_from_spec(spec); mod.__package__ = "lora_mini"
    sys.modules[name] = mod
    exec(compile(s, name, "exec"), mod.__dict__)
    return mod

base, tok = load_model(device="cpu", dtype=torch.float32)
rows = []
def go(name, cache=True, dtype=torch.float32, eval_every=10, random_init=False, lr=5e-5, cuda_graph=True):
    mod = variant(cache)
    if random_init:
        from transformers import AutoModelForCausalLM
        torch.manual_seed(0)
        m = AutoModelForCausalLM.from_config(base.config, dtype=torch.float32)
    else:
        m = copy.deepcopy(base)
    m = m.to("cuda", dtype)
    t = time.perf_counter()
    try:
        res = mod.finetune(m, tok, method="full", lr=lr, steps=30, batch_size=64, digits=(2, 3), n_train=4000,
                           n_test=32, warmup_steps=3, eval_every=eval_every, seed=0, merge_check=False,
                           progress=False, cuda_graph=cuda_graph)
        losses = [h["loss"] for h in res["history"]]
        row = {"name": name, "step_mode": res["step_mode"], "graph_error": res["graph_error"], "amp": res["amp"],
               "losses": losses, "first_nan_step": next((i + 1 for i, x in enumerate(losses) if not math.isfinite(x)), None),
               "exact_match_after": res["exact_match_after"], "seconds": time.perf_counter() - t}
    except Exception as e:
        row = {"name": name, "exception": f"{type(e).__name__}: {e}"[:600]}
    print(json.dumps(row), flush=True); rows.append(row)
    del m; torch.cuda.empty_cache()

go("real, full FT eager + autocast (reference)", cuda_graph=False)
go("real, graph + autocast (failing config)")
go("real, graph + autocast, no eval at step 0", eval_every=0)
go("real, graph + autocast cache_enabled=False", cache=False)
go("real, graph, bf16 weights, no autocast", dtype=torch.bfloat16)
go("random init, graph + autocast", random_init=True)
if os.environ.get("OUT"):
    open(os.path.join(os.environ["OUT"], "bisect2.json"), "w").write(json.dumps(rows, indent=1))
