"""Fused elementwise kernels for Llama-style models, from Liger Kernel (Triton, GPU only).

Once LoRA has removed the weight-gradient GEMMs, what is left of a training step besides the
GEMMs is elementwise work: RMSNorm (upcast, square, mean, rsqrt, scale, downcast), SwiGLU
(silu(gate) · up) and RoPE (q·cos + rotate_half(q)·sin, the same for k), each a handful of
kernels that read and write a whole (tokens × features) tensor, forward and backward. At the
SmolLM2-1.7B shape that is ~50 ms of a ~200 ms step, the same for LoRA and full fine-tuning.
Liger Kernel (github.com/linkedin/Liger-Kernel) has one Triton kernel for each of them, forward
and backward, computing the same maths:

    fuse(model)     RMSNorm and SwiGLU: the model's own modules get Liger's forward (this model
                    only); RoPE: transformers' Llama `apply_rotary_pos_emb` becomes Liger's for the
                    whole process (Liger's design: the attention calls that module-level function).
                    The loss is not touched: pair it with `lowmem.causal_lm_loss` (chunked linear +
                    cross-entropy, no B × T × vocab logits) for the fused loss. With the
                    low-memory mode (`lowmem.enable`, after fuse) the recomputed layers keep
                    Liger's RMSNorm and SwiGLU.
    check(model)    the same checks fuse makes, without changing anything: a clear error if
                    liger_kernel is missing, the model is not on a CUDA device, or it is not a
                    Llama-style model with SwiGLU MLPs and RMSNorm.
    missing(device) why the kernels cannot run on a device (None: they can), for callers that
                    check before any model exists (the command line, the bench).
    with scoped():  fuse inside the block; on leaving, transformers' RoPE function is the plain one
                    again (to time plain and fused models in one process).

The plain PyTorch reference is the model's own code (transformers' LlamaRMSNorm, LlamaMLP and
apply_rotary_pos_emb); the bench compares loss and step time of both on the GPU, and
tests/test_kernels.py compares losses and gradients there (skipped without CUDA + Triton).
"""
from __future__ import annotations

import contextlib
import importlib.util

import torch.nn as nn

KERNELS = ("plain", "liger")
# config.model_type of the models whose modules are Llama's (RMSNorm, SwiGLU MLP, Llama RoPE)
LLAMA_LIKE = ("llama",)
INSTALL = ("liger_kernel is not installed: pip install liger-kernel (a pure-Python wheel; it needs "
           "Triton, which comes with torch's CUDA builds)")


def missing(device) -> str | None:
    """Why Liger's kernels cannot run on `device` ("cuda", "cpu", a torch.device): None when they can."""
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind != "cuda":
        return f"Liger's Triton kernels run on a GPU, not on {kind}"
    if importlib.util.find_spec("liger_kernel") is None:
        return INSTALL
    return None


def check(model: nn.Module) -> None:
    """Raise (naming the fix) unless fuse(model) can run; changes nothing."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in LLAMA_LIKE:
        raise ValueError(f"kernels='liger' fuses Llama-style models (SmolLM2, Llama); this one is "
                         f"{model_type!r}: use kernels='plain'")
    act = getattr(model.config, "hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ValueError(f"kernels='liger' fuses SwiGLU (silu) MLPs; this model's activation is {act!r}: "
                         f"use kernels='plain'")
    devices = _devices(model)
    if devices != {"cuda"}:
        raise ValueError(f"kernels='liger' runs Triton kernels on a GPU; the model is on "
                         f"{', '.join(sorted(devices))}: move it with model.to('cuda') (--device cuda) "
                         f"or use kernels='plain'")
    if importlib.util.find_spec("liger_kernel") is None:
        raise ModuleNotFoundError(INSTALL)


def _devices(model: nn.Module) -> set:
    return {p.device.type for p in model.parameters()}


def _body(model: nn.Module) -> nn.Module:
    return getattr(model, getattr(model, "base_model_prefix", "model"), model)


def fuse(model: nn.Module) -> nn.Module:
    """Liger's RMSNorm, SwiGLU and RoPE kernels in this Llama model (see the module docstring)."""
    check(model)
    from liger_kernel.transformers.monkey_patch import apply_liger_kernel_to_llama
    from transformers.models.llama import modeling_llama
    classes = modeling_llama.LlamaRMSNorm, modeling_llama.LlamaMLP
    apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                fused_linear_cross_entropy=False, model=model)
    # Liger also swaps the classes transformers builds new models from; models built later stay plain
    modeling_llama.LlamaRMSNorm, modeling_llama.LlamaMLP = classes
    model._lora_mini_kernels = "liger"
    return model


@contextlib.contextmanager
def scoped():
    """transformers' Llama RoPE function as it was before the block, whatever fuse did inside it."""
    from transformers.models.llama import modeling_llama
    saved = modeling_llama.apply_rotary_pos_emb
    try:
        yield
    finally:
        modeling_llama.apply_rotary_pos_emb = saved


def fused(model: nn.Module) -> bool:
    """Whether fuse(model) ran on this model."""
    return getattr(model, "_lora_mini_kernels", "plain") == "liger"


def runs_liger(module: nn.Module) -> bool:
    """Whether this module runs Liger's forward (fuse binds it per instance and renames the module)."""
    return module._get_name().startswith("Liger")


def modules_fused(model: nn.Module) -> dict:
    """How many RMSNorm / MLP modules of the model run Liger's forward, and whether transformers'
    Llama RoPE function is Liger's now (for the record)."""
    from transformers.models.llama import modeling_llama
    counts = {"rms_norm": 0, "swiglu": 0}
    for m in _body(model).modules():
        name = m._get_name()
        counts["rms_norm"] += name == "LigerRMSNorm"
        counts["swiglu"] += name == "LigerSwiGLUMLP"
    counts["rope"] = modeling_llama.apply_rotary_pos_emb.__module__.startswith("liger_kernel")
    return counts
