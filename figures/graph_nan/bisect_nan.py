"""Bisect: full fine-tuning + CUDA graph + bf16 autocast -> NaN after capture (H200, 2026-12-02)."""
import json, math, sys, time
import torch, torch.nn.functional as F
from transformers import LlamaConfig, AutoModelForCausalLM
from lora_mini.lab.graphs import GraphedStep, make_adamw

IGN = -100
def model_for(dtype, tied=True, layers=30):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=layers,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                      tie_word_embeddings=tied, rms_norm_eps=1e-5, rope_theta=100000.0)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).to("cuda", dtype)

def batch(step, B=64, T=48):
    g = torch.Generator().manual_seed(1000 + step)
    ids = torch.randint(0, 49152, (B, T), generator=g)
    labels = ids.clone(); labels[:, : T // 2] = IGN
    return {"input_ids": ids.cuda(), "labels": labels.cuda()}

def run(name, dtype=torch.float32, amp=True, cache=True, graph=True, clip=True, tied=True, capt_opt=None,
        steps=12, lr=5e-5, loss_mode="static"):
    m = model_for(dtype, tied); m.train()
    params = [p for p in m.parameters()]
    opt = make_adamw(params, lr, graphs=graph if capt_opt is None else capt_opt)
    head = m.get_output_embeddings()
    def step_fn(b):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp, cache_enabled=cache):
            h = m.model(input_ids=b["input_ids"]).last_hidden_state
            logits = head(h[:, :-1])
            tgt = b["labels"][:, 1:]
            loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), ignore_index=IGN, reduction="sum")
            n = (tgt != IGN).sum()
        loss = loss / n
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.detach()
    gs = GraphedStep(step_fn, opt, warmup=3) if graph else None
    out = []
    for s in range(steps):
        b = batch(s)
        if gs is not None:
            v = gs(b)
        else:
            v = step_fn(b); opt.zero_grad(set_to_none=True)
        out.append(float(v))
    w = sum(float(p.float().abs().sum()) for p in params)
    res = {"name": name, "losses": out, "mode": gs.mode if gs else "eager", "error": gs.error if gs else None,
           "weights_abs_sum": w, "nan": any(math.isnan(x) for x in out)}
    print(json.dumps(res), flush=True)
    del m, opt, gs; torch.cuda.empty_cache()
    return res

if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
    rows = []
    cases = [
        ("ref eager fp32+autocast", dict(graph=False)),
        ("eager fp32+autocast, capturable AdamW", dict(graph=False, capt_opt=True)),
        ("graph fp32+autocast (cache on) [failing config]", dict()),
        ("graph fp32+autocast cache_enabled=False", dict(cache=False)),
        ("graph fp32, no autocast", dict(amp=False)),
        ("graph bf16 weights, no autocast", dict(dtype=torch.bfloat16, amp=False)),
        ("graph fp32+autocast, no clipping", dict(clip=False)),
        ("graph fp32+autocast, untied embeddings", dict(tied=False)),
        ("ref eager fp32+autocast untied", dict(graph=False, tied=False)),
        ("ref eager fp32 no autocast", dict(graph=False, amp=False)),
    ]
    for name, kw in cases:
        try:
            rows.append(run(name, **kw))
        except Exception as e:
            rows.append({"name": name, "exception": f"{type(e).__name__}: {e}"[:500]}); print(rows[-1], flush=True)
    import os
    if os.environ.get("OUT"):
        open(os.path.join(os.environ["OUT"], "bisect_nan.json"), "w").write(json.dumps(rows, indent=1))
