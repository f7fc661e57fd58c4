"""`python -m lora_mini bench`: one training step of full fine-tuning vs PEFT LoRA vs lora_mini LoRA.

Same model, same inputs, same loss (causal LM loss over all tokens), same AdamW, one process,
after warm-up; eager and torch.compile'd. Per configuration: step time (median), tokens/s, peak
memory, and the ratios to full fine-tuning at the same shape and mode.

    methods   full              every parameter trains (bf16 weights on a GPU)
              peft              PEFT LoRA with its defaults (r, α, "all-linear", fp32 adapters)
              lora_mini         apply_lora(...) with the fast path (lora_mini/fast.py)
              lora_mini_nosplit the fast path without split-K weight-gradient reductions
              lora_mini_ref     the same layers with the fast path off (the straightforward forward)
              lora_mini_low     lora_mini's low-memory mode (lora_mini/lowmem.py): LoRA-aware
                                activation checkpointing + chunked linear cross-entropy (eager only)
              peft_gc           PEFT + transformers' gradient checkpointing (use_reentrant=False)
              full_fused        full FT with fused elementwise kernels (lora_mini/kernels.py: Liger's
              lora_mini_fused   RMSNorm, SwiGLU, RoPE) and the chunked linear + cross-entropy loss
                                (lowmem.causal_lm_loss); eager and graphed only (in compiled modes
                                inductor fuses the same elementwise work itself). time_ratio is to
                                plain full FT, time_ratio_same_kernels to full_fused (RoPE, which
                                Liger patches for the process, is restored after each fused row)
              peft_gc_liger     peft_gc on a model built after liger_kernel's
                                apply_liger_kernel_to_llama() (fused linear cross-entropy, RMSNorm,
                                RoPE, SwiGLU); skipped where liger_kernel is missing. Liger patches
                                transformers' Llama classes for the whole process, so these rows run
                                last (eager only, like the other memory-saving rows)
    modes     eager             plain PyTorch: Python launches every kernel
              graphed           the whole step (forward, backward, AdamW) replayed from a CUDA
                                graph (lora_mini/graphs.py): the GPU's own time, no Python (GPU only)
              compiled          torch.compile (inductor)
              compiled_graphed  torch.compile'd model inside the CUDA-graph step: fused kernels, no
                                Python per step (GPU only)

Model: --model (a saved or hub model, or tiny-llama / tiny-gpt2) or --shape (smollm2-135m,
smollm2-360m, smollm2-1.7b, tiny): a random-initialised Llama of that shape built in memory from a
LlamaConfig (seeded, no files, no hub). Every row records the model's shape ("model_shape").

Peak memory: torch.cuda.max_memory_allocated on a GPU. On a CPU there is no allocator counter,
so we report an estimate: parameters + gradients + optimizer state + tensors saved for backward
(unique storages, via saved_tensors_hooks), labelled "memory_kind" in the JSON.

The options become one BenchConfig (validated before the model loads, saved as "config"); the
time budget is the lab's Budget; `--append` resumes into an existing JSON: configurations it
already timed are not run again (the one way every lab job resumes: skip what is recorded).
The default output is runs/bench/; the committed figures/bench_gpu.json is written only by name.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import importlib
import importlib.util
import json
import math
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from .. import fast, kernels
from ..inject import apply_lora
from ..models import DEFAULT_MODEL, load_model, tiny_model
from .budget import Budget
from .checkpoint import atomic_write_text
from .config import ConfigError, _choice, _int, _num
from .graphs import GraphedStep, make_adamw
from .system import code_version

METHODS = ("full", "peft", "lora_mini", "lora_mini_nosplit", "lora_mini_ref", "lora_mini_low", "peft_gc",
           "peft_gc_liger", "full_fused", "lora_mini_fused")
EAGER_ONLY = ("lora_mini_low", "peft_gc", "peft_gc_liger")   # the memory-saving rows: eager, as practitioners run them
FUSED = ("full_fused", "lora_mini_fused")                   # Liger's kernels: eager and graphed modes
LIGER = ("peft_gc_liger",) + FUSED                          # need liger_kernel and a GPU
LORA_MINI = ("lora_mini", "lora_mini_nosplit", "lora_mini_ref", "lora_mini_low", "lora_mini_fused")
PEFT = ("peft", "peft_gc", "peft_gc_liger")
# SmolLM2's shapes (hidden, layers, heads, kv heads, MLP, vocab; tied embeddings); "tiny" for tests
SHAPES = {
    "smollm2-135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         intermediate_size=1536, vocab_size=49152),
    "smollm2-360m": dict(hidden_size=960, num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5,
                         intermediate_size=2560, vocab_size=49152),
    "smollm2-1.7b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
                         intermediate_size=8192, vocab_size=49152),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=256),
}
GRAPH_MODES = ("graphed", "compiled_graphed")
GRAPH_MEM_NOTE = ("not measured: the activations live in the CUDA graph's private memory pool, which "
                  "torch.cuda.max_memory_allocated does not see during replay")
MODES = ("eager", "graphed", "compiled", "compiled_graphed")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
GIB = 2 ** 30


# ----------------------------------------------------------------------------- accounting

def linear_shapes(config) -> list[tuple[int, int]]:
    """(in, out) of every "all-linear" LoRA target in one Llama-style decoder layer."""
    d, f = config.hidden_size, config.intermediate_size
    heads = config.num_attention_heads
    hd = getattr(config, "head_dim", None) or d // heads
    kv = getattr(config, "num_key_value_heads", heads) * hd
    return [(d, heads * hd), (d, kv), (d, kv), (heads * hd, d), (d, f), (d, f), (f, d)]


def flops_per_token(config, seq: int, r: int, method: str) -> dict:
    """Matmul FLOPs (2 per multiply-add) per token of one training step, by part.

    linear: full 6·in·out (forward, grad_x, grad_W); LoRA 4·in·out + 6·r·(in+out) (no grad_W,
    A and B cost 2·r·(in+out) forward and twice that backward; the fast path needs 4·r·(in+out)).
    head: V×d output layer, full 6·V·d, LoRA 4·V·d (no weight grad). attention: QKᵀ and PV,
    causal (half), forward + 2× backward = 6·T·d per layer, the same for every method.
    """
    L, d, V = config.num_hidden_layers, config.hidden_size, config.vocab_size
    io = linear_shapes(config)
    mm = sum(i * o for i, o in io) * L
    side = sum(i + o for i, o in io) * L
    attn = 6 * seq * d * L                  # 2·T·d forward (QKᵀ + PV, causal half), ×3 with backward
    if method == "full":
        linear, head = 6 * mm, 6 * V * d
    elif method == "lora_mini":
        linear, head = 4 * mm + 4 * r * side, 4 * V * d
    else:
        linear, head = 4 * mm + 6 * r * side, 4 * V * d
    return {"linear": linear, "head": head, "attention": attn, "total": linear + head + attn}


# NVIDIA H200 spec sheet: 989 TFLOP/s dense bf16 tensor-core peak (1979 is with 2:4 sparsity)
H200_BF16_DENSE_PEAK = 989e12
# whose maths each bench method runs, for flops_per_token (recomputation is not counted: model FLOPs)
FLOP_METHOD = {"full": "full", "full_fused": "full", "lora_mini": "lora_mini", "lora_mini_fused": "lora_mini",
               "lora_mini_nosplit": "lora_mini", "lora_mini_low": "lora_mini", "lora_mini_ref": "lora_mini_ref", "peft": "lora_mini_ref", "peft_gc": "lora_mini_ref",
               "peft_gc_liger": "lora_mini_ref"}


def shape_config(model_shape: dict):
    """A config for flops_per_token / linear_shapes from a bench JSON's "model_shape" entry."""
    missing = {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "vocab_size"} - set(model_shape)
    if missing:
        raise ValueError(f"model_shape lacks {', '.join(sorted(missing))}; pass the model's config instead")
    return SimpleNamespace(**model_shape)


def flop_limit(config, seq: int, r: int, method: str = "lora_mini") -> float:
    """LoRA's FLOPs per step over full fine-tuning's: the step-time ratio if every FLOP ran at one rate."""
    return flops_per_token(config, seq, r, method)["total"] / flops_per_token(config, seq, r, "full")["total"]


def achieved_tflops(row: dict, config, r: int) -> float:
    """Model TFLOP/s of a timed bench row: its method's FLOPs per token (FLOP_METHOD) × tokens / step."""
    if "step_s" not in row:
        raise ValueError(f"{row.get('method')} {row.get('mode')} {row.get('shape')} has no step time "
                         f"({row.get('skipped') or row.get('error') or 'not timed'}); pass a timed row")
    if row["method"] not in FLOP_METHOD:
        raise ValueError(f"unknown method {row['method']!r}; known: {', '.join(FLOP_METHOD)}")
    f = flops_per_token(config, row["seq"], r, FLOP_METHOD[row["method"]])["total"]
    return f * row["batch"] * row["seq"] / row["step_s"] / 1e12


# ----------------------------------------------------------------------------- one configuration

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def liger_copy(base_model):
    """base_model's weights in a model built after liger_kernel patched transformers' Llama classes.

    apply_liger_kernel_to_llama() replaces LlamaRMSNorm, the MLP, RoPE and the causal-LM forward
    (fused linear cross-entropy) for the whole process: models built afterwards use them.
    """
    if importlib.util.find_spec("liger_kernel") is None:
        raise LookupError(kernels.INSTALL)
    if getattr(base_model.config, "model_type", None) != "llama":
        raise LookupError(f"peft_gc_liger patches Llama models only; this one is {base_model.config.model_type!r}")
    from liger_kernel.transformers import apply_liger_kernel_to_llama
    from transformers import AutoModelForCausalLM
    apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                fused_linear_cross_entropy=True)
    dtype = next(base_model.parameters()).dtype
    model = AutoModelForCausalLM.from_config(base_model.config, dtype=dtype)   # the patched classes
    model.load_state_dict(base_model.state_dict())                            # the same weights
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build(base_model, method: str, r: int, alpha: float, device):
    """A fresh copy of base_model on `device`, set up for `method`. Returns (model, trainable params)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    model = liger_copy(base_model) if method == "peft_gc_liger" else copy.deepcopy(base_model)
    model = model.to(device)
    model.config.use_cache = False
    if method in ("full", "full_fused"):
        for p in model.parameters():
            p.requires_grad_(True)
    elif method in LORA_MINI:
        apply_lora(model, "all-linear", r=r, alpha=alpha)
        if method == "lora_mini_low":
            from .. import lowmem
            lowmem.enable(model)
    else:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules="all-linear",
                                                 lora_dropout=0.0, task_type="CAUSAL_LM"))
        if method in ("peft_gc", "peft_gc_liger"):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if method in FUSED:
        kernels.fuse(model)
    model.train()
    return model, [p for p in model.parameters() if p.requires_grad]


def _saved_bytes(step, model) -> int:
    """Bytes of the unique storages autograd saves for backward while running step(), weights excluded."""
    seen: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in weights:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


def _tensor_bytes(tensors) -> int:
    seen = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.numel():
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def make_step(base_model, method, mode, batch, seq, cfg, device, row) -> dict:
    """The model, optimizer and one training step for a configuration (in row: params, optimizer)."""
    graph_mode = mode in GRAPH_MODES
    model, params = build(base_model, method, cfg.rank, cfg.alpha, device)
    row["trainable_params"] = sum(p.numel() for p in params)
    opt = make_adamw(params, 1e-5, graphs=graph_mode)
    row["optimizer"] = ("AdamW(fused, capturable)" if graph_mode else
                        "AdamW(fused)" if device.type == "cuda" else "AdamW(foreach)")
    g = torch.Generator().manual_seed(cfg.seed)
    ids = torch.randint(0, base_model.config.vocab_size, (batch, seq), generator=g).to(device)
    fwd = torch.compile(model, backend=cfg.compile_backend) if mode in ("compiled", "compiled_graphed") else model

    def step_fn(inputs):
        if method == "lora_mini_low" or method in FUSED:   # chunked linear + cross-entropy: no B×T×vocab logits
            from .. import lowmem
            loss = lowmem.causal_lm_loss(fwd, inputs["ids"], inputs["ids"])
        else:                                # transformers' own loss (Liger's fused one under peft_gc_liger)
            loss = fwd(input_ids=inputs["ids"], labels=inputs["ids"]).loss
        loss.backward()
        opt.step()
        return loss.detach()

    parts = {"model": model, "params": params, "opt": opt, "fwd": fwd, "graphed": None}
    if graph_mode:
        graphed = parts["graphed"] = GraphedStep(step_fn, opt, warmup=cfg.warmup)

        def step():
            out = graphed({"ids": ids})
            if graphed.error:
                raise RuntimeError(f"CUDA graph capture failed: {graphed.error}")
            return out
    else:
        def step():
            loss = step_fn({"ids": ids})
            opt.zero_grad(set_to_none=True)
            return loss
    parts["step"] = step
    return parts


def time_steps(parts: dict, cfg, row: dict, device, t0: float) -> None:
    """Warm-up (graphed: `warmup` eager steps, then one that captures and replays), then cfg.steps timed steps."""
    step = parts["step"]
    for i in range(cfg.warmup + (parts["graphed"] is not None)):
        loss = step()
        if i == 0:
            row["loss_first"] = round(float(loss), 4)
    if parts["graphed"] is not None:
        row["capture_s"] = round(parts["graphed"].capture_seconds, 2)
    _sync(device)
    row["warmup_s"] = round(time.perf_counter() - t0, 2)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(cfg.steps):
        t = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t)
    row["step_s"] = statistics.median(times)
    row["step_s_all"] = [round(t, 5) for t in times]
    row["tokens_per_s"] = row["batch"] * row["seq"] / row["step_s"]


def measure_memory(parts: dict, row: dict, device) -> None:
    """Peak memory: the allocator's on a GPU (none for graph modes), an estimate on a CPU."""
    if device.type == "cuda":
        if parts["graphed"] is not None:   # a replay allocates nothing: the allocator's peak would miss the activations
            row["peak_mem_gib"] = None
            row["mem_note"] = GRAPH_MEM_NOTE
        else:
            row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / GIB
        return
    model, params, opt = parts["model"], parts["params"], parts["opt"]
    try:
        saved = _saved_bytes(parts["step"], model)
    except Exception as e:  # e.g. hooks not supported under compile
        row["mem_note"] = f"{type(e).__name__}: {str(e)[:200]}"
        return
    persistent = (_tensor_bytes(list(model.parameters()))           # weights
                  + sum(p.numel() * p.element_size() for p in params)  # grads
                  + _tensor_bytes([v for s in opt.state.values() for v in s.values()]))
    row["peak_mem_gib"] = (saved + persistent) / GIB


def model_shape(config, name: str | None = None) -> dict:
    """The model's name and dimensions (recorded in every row)."""
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "vocab_size", "tie_word_embeddings")
    out = {"name": name or getattr(config, "name_or_path", None)}
    out.update({k: getattr(config, k) for k in keys if hasattr(config, k)})
    return out


def profile_step(step, device, top: int = 20) -> dict:
    """One more step under torch.profiler: the ops with the most self time on the device (CUDA) or CPU.

    Where a step's time goes (GEMMs, elementwise kernels, the loss, the optimizer), for the write-up
    of what stands between a method and the FLOP limit."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        step()
        _sync(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    ev = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0]
    total = sum(getattr(e, attr) for e in ev)
    ev.sort(key=lambda e: -getattr(e, attr))
    return {"time_kind": attr, "total_ms": round(total / 1e3, 3),
            "top": [{"name": e.key[:120], "ms": round(getattr(e, attr) / 1e3, 3), "calls": e.count,
                     "share": round(getattr(e, attr) / total, 4) if total else None} for e in ev[:top]]}


def run_one(base_model, method, mode, batch, seq, cfg, device) -> dict:
    """Time one (method, mode, shape) configuration. Raises on failure (the caller records it)."""
    row = {"method": method, "mode": mode, "batch": batch, "seq": seq, "shape": f"{batch}x{seq}"}
    row["model_shape"] = model_shape(base_model.config, cfg.shape)
    t0 = time.perf_counter()
    parts: dict = {}
    try:
        if mode in GRAPH_MODES and device.type != "cuda":
            raise ValueError(f"mode {mode!r} (CUDA graphs) needs a GPU; use --modes eager on CPU")
        why = kernels.missing(device) if method in LIGER else None
        if why:
            raise LookupError(why)
        with kernels.scoped() if method in FUSED else contextlib.nullcontext(), \
                fast.fast_path(method != "lora_mini_ref", split_rows=0 if method == "lora_mini_nosplit" else None):
            parts = make_step(base_model, method, mode, batch, seq, cfg, device, row)
            if method in FUSED:
                row["kernels"] = kernels.modules_fused(parts["model"])
            time_steps(parts, cfg, row, device, t0)
            measure_memory(parts, row, device)
            if cfg.profile and parts["graphed"] is None:
                row["profile"] = profile_step(parts["step"], device)
    finally:
        parts.clear()
        if mode in ("compiled", "compiled_graphed"):
            torch._dynamo.reset()
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    return row


# ----------------------------------------------------------------------------- the whole benchmark

def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'16x1024,1x256' -> [(16, 1024), (1, 256)]."""
    shapes = []
    for part in text.split(","):
        try:
            b, t = (int(v) for v in part.lower().strip().split("x"))
            assert b > 0 and t > 1
        except (ValueError, AssertionError):
            raise ValueError(f"bad shape {part!r} in --shapes {text!r}; write BATCHxSEQ, e.g. 16x1024,1x256") from None
        shapes.append((b, t))
    return shapes


def shape_model(name: str, dtype, seed: int = 0):
    """A random-initialised Llama of one of SHAPES (seeded; built in memory: no files, no hub)."""
    from transformers import AutoModelForCausalLM, LlamaConfig
    if name not in SHAPES:
        raise ConfigError(f"unknown --shape {name!r}; choose from {','.join(SHAPES)}")
    config = LlamaConfig(**SHAPES[name], tie_word_embeddings=True, max_position_embeddings=8192,
                         rope_theta=100000.0, rms_norm_eps=1e-5, hidden_act="silu",
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.config.name_or_path = f"random-init {name} shape (seed {seed})"
    return model.eval()


def load_base(name: str, dtype, shape: str | None = None, seed: int = 0):
    """The model every configuration copies, kept on the CPU (so it adds nothing to GPU peaks)."""
    if shape is not None:
        model = shape_model(shape, dtype, seed)
    elif name in ("tiny-llama", "tiny-gpt2"):
        model = tiny_model(name.split("-")[1]).to(dtype)
    else:
        model, _ = load_model(name, device="cpu", dtype=dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def add_ratios(rows: list[dict]) -> None:
    """time_ratio of each row to full fine-tuning at the same shape and mode; mem_ratio to full
    fine-tuning in eager mode at the same shape (graph modes: none, see GRAPH_MEM_NOTE); the fused
    rows also time_ratio_same_kernels, to full_fused at the same shape and mode."""
    full = {(r["shape"], r["mode"]): r for r in rows if r["method"] == "full" and "step_s" in r}
    fused_full = {(r["shape"], r["mode"]): r for r in rows if r["method"] == "full_fused" and "step_s" in r}
    for r in rows:
        f = full.get((r["shape"], r["mode"]))
        f_eager = full.get((r["shape"], "eager"))
        if "step_s" in r and r.get("peak_mem_gib") is not None and f_eager and f_eager.get("peak_mem_gib") \
                and r["mode"] not in GRAPH_MODES:
            r["mem_ratio"] = r["peak_mem_gib"] / f_eager["peak_mem_gib"]
        else:
            r.pop("mem_ratio", None)
        ff = fused_full.get((r["shape"], r["mode"]))
        if ff and "step_s" in r and r["method"] in FUSED:
            r["time_ratio_same_kernels"] = r["step_s"] / ff["step_s"]
        if f and "step_s" in r:
            r["time_ratio"] = r["step_s"] / f["step_s"]
            if r.get("call", 1) != f.get("call", 1):
                r["ratio_note"] = f"full FT's row is from call {f.get('call', 1)}, this one from call {r.get('call', 1)}"
            else:
                r.pop("ratio_note", None)


def check_targets(rows: list[dict], method: str = "lora_mini") -> list[dict]:
    """The issue's targets, for the largest shape (time ≤ 0.85×, memory ≤ 1×) and the smallest (memory ≤ 0.65×)."""
    shapes = sorted({(r["batch"] * r["seq"], r["shape"]) for r in rows})
    if not shapes:
        return []
    big, small = shapes[-1][1], shapes[0][1]
    wanted = [(big, "time_ratio", 0.85), (big, "mem_ratio", 1.0)]
    if small != big:
        wanted.append((small, "mem_ratio", 0.65))
    out = []
    for shape, key, limit in wanted:
        for mode in MODES:
            r = next((r for r in rows if r["method"] == method and r["shape"] == shape and r["mode"] == mode), None)
            if r is None:
                continue
            value = r.get(key)
            out.append({"shape": shape, "mode": mode, "metric": key, "target": limit,
                        "value": None if value is None else round(value, 3),
                        "met": None if value is None else bool(value <= limit)})
    return out


def _ratio(rows, shape, a, mode_a, b, mode_b, key):
    ra = next((r for r in rows if (r["method"], r["mode"], r["shape"]) == (a, mode_a, shape) and key in r), None)
    rb = next((r for r in rows if (r["method"], r["mode"], r["shape"]) == (b, mode_b, shape) and key in r), None)
    return None if ra is None or rb is None or not rb[key] else ra[key] / rb[key]


def check_scale_targets(rows: list[dict]) -> list[dict]:
    """The targets at a large shape, for the largest shape in rows (None where a row is missing):
    lora_mini ≤ 0.75 × full FT's step (eager, graphed, compiled); lora_mini tokens/s ≥ 2.0 × PEFT's
    eager and ≥ 1.6 × compiled; lora_mini_low peak ≤ peft_gc_liger's, step ≤ 0.8 × peft_gc_liger's
    and ≤ 1.35 × lora_mini's eager step. The same step and PEFT targets for lora_mini_fused, against
    plain full FT and against full_fused (the same kernels on both sides)."""
    shapes = sorted({(r["batch"] * r["seq"], r["shape"]) for r in rows})
    if not shapes:
        return []
    big = shapes[-1][1]
    wanted = [(f"lora_mini/full step, {m}", "lora_mini", m, "full", m, "step_s", "<=", 0.75)
              for m in ("eager", "graphed", "compiled")]
    wanted += [("lora_mini/peft tokens_per_s, eager", "lora_mini", "eager", "peft", "eager", "tokens_per_s", ">=", 2.0),
               ("lora_mini/peft tokens_per_s, compiled", "lora_mini", "compiled", "peft", "compiled", "tokens_per_s",
                ">=", 1.6),
               ("lora_mini_low/peft_gc_liger peak", "lora_mini_low", "eager", "peft_gc_liger", "eager", "peak_mem_gib",
                "<=", 1.0),
               ("lora_mini_low/peft_gc_liger step", "lora_mini_low", "eager", "peft_gc_liger", "eager", "step_s",
                "<=", 0.8),
               ("lora_mini_low/lora_mini step, eager", "lora_mini_low", "eager", "lora_mini", "eager", "step_s",
                "<=", 1.35)]
    for m in ("eager", "graphed"):       # the fused kernels, against plain full FT and against the same kernels
        wanted += [(f"lora_mini_fused/full step, {m}", "lora_mini_fused", m, "full", m, "step_s", "<=", 0.75),
                   (f"lora_mini_fused/full_fused step, {m}", "lora_mini_fused", m, "full_fused", m, "step_s",
                    "<=", 0.75)]
    wanted.append(("lora_mini_fused/peft tokens_per_s, eager", "lora_mini_fused", "eager", "peft", "eager",
                   "tokens_per_s", ">=", 2.0))
    out = []
    for name, a, ma, b, mb, key, op, limit in wanted:
        v = _ratio(rows, big, a, ma, b, mb, key)
        out.append({"shape": big, "metric": name, "target": f"{op} {limit}", "value": None if v is None else round(v, 3),
                    "met": None if v is None else bool(v <= limit if op == "<=" else v >= limit)})
    return out


def fused_loss_check(rows: list[dict]) -> list[dict]:
    """Each fused row's first loss beside its plain method's (same weights, inputs, shape and mode).

    The fused kernels and the chunked loss compute the same maths in other kernels: the two losses
    differ only by bf16 rounding."""
    out = []
    for r in rows:
        if r["method"] not in FUSED or "loss_first" not in r:
            continue
        plain = r["method"].removesuffix("_fused")
        p = next((q for q in rows if (q["method"], q["mode"], q["shape"]) == (plain, r["mode"], r["shape"])
                  and "loss_first" in q), None)
        if p is not None:
            out.append({"method": r["method"], "mode": r["mode"], "shape": r["shape"], "loss_first": r["loss_first"],
                        "plain_loss_first": p["loss_first"], "abs_diff": round(abs(r["loss_first"] - p["loss_first"]), 4)})
    return out


def derived(rows: list[dict]) -> dict:
    """Everything the result derives from its rows (re-derived by load and merge_results)."""
    add_ratios(rows)
    return {"targets": check_targets(rows), "targets_fused": check_targets(rows, "lora_mini_fused"),
            "scale_targets": check_scale_targets(rows), "fused_loss_check": fused_loss_check(rows)}


def plan(shapes, modes, methods) -> list[tuple]:
    """Order of work, most important first (a time budget cuts from the end): every eager and
    CUDA-graph run (cheap), then compiled full FT and lora_mini at each shape, then compiled
    PEFT, straightforward and no-split LoRA; peft_gc_liger last of all (Liger patches
    transformers' Llama classes for the rest of the process; the fused rows restore what they patch)."""
    order = ("full", "lora_mini", "peft", "lora_mini_low", "peft_gc", "lora_mini_ref", "lora_mini_nosplit",
             "full_fused", "lora_mini_fused", "peft_gc_liger")

    def key(job):
        m, mode, b, t = job
        tier = 3 if m == "peft_gc_liger" else 0 if "compiled" not in mode else 1 if m in ("full", "lora_mini") else 2
        return (tier, MODES.index(mode), shapes.index((b, t)), order.index(m))
    return sorted(((m, mode, b, t) for mode in modes for (b, t) in shapes for m in methods), key=key)


OPTIONS = ("model", "shape", "device", "dtype", "shapes", "methods", "modes", "rank", "alpha", "steps", "warmup",
           "budget_s", "compile_backend", "out", "plot", "append", "profile")


def command_line(args) -> str:
    """The command line that gives these options (recorded in the JSON)."""
    parts = ["python -m lora_mini bench"]
    for key in OPTIONS:
        v = getattr(args, key, None)
        if v is True:
            parts.append(f"--{key.replace('_', '-')}")
        elif v is not None and v is not False:
            parts.append(f"--{key.replace('_', '-')} {v}")
    return " ".join(parts)


def _names(option: str, text: str, allowed) -> tuple:
    names = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not names:
        raise ConfigError(f"{option} must name at least one of {','.join(allowed)}")
    for m in names:
        if m not in allowed:
            raise ConfigError(f"unknown {option[2:-1]} {m!r} in {option}; choose from {','.join(allowed)}")
    return names


@dataclass(frozen=True)
class BenchConfig:
    """One bench call, every default resolved for the device; saved as "config" in the JSON."""
    model: str = DEFAULT_MODEL
    shape: str | None = None                # a SHAPES name: random-initialised model of that shape
    device: str = "cpu"
    dtype: str = "fp32"                     # the weights: bf16 or fp32
    shapes: tuple = ((1, 64), (1, 16))      # (batch, seq) pairs
    methods: tuple = METHODS
    modes: tuple = ("eager",)
    compile_backend: str = "inductor"
    rank: int = 16
    alpha: float = 32.0
    steps: int = 3                          # timed steps
    warmup: int = 1
    budget_s: float | None = None           # None: no limit
    seed: int = 0
    out: str = "runs/bench/bench_cpu.json"
    plot: str = "runs/bench/bench_cpu.png"
    append: bool = False                    # resume: keep the file's timed rows, run only the others
    profile: bool = False                   # one more step per row under torch.profiler (row["profile"])
    quiet: bool = False
    script: str | None = None               # the script that made this call, if any (recorded)
    command: str = "python -m lora_mini bench"

    def __post_init__(self):
        _int("--rank", self.rank)
        _num("--alpha", self.alpha)
        _int("--steps", self.steps, what="at least 1")
        _int("--warmup", self.warmup, what="at least 1")
        _int("--seed", self.seed, low=0, what="a non-negative integer")
        _choice("--dtype", self.dtype, ("bf16", "fp32"))
        if self.shape is not None:
            _choice("--shape", self.shape, tuple(SHAPES))
        if self.budget_s is not None:
            _num("--budget-s", self.budget_s, what="a positive number of seconds (0 on the command line: no limit)")
        if not self.shapes or not self.methods or not self.modes:
            raise ConfigError("--shapes, --methods and --modes must each name at least one value")
        for m in self.modes:
            _choice("--modes", m, MODES)
        for m in self.methods:
            _choice("--methods", m, METHODS)

    @classmethod
    def from_args(cls, args) -> "BenchConfig":
        """Options (add_arguments) -> a config, with the device-dependent defaults filled in."""
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        gpu = device.startswith("cuda")
        modes = _names("--modes", args.modes or ("eager,graphed,compiled" if gpu else "eager"), MODES)
        if args.no_compile:
            modes = tuple(m for m in modes if "compiled" not in m) or ("eager",)
        out = args.out or f"runs/bench/bench_{'gpu' if gpu else 'cpu'}.json"
        return cls(model=args.model, shape=getattr(args, "shape", None), device=device, dtype=args.dtype or ("bf16" if gpu else "fp32"),
                   shapes=tuple(parse_shapes(args.shapes or ("16x1024,1x256" if gpu else "1x64,1x16"))),
                   methods=_names("--methods", args.methods, METHODS), modes=modes,
                   compile_backend=args.compile_backend, rank=args.rank, alpha=args.alpha,
                   steps=(10 if gpu else 3) if args.steps is None else args.steps,
                   warmup=(3 if gpu else 1) if args.warmup is None else args.warmup,
                   budget_s=args.budget_s or None, seed=args.seed, out=out,
                   plot=args.plot or str(Path(out).with_suffix(".png")), append=args.append, quiet=args.quiet,
                   profile=getattr(args, "profile", False),
                   script=getattr(args, "script", None), command=command_line(args))

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def timed_keys(rows: list[dict]) -> set:
    """(method, mode, shape) of the rows that hold a timing: what a resumed bench does not run again."""
    return {(r["method"], r["mode"], r["shape"]) for r in rows if "step_s" in r}


def run_all(cfg: BenchConfig, base, device, budget: Budget, done: set = frozenset()) -> list[dict]:
    """Every planned configuration not in `done`, in priority order, inside the budget."""
    from tqdm.auto import tqdm
    methods = list(cfg.methods)
    if importlib.util.find_spec("peft") is None:
        methods = [m for m in methods if m not in PEFT]   # not installed here
    rows, took = [], {}
    work = [j for j in plan(list(cfg.shapes), list(cfg.modes), methods) if (j[0], j[1], f"{j[2]}x{j[3]}") not in done]
    for method, mode, b, t in tqdm(work, desc="bench", disable=cfg.quiet):
        guess = max(took.get(mode, [60.0 if "compiled" in mode else 10.0]))
        if method in EAGER_ONLY and mode != "eager":
            rows.append({"method": method, "mode": mode, "batch": b, "seq": t, "shape": f"{b}x{t}",
                         "skipped": f"{method} is measured in eager mode only (the memory-saving setting as "
                                    "people run it)"})
            continue
        if method in FUSED and "compiled" in mode:
            rows.append({"method": method, "mode": mode, "batch": b, "seq": t, "shape": f"{b}x{t}",
                         "skipped": f"{method} is measured eager and graphed: in compiled modes inductor fuses "
                                    "the same elementwise work itself"})
            continue
        if not budget.fits(guess):
            rows.append({"method": method, "mode": mode, "batch": b, "seq": t, "shape": f"{b}x{t}",
                         "skipped": f"time budget ({cfg.budget_s:g} s) would be exceeded"})
            continue
        try:
            row = run_one(base, method, mode, b, t, cfg, device)
            took.setdefault(mode, []).append(row["wall_s"])
        except LookupError as e:           # a missing optional package or device: skipped, with the reason
            row = {"method": method, "mode": mode, "batch": b, "seq": t, "shape": f"{b}x{t}", "skipped": str(e)}
        except Exception as e:  # a failing configuration is recorded, the others still run
            row = {"method": method, "mode": mode, "batch": b, "seq": t, "shape": f"{b}x{t}",
                   "error": f"{type(e).__name__}: {str(e)[:500]}"}
        rows.append(row)
        if not cfg.quiet:
            tqdm.write(summary_line(row))
    return rows


def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def describe(cfg: BenchConfig, base, device, rows: list[dict], wall_s: float) -> dict:
    """The result dict: the setting, the rows with their ratios, FLOP accounting and the targets."""
    mcfg = base.config
    result = {
        "command": cfg.command, "script": cfg.script, "config": cfg.to_dict(),
        "device": device_name(device), "torch": torch.__version__, "code_version": code_version(), "python": platform.python_version(),
        "model": getattr(mcfg, "name_or_path", cfg.model), "model_shape": model_shape(mcfg, cfg.shape or cfg.model),
        "dtype": str(DTYPES[cfg.dtype]).replace("torch.", ""),
        "rank": cfg.rank, "alpha": cfg.alpha, "targets_modules": "all-linear",
        "steps": cfg.steps, "warmup": cfg.warmup,
        "memory_kind": ("torch.cuda.max_memory_allocated" if device.type == "cuda" else
                        "estimate: params + grads + optimizer state + tensors saved for backward"),
        "wall_s": round(wall_s, 1), "results": rows,
    }
    from importlib import metadata
    for package, dist in (("transformers", "transformers"), ("peft", "peft"), ("liger_kernel", "liger-kernel")):
        if importlib.util.find_spec(package) is not None:
            try:
                result[package] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                result[package] = getattr(importlib.import_module(package), "__version__", None)
    if hasattr(mcfg, "intermediate_size"):
        seq = cfg.shapes[0][1]
        flops = {m: flops_per_token(mcfg, seq, cfg.rank, m) for m in ("full", "lora_mini", "lora_mini_ref")}
        result["flops_per_token"] = {"seq": seq, **flops,
                                     "ratio_lora_fast": flops["lora_mini"]["total"] / flops["full"]["total"],
                                     "ratio_lora_naive": flops["lora_mini_ref"]["total"] / flops["full"]["total"]}
    result.update(derived(rows))
    return result


def bench(cfg, base=None, done: set = frozenset()) -> dict:
    """Run every configuration of `cfg` (a BenchConfig, or the parsed options of add_arguments);
    returns the result dict (main writes it as JSON). done: (method, mode, shape) keys not to run.

    base: an already loaded model to copy (its parameters are frozen in place, so pass a model
    you do not train); default: load cfg.model.
    """
    if not isinstance(cfg, BenchConfig):
        cfg = BenchConfig.from_args(cfg)
    budget = Budget(cfg.budget_s)          # the budget counts the model load too
    device = torch.device(cfg.device)
    if base is None:
        base = load_base(cfg.model, DTYPES[cfg.dtype], cfg.shape, cfg.seed)
    else:
        base = base.to("cpu", DTYPES[cfg.dtype])
        for p in base.parameters():
            p.requires_grad_(False)
    rows = run_all(cfg, base, device, budget, done)
    return describe(cfg, base, device, rows, budget.elapsed())


def load(path) -> dict:
    """A bench JSON with its ratios and targets re-derived by the current rules (the measured rows
    are not changed; e.g. files written before GRAPH_MEM_NOTE still hold graph-mode peaks)."""
    result = json.loads(Path(path).read_text())
    result.update(derived(result["results"]))
    return result


def merge_results(old: dict, new: dict) -> dict:
    """new's rows added to old's (a row of new replaces old's row of the same method, mode and shape).

    For a benchmark run in several calls on the same machine type (e.g. eager and graphed in one,
    compiled in another; `--append` runs only what the file does not hold yet). Every command,
    script and config stays listed ("commands", "scripts", "configs"); each new row records its
    call ("call": 1, 2, ...). A ratio compares two rows of one (shape, mode); where they come
    from different calls, the row says so ("ratio_note").
    """
    for key in ("model", "dtype", "rank", "alpha", "device"):
        if old.get(key) != new.get(key):
            raise ValueError(f"--append: {key} differs ({old.get(key)!r} in the file, {new.get(key)!r} now); "
                             "write to another --out instead")
    commands = old.get("commands", [old.get("command")]) + [new["command"]]
    key = lambda r: (r["method"], r["mode"], r["shape"])   # noqa: E731
    fresh = {key(r) for r in new["results"]}
    rows = [r for r in old["results"] if key(r) not in fresh] + [{**r, "call": len(commands)} for r in new["results"]]
    merged = {**new, "results": rows, **derived(rows), "commands": commands,
              "scripts": old.get("scripts", [old.get("script")]) + [new.get("script")],
              "configs": old.get("configs", [old.get("config")]) + [new.get("config")],
              "wall_s": round(old.get("wall_s", 0) + new["wall_s"], 1)}
    return merged


def summary_line(r: dict) -> str:
    head = f"{r['shape']:>8} {r['mode']:<8} {r['method']:<17}"
    if "error" in r:
        return f"{head} ERROR {r['error'][:120]}"
    if "skipped" in r:
        return f"{head} skipped: {r['skipped']}"
    mem = f"{r['peak_mem_gib']:.3f} GiB" if r.get("peak_mem_gib") is not None else "n/a"
    ratio = f"  ×{r['time_ratio']:.2f} time" if "time_ratio" in r else ""
    ratio += f" ×{r['mem_ratio']:.2f} mem" if "mem_ratio" in r else ""
    return f"{head} {r['step_s'] * 1e3:9.1f} ms  {r['tokens_per_s']:10.0f} tok/s  {mem}{ratio}"


def table(result: dict) -> str:
    """The results as aligned text lines (ratios to full fine-tuning at the same shape and mode)."""
    return "\n".join(summary_line(r) for r in result["results"])


# ----------------------------------------------------------------------------- figure

def plot(result: dict, path=None, title: str | None = None):
    """Two bar charts: step time and peak memory as a ratio to full fine-tuning (1.0 = same).
    Graph modes have no memory bars (GRAPH_MEM_NOTE)."""
    import matplotlib.pyplot as plt

    rows = [r for r in result["results"] if "time_ratio" in r]
    groups = sorted({(r["batch"] * r["seq"], r["shape"], r["mode"]) for r in rows},
                    key=lambda g: (-g[0], MODES.index(g[2]) if g[2] in MODES else len(MODES)))
    methods = [m for m in ("full", "peft", "peft_gc", "peft_gc_liger", "lora_mini_ref", "lora_mini_nosplit",
                           "lora_mini", "lora_mini_low", "full_fused", "lora_mini_fused")
               if any(r["method"] == m for r in rows)]
    names = {"full": "full FT", "peft": "PEFT LoRA", "lora_mini_ref": "lora_mini (straightforward)",
             "lora_mini_nosplit": "lora_mini (fast, no split-K)",
             "lora_mini": "lora_mini (fast path)", "lora_mini_low": "lora_mini (low memory)",
             "peft_gc": "PEFT + checkpointing", "peft_gc_liger": "PEFT + checkpointing + Liger",
             "full_fused": "full FT + fused kernels", "lora_mini_fused": "lora_mini + fused kernels"}
    colors = {"full": "0.55", "peft": "tab:orange", "lora_mini_ref": "tab:blue", "lora_mini_nosplit": "tab:olive",
              "lora_mini": "tab:green", "lora_mini_low": "tab:cyan", "peft_gc": "tab:red", "peft_gc_liger": "tab:purple",
              "full_fused": "0.3", "lora_mini_fused": "darkgreen"}
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 1.25 * len(groups) + 2), 7.5))
    width = 0.8 / max(len(methods), 1)
    for ax, key, label, targets in ((axes[0], "time_ratio", "step time / full FT", (0.85,)),
                                    (axes[1], "mem_ratio", "peak memory / full FT", (1.0, 0.65))):
        for j, m in enumerate(methods):
            vals = []
            for _, shape, mode in groups:
                r = next((r for r in rows if r["method"] == m and r["shape"] == shape and r["mode"] == mode), {})
                if key == "mem_ratio" and mode in GRAPH_MODES:   # see GRAPH_MEM_NOTE
                    r = {}
                vals.append(r.get(key, math.nan))
            xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(groups))]
            bars = ax.bar(xs, vals, width, label=names[m], color=colors[m])
            for x, v in zip(xs, vals):
                if not math.isnan(v):
                    ax.text(x, v + 0.02, f"{v:.2f}", ha="center", va="bottom", fontsize=6, rotation=90)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.margins(y=0.18)
        for t in targets:
            if t != 1.0:
                ax.axhline(t, color="tab:red", ls="--", lw=0.8, label=f"target {t}")
        ax.set_xticks(range(len(groups)), [f"B{s.replace('x', '×T')}\n{mode.replace('_', ' + ')}" for _, s, mode in groups],
                      fontsize=8)
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7, ncol=3, loc="upper left")
    fig.suptitle(title or f"One training step, {result.get('model', '')}, r={result.get('rank')} all-linear "
                          f"— {result.get('device', '')}", fontsize=10)
    fig.tight_layout()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    return fig


def plot_scale(points: dict, limits: dict, peak: float = H200_BF16_DENSE_PEAK):
    """Left: achieved model TFLOP/s per (method, mode) of each model against the peak.
    Right: LoRA's step over full fine-tuning's, the FLOP limit against the measured modes.

    points: {model label: {(method, mode): TFLOP/s}}; limits: {model label: {"FLOP limit": x, mode: x, ...}}.
    """
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    keys = list(dict.fromkeys(k for pts in points.values() for k in pts))
    width = 0.8 / max(len(points), 1)
    for j, (label, pts) in enumerate(points.items()):
        xs = [i + (j - (len(points) - 1) / 2) * width for i in range(len(keys))]
        vals = [pts.get(k, math.nan) for k in keys]
        ax.bar(xs, vals, width, label=label)
        for x, v in zip(xs, vals):
            if not math.isnan(v):
                ax.text(x, v + 8, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    ax.axhline(peak / 1e12, color="k", ls="--", lw=0.8, label=f"bf16 dense peak {peak / 1e12:.0f}")
    ax.set_xticks(range(len(keys)), [f"{m}\n{mode}" for m, mode in keys], fontsize=7)
    ax.set_ylabel("model TFLOP/s (FLOPs of the method's maths / step time)")
    ax.legend(fontsize=8)
    names = list(dict.fromkeys(n for lim in limits.values() for n in lim))
    width = 0.8 / max(len(names), 1)
    for j, n in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(limits))]
        vals = [lim.get(n, math.nan) for lim in limits.values()]
        bx.bar(xs, vals, width, label=n, hatch="//" if j == 0 else None, color=None if j else "white",
               edgecolor="k" if j == 0 else None)
        for x, v in zip(xs, vals):
            bx.text(x, v + 0.02, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    bx.axhline(1.0, color="k", lw=0.8)
    bx.set_xticks(range(len(limits)), list(limits), fontsize=8)
    bx.set_ylabel("lora_mini step / full FT step")
    bx.set_ylim(0, 1.25 * max(v for lim in limits.values() for v in lim.values()))
    bx.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_memory_time(rows: list[dict], names: dict | None = None):
    """Peak memory (x) against step time (y), one point per timed row: the memory–time trade."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in rows:
        if "step_s" not in r or r.get("peak_mem_gib") is None:
            continue
        ax.scatter(r["peak_mem_gib"], r["step_s"] * 1e3, s=40)
        ax.annotate((names or {}).get(r["method"], r["method"]), (r["peak_mem_gib"], r["step_s"] * 1e3),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("peak memory, GiB (torch.cuda.max_memory_allocated)")
    ax.set_ylabel("step, ms (median)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- command line

def add_arguments(p) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help="model name, .gguf path, hub id, or tiny-llama / tiny-gpt2")
    p.add_argument("--shape", default=None, choices=list(SHAPES),
                   help="instead of --model: a random-initialised Llama of this shape, built in memory (seeded)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="weights (default: bf16 on GPU, fp32 on CPU)")
    p.add_argument("--shapes", default=None, help="BATCHxSEQ list (default: 16x1024,1x256 on GPU, 1x64,1x16 on CPU)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    p.add_argument("--modes", default=None, help="eager,graphed,compiled (default; on CPU: eager), compiled_graphed")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (default inductor)")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 10 on GPU, 3 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 3 on GPU, 1 on CPU)")
    p.add_argument("--budget-s", type=float, default=0,
                   help="skip configurations that would end after this many seconds (0: no limit)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON path (default runs/bench/bench_<gpu|cpu>.json; the committed "
                   "figures/bench_gpu.json is written only when named here)")
    p.add_argument("--plot", default=None, help="PNG path (default: the JSON path with .png)")
    p.add_argument("--append", action="store_true",
                   help="resume into the JSON at --out (same model, device, dtype, rank, alpha): configurations "
                        "already timed there are not run again; the others are run and added")
    p.add_argument("--script", default=None, help="the script that makes this call, recorded in the JSON "
                   "(e.g. 'bash scripts/gpu/bench.sh')")
    p.add_argument("--profile", action="store_true",
                   help="one more step per eager/compiled row under torch.profiler: its top ops by device time. "
                        "The profiler stays attached afterwards (pytorch/pytorch#144455) and slows the later "
                        "eager rows: take timings from a run without it")
    p.add_argument("--quiet", action="store_true")


def previous_result(cfg: BenchConfig) -> dict | None:
    """With --append: the JSON at --out, checked against this call before any work (else None).
    (merge_results checks the loaded model's name as well, once it is known.)"""
    path = Path(cfg.out)
    if not (cfg.append and path.is_file()):
        return None
    old = json.loads(path.read_text())
    now = {"dtype": str(DTYPES[cfg.dtype]).replace("torch.", ""), "rank": cfg.rank, "alpha": cfg.alpha,
           "device": device_name(torch.device(cfg.device))}
    if "config" in old:
        now["config.model"] = cfg.model
        old["config.model"] = old["config"].get("model")
        now["config.shape"] = cfg.shape
        old["config.shape"] = old["config"].get("shape")
    for key, value in now.items():
        if old.get(key) != value:
            raise ConfigError(f"--append: {key} differs ({old.get(key)!r} in {path}, {value!r} now); "
                              "write to another --out instead")
    old.pop("config.model", None)
    old.pop("config.shape", None)
    return old


def main(args) -> int:
    cfg = BenchConfig.from_args(args)         # every option checked before anything loads
    for option, path in (("--out", cfg.out), ("--plot", cfg.plot)):
        if Path(path).is_dir():
            raise ConfigError(f"{option} {path} is a folder; name a file, e.g. {Path(path) / 'bench.json'}")
    old = previous_result(cfg)
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    result = bench(cfg, done=timed_keys(old["results"]) if old else frozenset())
    if old is not None:
        result = merge_results(old, result)
    atomic_write_text(cfg.out, json.dumps(result, indent=1))
    try:
        plot(result, cfg.plot)
    except Exception as e:  # the JSON is what matters; say why the figure is missing
        print(f"plot failed: {type(e).__name__}: {e}")
    print(table(result))
    for t in result["targets"]:
        print(f"target {t['shape']} {t['mode']:<8} {t['metric']} = {t['value']} (≤ {t['target']}): "
              f"{'met' if t['met'] else 'NOT met' if t['met'] is not None else 'n/a'}")
    for t in result["scale_targets"]:
        print(f"target {t['shape']} {t['metric']} = {t['value']} ({t['target']}): "
              f"{'met' if t['met'] else 'NOT met' if t['met'] is not None else 'n/a'}")
    print(f"wrote {cfg.out} and {cfg.plot}")
    return 0


if __name__ == "__main__":  # python -m lora_mini.lab.bench ... (same as python -m lora_mini bench ...)
    from lora_mini.__main__ import main as _cli
    import sys
    sys.exit(_cli(["bench", *sys.argv[1:]]))
