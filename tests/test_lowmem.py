"""Low-memory mode (lora_mini/lowmem.py): the same loss and gradients as the plain model, less saved."""
import copy
import functools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lora_mini import apply_lora, lowmem, tiny_model
from lora_mini.lowmem import RMSNormFunction, SwiGLUFunction, linear_cross_entropy


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("chunk", [1, 5, 64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_linear_cross_entropy_matches_plain_fp32(chunk, reduction):
    torch.manual_seed(0)
    h = torch.randn(2, 11, 16, requires_grad=True)
    W = torch.randn(40, 16, requires_grad=True)
    labels = torch.randint(0, 40, (2, 11))
    labels[0, :4] = -100
    got = linear_cross_entropy(h, W, labels, chunk_tokens=chunk, reduction=reduction)
    gh, gW = torch.autograd.grad(got * 1.7, (h, W))
    want = F.cross_entropy((h @ W.t()).flatten(0, 1), labels.flatten(), reduction=reduction)
    wh, wW = torch.autograd.grad(want * 1.7, (h, W))
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert _rel(gh, wh) < 1e-5 and _rel(gW, wW) < 1e-5
    assert gh[0, :4].abs().max() == 0                       # ignored positions get no gradient


def test_linear_cross_entropy_bf16_and_frozen_head():
    torch.manual_seed(1)
    h = torch.randn(24, 32, dtype=torch.bfloat16, requires_grad=True)
    W = torch.randn(50, 32, dtype=torch.bfloat16)           # frozen: no weight gradient is made
    labels = torch.randint(0, 50, (24,))
    got = linear_cross_entropy(h, W, labels, chunk_tokens=7)
    (gh,) = torch.autograd.grad(got, (h,))
    want = F.cross_entropy((h @ W.t()).float(), labels)
    (wh,) = torch.autograd.grad(want, (h,))
    assert got.item() == pytest.approx(want.item(), rel=1e-2) and _rel(gh, wh) < 3e-2
    with pytest.raises(ValueError, match="chunk_tokens"):
        linear_cross_entropy(h, W, labels, chunk_tokens=0)


def test_rmsnorm_and_swiglu_functions_match_autograd():
    x = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: RMSNormFunction.apply(x, w, 1e-6), (x, w))
    g, u = (torch.randn(4, 6, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(SwiGLUFunction.apply, (g, u))
    assert torch.allclose(SwiGLUFunction.apply(g, u), F.silu(g) * u)
    g, u = (torch.randn(64, 96, dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    go = torch.randn(64, 96, dtype=torch.bfloat16)
    got = torch.autograd.grad(SwiGLUFunction.apply(g, u), (g, u), go)
    want = torch.autograd.grad(F.silu(g) * u, (g, u), go)
    assert all(torch.equal(a, b) for a, b in zip(got, want))   # bf16: the same bits as autograd's kernels


def _pair(dtype, full=False, tied=False):
    torch.manual_seed(0)
    m = tiny_model("llama", tie_word_embeddings=tied).to(dtype).train()
    if full:
        for p in m.parameters():
            p.requires_grad_(True)
    else:
        apply_lora(m, "all-linear", r=4, alpha=8)
        for n, p in m.named_parameters():
            if "lora_B" in n:
                nn.init.normal_(p, std=0.3)                 # non-zero B: the adapter matters
    return m, lowmem.enable(copy.deepcopy(m))


def _grads(model, loss):
    loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 5e-2)])
@pytest.mark.parametrize("full,tied", [(False, False), (False, True), (True, True)])
def test_low_memory_model_matches_plain(dtype, tol, full, tied):
    """LoRA or full FT (tied head: the embedding's gradient has both parts), labels with -100."""
    plain, low = _pair(dtype, full, tied)
    ids = torch.randint(0, 256, (2, 12))
    labels = ids.clone()
    labels[0, :5] = -100
    want = plain(input_ids=ids, labels=labels).loss
    got = lowmem.causal_lm_loss(low, ids, labels, chunk_tokens=5)
    assert got.item() == pytest.approx(want.item(), rel=tol)
    gw, gg = _grads(plain, want), _grads(low, got)
    assert gw.keys() == gg.keys() and len(gw) > 0
    for n in gw:
        assert _rel(gg[n], gw[n]) < tol, n


def test_low_memory_saves_only_layer_inputs_and_skips_the_down_projection(monkeypatch):
    plain, low = _pair(torch.float32)
    ids = torch.randint(0, 256, (2, 16))

    def saved(model, loss_fn):
        seen = {}
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

        def pack(t):
            if t.untyped_storage().data_ptr() not in weights:
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn(model)
        return sum(seen.values()), loss

    plain_bytes, _ = saved(plain, lambda m: m(input_ids=ids, labels=ids).loss)
    low_bytes, loss = saved(low, lambda m: lowmem.causal_lm_loss(m, ids, ids))
    assert low_bytes < plain_bytes / 4
    calls = []
    real = lowmem.KnownGradLinear.apply
    monkeypatch.setattr(lowmem.KnownGradLinear, "apply", lambda *a: calls.append(1) or real(*a))
    loss.backward()
    assert len(calls) == 2                                  # one stand-in per layer's recomputation


def test_enable_refuses_dropout_and_disable_restores():
    m = tiny_model("llama").train()
    apply_lora(m, "all-linear", r=4, alpha=8, dropout=0.1)
    with pytest.raises(ValueError, match="dropout must be 0"):
        lowmem.enable(m)
    m2 = tiny_model("llama").train()
    apply_lora(m2, "all-linear", r=4, alpha=8)
    lowmem.enable(m2)
    assert lowmem.is_enabled(m2) and "forward" in m2.model.layers[0].__dict__
    lowmem.disable(m2)
    assert not lowmem.is_enabled(m2)
    assert not any("forward" in mod.__dict__ for mod in m2.modules())


def test_trainer_memory_low_trains_like_normal():
    """TrainConfig(memory="low") (finetune --memory low): same losses step by step as the normal mode."""
    from lora_mini.lab.config import ConfigError, TrainConfig
    from lora_mini.lab.trainer import train

    def run(memory):
        torch.manual_seed(0)
        m = tiny_model("llama").train()
        apply_lora(m, "all-linear", r=4, alpha=8)
        g = torch.Generator().manual_seed(1)
        data = []
        for _ in range(3):
            ids = torch.randint(2, 256, (2, 10), generator=g)
            labels = ids.clone()
            labels[:, :4] = -100
            data.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
        out = train(m, iter(data), steps=3, lr=1e-2, memory=memory, progress=False, log_every=1)
        return [h["loss"] for h in out["history"]], out["strategy"]

    normal, low = run("normal"), run("low")
    assert low[1] == "eager" and len(low[0]) == 3
    assert low[0] == pytest.approx(normal[0], rel=1e-4)
    with pytest.raises(ConfigError, match="--memory low runs eager"):
        TrainConfig(memory="low", strategy="cuda_graph")
    with pytest.raises(ConfigError, match="--memory"):
        TrainConfig(memory="tiny")


def test_activation_estimate_scales_with_layers_not_vocab():
    """At SmolLM2-1.7B's shape, B8×T1024: well under the ~16 GiB the plain step keeps; the logits chunk is bounded."""
    est = lowmem.activation_bytes(2048, 24, 8192, 49152, 8, 1024)
    assert est["kept"] == 25 * 8192 * 2048 * 2
    assert 1.0 < est["total"] / 2**30 < 2.5
    more_vocab = lowmem.activation_bytes(2048, 24, 8192, 4 * 49152, 8, 1024)
    assert more_vocab["loss"] < 4 * est["loss"] and more_vocab["kept"] == est["kept"]
    assert lowmem.activation_bytes(2048, 48, 8192, 49152, 8, 1024)["kept"] == 49 * 8192 * 2048 * 2


def test_enable_keeps_modules_that_run_liger_kernels():
    """A model fused with kernels.fuse keeps Liger's RMSNorm / SwiGLU forwards under the low-memory mode
    (stood in here by the modules' own forwards under Liger's names: Liger's kernels need a GPU)."""
    plain, _ = _pair(torch.float32)
    fused = copy.deepcopy(plain)
    calls = []

    def as_liger(mod, name):
        own = type(mod).forward
        mod.__dict__["forward"] = lambda *a, **k: calls.append(name) or own(mod, *a, **k)
        mod.__dict__["_get_name"] = lambda: name
    for mod in fused.modules():
        if type(mod).__name__ == "LlamaRMSNorm":
            as_liger(mod, "LigerRMSNorm")
        elif type(mod).__name__ == "LlamaMLP":
            as_liger(mod, "LigerSwiGLUMLP")
    lowmem.enable(fused)
    ids = torch.randint(0, 256, (2, 12))
    want = plain(input_ids=ids, labels=ids).loss
    got = lowmem.causal_lm_loss(fused, ids, ids, chunk_tokens=5)
    assert sorted(set(calls)) == ["LigerRMSNorm", "LigerSwiGLUMLP"]
    n_forward = len(calls)                                  # 2 layers: 2 norms + 1 MLP each, plus the final norm
    assert n_forward == 7
    gw, gg = _grads(plain, want), _grads(fused, got)
    assert len(calls) == n_forward + 6                      # the backward recomputes each layer's norms and MLP
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    for n in gw:
        assert _rel(gg[n], gw[n]) < 1e-5, n
    low = lowmem.enable(copy.deepcopy(plain))               # an unfused model gets lowmem's own functions
    assert all(isinstance(m.__dict__.get("forward"), functools.partial) for m in low.modules()
               if type(m).__name__ in ("LlamaRMSNorm", "LlamaMLP"))
