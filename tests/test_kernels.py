"""lora_mini.kernels: clear refusals on CPU; on a GPU with Triton, Liger's kernels give the plain model's
loss and gradients (the plain reference is transformers' own RMSNorm, SwiGLU MLP and RoPE)."""
import copy
import importlib.util

import pytest
import torch

from lora_mini import kernels, lowmem
from lora_mini.inject import apply_lora
from lora_mini.models import tiny_model

GPU = torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_check_refuses_what_it_cannot_fuse_and_changes_nothing():
    llama = tiny_model("llama")
    before = _params(llama)
    forward = llama.model.layers[0].mlp.forward
    with pytest.raises(ValueError, match="on cpu: move it with model.to"):
        kernels.fuse(llama)
    assert not kernels.fused(llama) and llama.model.layers[0].mlp.forward == forward
    assert all(torch.equal(before[n], p) for n, p in llama.named_parameters())
    with pytest.raises(ValueError, match="Llama-style.*'gpt2'"):
        kernels.check(tiny_model("gpt2"))
    with pytest.raises(ValueError, match="activation is 'gelu'"):
        kernels.check(tiny_model("llama", hidden_act="gelu"))
    assert kernels.modules_fused(llama) == {"rms_norm": 0, "swiglu": 0, "rope": False}


def test_scoped_restores_the_rope_function():
    from transformers.models.llama import modeling_llama
    plain = modeling_llama.apply_rotary_pos_emb
    with kernels.scoped():
        modeling_llama.apply_rotary_pos_emb = lambda *a: a           # what Liger's patch does, in effect
    assert modeling_llama.apply_rotary_pos_emb is plain


def test_check_names_the_missing_package(monkeypatch):
    llama = tiny_model("llama")
    monkeypatch.setattr(kernels, "_devices", lambda model: {"cuda"})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "liger_kernel" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install liger-kernel"):
        kernels.check(llama)


def _loss_and_grads(model, ids, chunked):
    model.zero_grad(set_to_none=True)
    loss = lowmem.causal_lm_loss(model, ids, ids) if chunked else model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.skipif(not GPU, reason="Liger's Triton kernels need a CUDA GPU and liger_kernel")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("lora", [False, True])
def test_fused_kernels_give_the_plain_loss_and_gradients(dtype, tol, lora):
    torch.manual_seed(0)
    plain = tiny_model("llama").to("cuda", dtype)
    if lora:
        apply_lora(plain, "all-linear", r=4, alpha=8)
        for n, p in plain.named_parameters():
            if n.endswith("lora_B"):
                torch.nn.init.normal_(p, std=0.1)          # B ≠ 0, so the LoRA gradients are not trivial
    else:
        plain.requires_grad_(True)
    fused = copy.deepcopy(plain)
    ids = torch.randint(0, plain.config.vocab_size, (2, 32), device="cuda")
    ref_loss, ref_grads = _loss_and_grads(plain, ids, chunked=False)
    with kernels.scoped():                                             # fuse patches RoPE process-wide
        kernels.fuse(fused)
        assert kernels.fused(fused) and kernels.modules_fused(fused) == {"rms_norm": 5, "swiglu": 2, "rope": True}
        loss, grads = _loss_and_grads(fused, ids, chunked=True)
    assert abs(loss.item() - ref_loss.item()) <= tol * abs(ref_loss.item())
    assert grads.keys() == ref_grads.keys() and grads
    for n, g in grads.items():
        ref = ref_grads[n].float()
        err = (g.float() - ref).norm() / ref.norm().clamp_min(1e-12)
        assert err <= 10 * tol, (n, err.item())
