"""Several LoRA adapters on one frozen base: switch per call, or mix them in one batch.

    states = [lora_state(m) for m in trained_models]          # {name: (A, B, scaling)} each
    apply_multi_lora(base_model, states)                      # K adapters per layer, W shared
    with use_adapter(model, 1): model.generate(...)           # whole batch uses adapter 1
    with use_adapter(model, torch.tensor([0, 2, -1])): ...    # row i uses adapter idx[i]; −1 = base

Per layer the K adapters are stacked, A: K × r × in, B: K × out × r, and for a batch with a
per-row index idx (b,) the LoRA branch gathers each row's own pair:

    y[i] = W x[i] + s[idx_i] · B[idx_i] (A[idx_i] x[i])

so one forward serves b requests for up to K different fine-tunes (the idea behind S-LoRA and
Punica). Memory: one W plus K small (A, B), instead of K copies of W.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from .inject import _set_module, find_targets, lora_modules
from .layers import LINEAR_TYPES, Conv1D


def lora_state(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """{module name: (A r × in, B out × r, scaling)} copied out of a model with LoRA layers."""
    layers = lora_modules(model)
    if not layers:
        raise ValueError("lora_state: the model has no LoRA layers; call apply_lora(model, ...) first")
    return {n: (m.lora_A.detach().float().clone(), m.lora_B.detach().float().clone(), float(m.scaling))
            for n, m in layers.items()}


class MultiLoRALinear(nn.Module):
    """base(x) + s[k] · B[k](A[k] x) with k chosen per call (int) or per batch row (LongTensor).

    lora_A: K × r × in, lora_B: K × out × r, scaling: (K,). All adapters must share r.
    `active`: None (base only), an int k, or a LongTensor (batch,) with −1 meaning "no adapter".
    """

    def __init__(self, base: nn.Module, As: list, Bs: list, scalings: list):
        super().__init__()
        if not isinstance(base, LINEAR_TYPES):
            raise TypeError(f"MultiLoRALinear wraps nn.Linear or Conv1D, got {type(base).__name__}")
        ranks = {a.shape[0] for a in As}
        if len(ranks) != 1:
            raise ValueError(f"all adapters of one layer must share the rank r, got ranks {sorted(ranks)}")
        self.base = base
        self.fan_in_fan_out = isinstance(base, Conv1D)
        dev = base.weight.device
        self.lora_A = nn.Parameter(torch.stack([a.float() for a in As]).to(dev), requires_grad=False)
        self.lora_B = nn.Parameter(torch.stack([b.float() for b in Bs]).to(dev), requires_grad=False)
        self.register_buffer("scaling", torch.tensor(scalings, dtype=torch.float32, device=dev))
        self.active = None
        for p in base.parameters():
            p.requires_grad_(False)
        self.train(base.training)   # the mode of the layer it wraps

    @property
    def n_adapters(self) -> int:
        return self.lora_A.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        k = self.active
        if k is None:
            return y
        if isinstance(k, int):
            a, b = self.lora_A[k].to(x.dtype), self.lora_B[k].to(x.dtype)   # r × in, out × r
            return y + (x @ a.T) @ b.T * self.scaling[k].to(x.dtype)
        # per-row index: x (b, T, in), k (b,)
        use = (k >= 0).to(x.dtype)                                          # (b,)
        kk = k.clamp_min(0)
        a = self.lora_A[kk].to(x.dtype)                                      # b × r × in
        bb = self.lora_B[kk].to(x.dtype)                                     # b × out × r
        s = (self.scaling[kk].to(x.dtype) * use)                             # (b,)
        z = torch.einsum("bti,bri->btr", x, a)                               # b × T × r
        return y + torch.einsum("btr,bor->bto", z, bb) * s[:, None, None]

    def extra_repr(self) -> str:
        K, r, i = self.lora_A.shape
        return f"adapters={K}, r={r}, in={i}, out={self.lora_B.shape[1]}"


def multi_lora_modules(model: nn.Module) -> dict[str, MultiLoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, MultiLoRALinear)}


def apply_multi_lora(model: nn.Module, states: list[dict]) -> nn.Module:
    """Wrap each layer named in the adapters' states with a MultiLoRALinear holding all K.

    model: a plain base model (no LoRA layers). states: [lora_state(m_1), ..., lora_state(m_K)],
    all for the same layer names. A layer missing from one adapter gets zeros there.
    """
    if not states:
        raise ValueError("apply_multi_lora needs at least one adapter state (a list of lora_state(...))")
    names = sorted(set().union(*[s.keys() for s in states]))
    find_targets(model, names)   # same checks as apply_lora (exists, is linear, no LoRA yet)
    for name in names:
        ref = next(s[name] for s in states if name in s)
        As, Bs, ss = [], [], []
        for s in states:
            a, b, sc = s.get(name, (torch.zeros_like(ref[0]), torch.zeros_like(ref[1]), ref[2]))
            As.append(a)
            Bs.append(b)
            ss.append(sc)
        _set_module(model, name, MultiLoRALinear(model.get_submodule(name), As, Bs, ss))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def set_adapter(model: nn.Module, index) -> None:
    """Choose the adapter for the next calls: None (base), int k, or LongTensor (batch,) of k / −1."""
    layers = multi_lora_modules(model)
    if not layers:
        raise ValueError("set_adapter: the model has no MultiLoRALinear layers; call apply_multi_lora first")
    K = next(iter(layers.values())).n_adapters
    if isinstance(index, torch.Tensor):
        if index.dtype not in (torch.int64, torch.int32) or index.dim() != 1:
            raise ValueError("a per-row adapter index must be a 1-D integer tensor (batch,)")
        if index.numel() and (index.max() >= K or index.min() < -1):
            raise ValueError(f"adapter indices must be in −1..{K - 1}, got {index.tolist()}")
        index = index.to(next(iter(layers.values())).lora_A.device).long()
    elif index is not None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < K:
            raise ValueError(f"adapter index must be an int in 0..{K - 1}, a LongTensor, or None; got {index!r}")
    for m in layers.values():
        m.active = index


@contextlib.contextmanager
def use_adapter(model: nn.Module, index):
    """with use_adapter(model, k): ...  (k: int, per-row LongTensor, or None for the base)."""
    before = {n: m.active for n, m in multi_lora_modules(model).items()}
    set_adapter(model, index)
    try:
        yield model
    finally:
        for n, m in multi_lora_modules(model).items():
            m.active = before[n]


def parameter_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers (each shared tensor once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total
