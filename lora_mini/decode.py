"""A decode loop with a static KV cache for Llama-family models, optionally replayed as a CUDA graph.

    dec = StaticDecoder(model, n_rows=32, max_len=96)          # caches: (rows, kv heads, max_len, dim)
    tokens = dec.greedy(prompts, max_new_tokens=64)            # (rows, 64), equals HF greedy
    for nxt in dec.steps(prompts, 64, pick): ...               # one (rows,) tensor per step

Why: transformers' `generate` grows its cache and launches hundreds of small kernels from Python
per token. Here every tensor a step touches is allocated once (the caches, the token, position and
cache-slot buffers), so one step has fixed shapes and is captured once as a CUDA graph and then
replayed (on the CPU it runs eagerly). The forward is written out from the module's own weights:
RMSNorm, rotary embeddings (the model's own table, so its rope_theta), grouped-query attention
over the cache, SwiGLU. Each op is the one transformers runs with its static cache, in the same
order and shapes (the prompt attends causally to its own keys; a step attends to the whole cache
through a mask, the key/value heads repeated for the query heads), so in bfloat16 the logits are
the same bits as transformers' `generate(cache_implementation="static")` with a cache of the same
length (tests/test_generate_static.py, on the CPU; on a GPU generate compiles a static-cache model
unless given disable_compile=True), not merely close. `fuse=True` makes q/k/v and
gate/up one GEMM each: fewer kernels, but GEMMs of other shapes (on a GPU cuBLAS picks its kernel by
shape) may round differently, so it is off by default.

LoRA: merged or disabled LoRA layers read as their W. MultiLoRALinear layers (lora_mini.multi)
add their adapters: the batch's rows are laid out sorted by adapter, each adapter's rows one
segment padded to the longest segment, and each projection group adds
`baddbmm(y_segments, bmm(x_segments, Aᵀ), s·Bᵀ)` — two batched rank-r products per group per
step over the segments (SGMV / S-LoRA style); padding rows are computed and dropped.
Unsupported models (other architectures, unmerged LoRA layers) are refused by `unsupported()`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import LoRALinear


def _plain_weight(m: nn.Module):
    """(weight, bias) of an nn.Linear or of a merged/disabled LoRA layer over one, else None."""
    if isinstance(m, LoRALinear) and (m.merged or m.disabled):
        m = m.base
    if type(m) is nn.Linear:
        return m.weight, m.bias
    return None


def _linear_parts(m: nn.Module):
    """(weight, bias, multi or None) for a supported projection, else None."""
    from .multi import MultiLoRALinear
    if isinstance(m, MultiLoRALinear):
        wb = _plain_weight(m.base)
        return None if wb is None else (*wb, m)
    wb = _plain_weight(m)
    return None if wb is None else (*wb, None)


PROJ = (("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "o_proj"),
        ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj"))


def unsupported(model) -> str | None:
    """Why the static loop cannot run this model (None: it can)."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) != "llama":
        return f"model type {getattr(cfg, 'model_type', type(model).__name__)!r} (the static loop knows Llama)"
    if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "attention_bias", False) \
            or getattr(cfg, "mlp_bias", False):
        return "a Llama variant with biases or another activation"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "rotary_emb") or type(getattr(model, "lm_head", None)) is not nn.Linear:
        return "no model.model.rotary_emb / lm_head"
    for i, layer in enumerate(inner.layers):
        for a, b in PROJ:
            if _linear_parts(getattr(getattr(layer, a), b)) is None:
                return f"layer {i} {a}.{b} is {type(getattr(getattr(layer, a), b)).__name__} (unmerged LoRA?)"
    return None


def _adapter_index(model, n: int):
    """The per-row adapter index (n,) of the model's MultiLoRALinear layers (None: no adapter)."""
    from .multi import RowSegments, multi_lora_modules
    actives = [m.active for m in multi_lora_modules(model).values()]
    if not actives or all(a is None for a in actives):
        return None
    a = actives[0]
    if isinstance(a, int):
        return torch.full((n,), a, dtype=torch.long)
    idx = (a.index if isinstance(a, RowSegments) else a).cpu().long()
    if idx.numel() != n:
        raise ValueError(f"the adapter index has {idx.numel()} rows but there are {n} prompts; "
                         "call use_adapter(model, index) with one adapter per prompt")
    return idx


def segment_layout(index, n: int):
    """(adapters (S,), src (S·L,) prompt of each slot, slot_of (n,) slot of each prompt, L).

    Rows sorted by adapter, each adapter's rows one segment, padded to the longest (a padding slot
    repeats its segment's first prompt and is dropped).
    """
    if index is None:
        return None, list(range(n)), list(range(n)), n
    idx = index.tolist()
    adapters = sorted(set(idx))
    groups = [[i for i, k in enumerate(idx) if k == a] for a in adapters]
    L = max(len(g) for g in groups)
    src, slot_of = [], [0] * n
    for s, g in enumerate(groups):
        for j, i in enumerate(g):
            slot_of[i] = s * L + j
        src += g + [g[0]] * (L - len(g))
    return adapters, src, slot_of, L


def _group_lora(parts, adapters, dtype):
    """(Aᵀ: S × in × R, s·Bᵀ: S × R × out) for one projection group (block-diagonal over its members)."""
    if adapters is None or all(p[2] is None for p in parts):
        return None
    d_in = parts[0][0].shape[1]
    outs = [p[0].shape[0] for p in parts]
    ranks = [0 if p[2] is None else p[2].lora_A.shape[1] for p in parts]
    dev, S = parts[0][0].device, len(adapters)
    At = torch.zeros(S, d_in, sum(ranks), device=dev, dtype=dtype)
    Bt = torch.zeros(S, sum(ranks), sum(outs), device=dev, dtype=dtype)
    r0, o0 = 0, 0
    for (w, b, multi), r, o in zip(parts, ranks, outs):
        for s, k in enumerate(adapters):
            if multi is not None and k >= 0:
                At[s, :, r0:r0 + r] = multi.lora_A[k].T.to(dtype)
                Bt[s, r0:r0 + r, o0:o0 + o] = (multi.lora_B[k] * multi.scaling[k]).T.to(dtype)
        r0, o0 = r0 + r, o0 + o
    return At, Bt


class _Group:
    """One (possibly fused) projection: y = x Wᵀ + b, plus its adapters' segmented LoRA branch."""

    def __init__(self, parts, adapters, L, fuse: bool):
        ws = [p[0] for p in parts]
        self.w = torch.cat(ws) if len(ws) > 1 else ws[0]
        bs = [p[1] for p in parts]
        self.b = None if all(b is None for b in bs) else torch.cat(
            [b if b is not None else w.new_zeros(w.shape[0]) for w, b in zip(ws, bs)])
        self.splits = [w.shape[0] for w in ws]
        self.lora = _group_lora(parts, adapters, self.w.dtype)
        self.L = L

    def __call__(self, x):
        y = F.linear(x, self.w, self.b)
        if self.lora is not None:
            At, Bt = self.lora
            S, (n, T, d) = At.shape[0], x.shape
            y = torch.baddbmm(y.view(S, -1, y.shape[-1]), torch.bmm(x.reshape(S, -1, d), At), Bt).view(n, T, -1)
        return y.split(self.splits, dim=-1) if len(self.splits) > 1 else (y,)


def _rms(x, norm):
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * h.to(x.dtype)


def _repeat_kv(x, G: int):
    """(n, kv heads, L, hd) -> (n, kv heads · G, L, hd), each kv head once per query head it serves."""
    if G == 1:
        return x
    n, h, L, d = x.shape
    return x[:, :, None].expand(n, h, G, L, d).reshape(n, h * G, L, d)


def _rotate(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def left_pad_tensors(prompts: list[list[int]], pad_id: int = 0):
    """(ids, mask) (n, T) with every prompt ending at the last column."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("give at least one prompt, each with at least one token")
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), T), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, T - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, T - len(p):] = 1
    return ids, mask


class StaticDecoder:
    """Greedy / sampled decoding of `n_prompts` prompts with caches preallocated for `max_len` tokens.

    The model's MultiLoRALinear layers (if any) are read as they are set when the decoder is built
    (use_adapter(model, index) first: one adapter per prompt, or an int for all). fuse: one GEMM
    for q/k/v and one for gate/up (copies those weights; off by default: other GEMM shapes may round
    differently from transformers in bf16). graph: replay each decode step as a CUDA graph (default on CUDA).
    A prompt of T tokens and n new ones need max_len ≥ T + n − 1 (the last token is not cached).
    """

    @torch.no_grad()
    def __init__(self, model, n_prompts: int, max_len: int, fuse: bool | None = None, graph: bool | None = None):
        why = unsupported(model)
        if why is not None:
            raise ValueError(f"StaticDecoder cannot run this model: {why}")
        p = model.model.embed_tokens.weight
        self.model, self.device, self.dtype, self.max_len = model, p.device, p.dtype, max_len
        cfg = model.config
        self.nh, self.nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.nh
        self.scale = self.hd ** -0.5
        self.adapters, self.src, self.slot_of, L = segment_layout(_adapter_index(model, n_prompts), n_prompts)
        self.n, self.rows = n_prompts, len(self.src)
        cuda = self.device.type == "cuda"
        self.graph = cuda if graph is None else bool(graph)
        if self.graph and not cuda:
            raise ValueError("graph=True needs the model on a CUDA device")
        fuse = False if fuse is None else fuse
        self.blocks = [self._block_groups(layer, L, fuse) for layer in model.model.layers]
        shape = (self.rows, self.nkv, max_len, self.hd)
        self.k = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in self.blocks]
        self.v = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in self.blocks]
        with torch.no_grad():
            at = torch.arange(max_len, device=self.device)
            cos, sin = model.model.rotary_emb(torch.zeros(1, device=self.device), at[None])   # float32 table
        self.cos, self.sin, self.at = cos[0], sin[0], at
        self.keymask = torch.ones(self.rows, max_len, dtype=torch.bool, device=self.device)
        self.src_t = torch.tensor(self.src, device=self.device)
        self.slot_t = torch.tensor(self.slot_of, device=self.device)
        self.tok = torch.zeros(self.rows, 1, dtype=torch.long, device=self.device)   # a step's inputs: fixed
        self.pos = torch.zeros(self.rows, 1, dtype=torch.long, device=self.device)   # buffers, so a captured
        self.slot = torch.zeros(1, dtype=torch.long, device=self.device)              # graph can replay them
        self._graph, self.graph_error = None, None

    def _block_groups(self, layer, L, fuse):
        parts = {f"{a}.{b}": _linear_parts(getattr(getattr(layer, a), b)) for a, b in PROJ}
        names = ([["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"],
                  ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]] if fuse else [[n] for n in parts])
        groups = [(g, _Group([parts[n] for n in g], self.adapters, L, fuse)) for g in names]
        return {"groups": groups, "ln1": layer.input_layernorm, "ln2": layer.post_attention_layernorm}

    @staticmethod
    def _run(block, names, x):
        out = {}
        for g, group in block["groups"]:
            if g[0] in names:
                out.update(zip(g, group(x)))
        return [out[n] for n in names]

    def _attend(self, i, q, k, v, allowed, slots, causal: bool):
        """Attention of (n, T) queries; writes k, v to the cache at `slots`. causal: the prompt without
        padding attends to its own T keys (is_causal), else the whole cache through `allowed`."""
        n, T = q.shape[:2]
        q = q.view(n, T, self.nh, self.hd).transpose(1, 2)                   # (n, heads, T, hd)
        k = k.view(n, T, self.nkv, self.hd).transpose(1, 2)                  # (n, kv heads, T, hd)
        v = v.view(n, T, self.nkv, self.hd).transpose(1, 2)
        q, k = _rotate(q, self.c, self.s), _rotate(k, self.c, self.s)
        self.k[i].index_copy_(2, slots, k)
        self.v[i].index_copy_(2, slots, v)
        G = self.nh // self.nkv                                               # query heads per kv head
        if causal:
            gqa = {"enable_gqa": True} if G > 1 else {}
            o = F.scaled_dot_product_attention(q, k, v, scale=self.scale, is_causal=True, **gqa)
        else:
            o = F.scaled_dot_product_attention(q, _repeat_kv(self.k[i], G), _repeat_kv(self.v[i], G),
                                               attn_mask=allowed, scale=self.scale)
        return o.transpose(1, 2).reshape(n, T, self.nh * self.hd)

    def _forward(self, ids, pos, slots, causal: bool = False):
        """Logits (rows, vocab) of the last position; writes the caches at `slots` (T,)."""
        m = self.model.model
        x = F.embedding(ids, m.embed_tokens.weight)
        self.c = self.cos[pos].to(self.dtype).unsqueeze(1)                     # rows × 1 × T × dim
        self.s = self.sin[pos].to(self.dtype).unsqueeze(1)
        allowed = ((self.at[None, :] <= slots[:, None])[None] & self.keymask[:, None, :])[:, None]  # (rows, 1, T, max_len)
        for i, blk in enumerate(self.blocks):
            q, k, v = self._run(blk, ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], _rms(x, blk["ln1"]))
            x = x + self._run(blk, ["self_attn.o_proj"], self._attend(i, q, k, v, allowed, slots, causal))[0]
            g, u = self._run(blk, ["mlp.gate_proj", "mlp.up_proj"], _rms(x, blk["ln2"]))
            x = x + self._run(blk, ["mlp.down_proj"], F.silu(g) * u)[0]
        return F.linear(_rms(x, m.norm)[:, -1], self.model.lm_head.weight)   # normed over all T, as transformers

    def _decode_step(self):
        if not self.graph:
            return self._forward(self.tok, self.pos, self.slot)
        if self._graph is None:
            try:
                self._capture()
            except RuntimeError as e:              # capture failed: run eagerly, and say why
                self.graph, self.graph_error, self._graph = False, str(e).splitlines()[0], None
                return self._forward(self.tok, self.pos, self.slot)
        self._graph.replay()
        return self._out

    def _capture(self):
        """Warm up on a side stream, then capture one decode step (reads tok / pos / slot)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):                       # warm-up writes the same slot the replay rewrites
                self._forward(self.tok, self.pos, self.slot)
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._out = self._forward(self.tok, self.pos, self.slot)

    @torch.no_grad()
    def steps(self, prompts: list[list[int]], max_new_tokens: int, choose, pad_id: int = 0):
        """Yield the chosen next tokens (n,) (in prompt order, on the device), one step at a time.

        choose(logits (n, vocab)) -> tokens (n,). The caller may stop iterating at any time.
        """
        if len(prompts) != self.n:
            raise ValueError(f"this decoder was built for {self.n} prompts, got {len(prompts)}")
        ids, mask = left_pad_tensors(prompts, pad_id)
        T0 = ids.shape[1]
        if T0 + max_new_tokens - 1 > self.max_len:
            raise ValueError(f"prompt ({T0}) + max_new_tokens ({max_new_tokens}) - 1 exceed max_len {self.max_len}")
        ids, mask = ids.to(self.device)[self.src_t], mask.to(self.device)[self.src_t]
        self.keymask.fill_(True)
        self.keymask[:, :T0] = mask.bool()
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self._forward(ids, pos, self.at[:T0], causal=bool(mask.all()))          # the prompt, once
        self.pos.copy_(pos[:, -1:] + 1)
        self.slot.fill_(T0)
        for step in range(max_new_tokens):
            nxt = choose(logits[self.slot_t])
            yield nxt
            if step == max_new_tokens - 1:
                return
            self.tok.copy_(nxt.to(self.device)[self.src_t][:, None])
            if step:
                self.pos.add_(1)
                self.slot.add_(1)
            logits = self._decode_step()

    def greedy(self, prompts: list[list[int]], max_new_tokens: int, pad_id: int = 0) -> torch.Tensor:
        """(n, max_new_tokens) greedy tokens, no stopping and no host sync per step."""
        out = list(self.steps(prompts, max_new_tokens, lambda logits: logits.argmax(-1), pad_id))
        return torch.stack(out, dim=1)
