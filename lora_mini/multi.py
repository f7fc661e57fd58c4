"""Several LoRA adapters on one frozen base: switch per call, or mix them in one batch.

    states = [lora_state(m) for m in trained_models]          # {name: (A, B, scaling)} each
    apply_multi_lora(base_model, states)                      # K adapters per layer, W shared
    with use_adapter(model, 1): model.generate(...)           # whole batch uses adapter 1
    with use_adapter(model, torch.tensor([0, 2, -1])): ...    # row i uses adapter idx[i]; −1 = base

Per layer the K adapters are stacked, A: K × r × in, B: K × out × r (adapters of a smaller rank
are padded with zeros to the largest r, which changes nothing), with one scale per adapter.
A mixed batch with a per-row index idx (b,) computes

    y[i] = W x[i] + s[idx_i] · B[idx_i] (A[idx_i] x[i])

with segmented rank-r products (the idea behind Punica's SGMV and S-LoRA): the rows are grouped
by adapter once per batch (`RowSegments`: sorted, each adapter's rows one segment, padded to the
longest segment), and each layer runs one batched product over the segments,

    z = bmm(x_segments, A_kᵀ)  (S × rows × r),   u = bmm(z, B_kᵀ) · s_k,   y.index_add_(rows, u)

so every adapter's A and B is read once per layer, never copied per row. One forward serves b
requests for up to K different fine-tunes. Memory: one W plus K small (A, B), instead of K
copies of W.
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


class RowSegments:
    """A per-row adapter index (b,), grouped once per batch: the rows of each adapter form a segment.

    adapters: (S,) the adapters present (sorted, −1 left out: those rows get no LoRA branch);
    rows: (S, L) each segment's batch rows, padded to the longest segment L with row 0;
    weight: (S, L) 1 for a real row, 0 for padding (a padded slot adds zero to row 0).
    """

    def __init__(self, index: torch.Tensor):
        if index.dim() != 1:
            raise ValueError("a per-row adapter index must be a 1-D integer tensor (batch,)")
        self.index = index
        idx = index.tolist()
        present = sorted({k for k in idx if k >= 0})
        groups = [[i for i, k in enumerate(idx) if k == a] for a in present]
        L = max((len(g) for g in groups), default=0)
        dev = index.device
        self.adapters = torch.tensor(present, dtype=torch.long, device=dev)
        self.rows = torch.tensor([g + [0] * (L - len(g)) for g in groups], dtype=torch.long, device=dev).view(len(groups), L)
        self.weight = torch.tensor([[1.0] * len(g) + [0.0] * (L - len(g)) for g in groups], device=dev).view(len(groups), L)
        self.all_in_order = present == list(range(len(present)))
        self._stacks = {}          # (id of a layer's A, dtype) -> that layer's stacks for these segments

    @property
    def batch(self) -> int:
        return self.index.numel()

    def stacks(self, layer: "MultiLoRALinear", dtype):
        """(Aᵀ: S × in × r, Bᵀ: S × r × out, weight · s: S × L) for this batch's adapters, in `dtype`.

        Views of the layer's stacks when the batch uses adapters 0..K−1 (else one copy per adapter
        present, made once per batch and layer), never a copy per row.
        """
        key = (id(layer), dtype)
        if key not in self._stacks:
            A, B, s = layer.lora_A, layer.lora_B, layer.scaling
            if not self.all_in_order or len(self.adapters) != A.shape[0]:
                A, B, s = A[self.adapters], B[self.adapters], s[self.adapters]
            w = (self.weight.to(s.dtype) * s[:, None]).to(dtype)
            self._stacks[key] = (A.to(dtype).transpose(1, 2), B.to(dtype).transpose(1, 2), w)
        return self._stacks[key]


def segmented_lora(x: torch.Tensor, seg: RowSegments, At: torch.Tensor, Bt: torch.Tensor,
                   w: torch.Tensor) -> torch.Tensor:
    """The LoRA branch of a mixed batch: row i gets s_k B_k A_k x_i (k = its adapter; zeros for −1).

    x: (b, ..., in); At: S × in × r; Bt: S × r × out; w: S × L (scale, 0 on padding). Returns (b, ..., out).
    """
    b, inner, d_in = x.shape[0], x.shape[1:-1], x.shape[-1]
    S, L = seg.rows.shape
    out = x.new_zeros(b, *inner, Bt.shape[-1])
    if S == 0:
        return out
    xs = x.index_select(0, seg.rows.reshape(-1)).reshape(S, -1, d_in)          # S × (L·tokens) × in
    u = torch.bmm(torch.bmm(xs, At), Bt).reshape(S, L, -1) * w[:, :, None]     # S × L × (tokens·out)
    return out.index_add_(0, seg.rows.reshape(-1), u.reshape(S * L, *inner, -1))


class MultiLoRALinear(nn.Module):
    """base(x) + s[k] · B[k](A[k] x) with k chosen per call (int) or per batch row (RowSegments).

    lora_A: K × r × in, lora_B: K × out × r (ranks below the largest are zero-padded), scaling: (K,),
    stored in float32. `active`: None (base only), an int k, or a RowSegments
    (set_adapter builds it from a LongTensor (batch,), with −1 meaning "no adapter").
    """

    def __init__(self, base: nn.Module, As: list, Bs: list, scalings: list):
        super().__init__()
        if not isinstance(base, LINEAR_TYPES):
            raise TypeError(f"MultiLoRALinear wraps nn.Linear or Conv1D, got {type(base).__name__}")
        if not (len(As) == len(Bs) == len(scalings)) or not As:
            raise ValueError(f"give one A, B and scaling per adapter, got {len(As)}, {len(Bs)}, {len(scalings)}")
        for a, b in zip(As, Bs):
            if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
                raise ValueError(f"each adapter needs A: r × in and B: out × r, got {tuple(a.shape)} and {tuple(b.shape)}")
        r = max(a.shape[0] for a in As)
        self.base = base
        self.fan_in_fan_out = isinstance(base, Conv1D)
        dev, dt = base.weight.device, torch.float32            # cast to the input's dtype when used
        A = torch.stack([nn.functional.pad(a.float(), (0, 0, 0, r - a.shape[0])) for a in As])
        B = torch.stack([nn.functional.pad(b.float(), (0, r - b.shape[1])) for b in Bs])
        self.lora_A = nn.Parameter(A.to(dev, dt), requires_grad=False)
        self.lora_B = nn.Parameter(B.to(dev, dt), requires_grad=False)
        self.register_buffer("scaling", torch.tensor([float(s) for s in scalings], dtype=dt, device=dev))
        self.ranks = [a.shape[0] for a in As]
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
        seg = k if isinstance(k, RowSegments) else RowSegments(k.to(x.device).long())
        if seg.batch != x.shape[0]:
            raise ValueError(f"the adapter index has {seg.batch} rows but the batch has {x.shape[0]}; "
                             "call set_adapter / use_adapter with one index per row of this batch")
        return y + segmented_lora(x, seg, *seg.stacks(self, x.dtype))

    def extra_repr(self) -> str:
        K, r, i = self.lora_A.shape
        return f"adapters={K}, r={r}, in={i}, out={self.lora_B.shape[1]}"


def multi_lora_modules(model: nn.Module) -> dict[str, MultiLoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, MultiLoRALinear)}


def apply_multi_lora(model: nn.Module, states: list[dict]) -> nn.Module:
    """Wrap each layer named in the adapters' states with a MultiLoRALinear holding all K.

    model: a plain base model (no LoRA layers). states: [lora_state(m_1), ..., lora_state(m_K)],
    all for the same layer names (ranks may differ). A layer missing from one adapter gets zeros there.
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
        index = RowSegments(index.to(next(iter(layers.values())).lora_A.device).long())   # sorted once per batch
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
