"""Low-memory training: LoRA-aware activation checkpointing and a chunked linear + cross-entropy.

For a GPU that is small for the model. Two things dominate a LoRA step's memory besides the
frozen weights: the activations every layer saves for backward, and the output head's logits
(B × T × vocab, upcast to float32 by the usual loss: 1.6 GB at B8 × T1024 with a 49k vocabulary).

    enable(model)              every decoder layer keeps only its input; its backward recomputes
                               the layer (one autograd Function per layer, `LayerCheckpoint`). The
                               recomputation knows LoRA and the layer's shape:
                                 - the MLP's down projection is NOT recomputed: its output only feeds
                                   the residual sum, and its gradients need just its input and the
                                   layer's output gradient, which the backward already has
                                   (`KnownGradLinear`; the largest GEMM of the recomputation, d·f);
                                 - RMSNorm saves its input and one float per token, and SwiGLU its two
                                   inputs; the cheap elementwise work is redone in their backward
                                   (no float32 copies of the hidden states are kept). A model fused
                                   with `kernels.fuse` first keeps Liger's RMSNorm and SwiGLU, which
                                   save the same tensors (inputs, 1/rms) and redo the rest too.
    causal_lm_loss(model, ids, labels)
                               the loss through `linear_cross_entropy`: logits are made chunk by chunk
                               of tokens, each chunk's loss and gradient (w.r.t. the hidden states and,
                               if it trains, the head weight) computed at once; no B × T × vocab tensor.

The maths is unchanged (tests compare loss and gradients with the plain model). Eager mode only;
dropout must be off (a recomputation would draw other masks). `disable(model)` undoes `enable`.
"""
from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fast, kernels

IGNORE = -100
# decoder layers whose MLP output goes straight into the residual sum (down projection skippable)
SKIP_DOWN = ("LlamaDecoderLayer", "MistralDecoderLayer", "Qwen2DecoderLayer", "Qwen3DecoderLayer")
# the RMSNorm classes whose forward is transformers' Llama one (replaced by RMSNormFunction)
RMS_NORMS = ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm")


# ----------------------------------------------------------------------------- chunked linear + cross-entropy

class LinearCrossEntropy(torch.autograd.Function):
    """sum over tokens of cross_entropy(h Wᵀ, labels), label `ignore` skipped; chunked over tokens.

    h: N × d, W: V × d (the head; may be tied to the embedding: autograd adds this gradient to the
    embedding's own), labels: N. The forward computes each chunk's logits in h's dtype, its softmax in
    float32, and right away the chunk's gradient w.r.t. h (and W, when it needs one); backward only
    scales them by the incoming gradient.
    """

    @staticmethod
    def forward(ctx, h, W, labels, chunk: int, ignore: int):
        need_h, need_W = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        N = h.shape[0]
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h) if need_h else None
        grad_W = torch.zeros(W.shape, dtype=torch.float32, device=W.device) if need_W else None
        for i in range(0, N, chunk):
            hc, lc = h[i:i + chunk], labels[i:i + chunk]
            logits = (hc @ W.t()).float()                       # n × V, the only vocab-wide tensor
            valid = lc != ignore
            tgt = lc.clamp_min(0).unsqueeze(1)
            lse = torch.logsumexp(logits, dim=1)
            loss += ((lse - logits.gather(1, tgt).squeeze(1)) * valid).sum()
            if need_h or need_W:
                p = logits.sub_(lse.unsqueeze(1)).exp_()        # softmax, in place
                p.scatter_add_(1, tgt, -valid.unsqueeze(1).to(p.dtype))
                p.mul_(valid.unsqueeze(1))
                d = p.to(h.dtype)                               # d loss / d logits
                del logits, p
                if need_h:
                    grad_h[i:i + chunk] = d @ W
                if need_W:
                    grad_W += (d.t() @ hc).float()
        ctx.save_for_backward(grad_h, grad_W)
        ctx.w_dtype = W.dtype
        return loss

    @staticmethod
    def backward(ctx, go):
        grad_h, grad_W = ctx.saved_tensors
        gh = None if grad_h is None else grad_h * go.to(grad_h.dtype)
        gW = None if grad_W is None else (grad_W * go).to(ctx.w_dtype)
        return gh, gW, None, None, None


def linear_cross_entropy(h, weight, labels, chunk_tokens: int = 1024, ignore_index: int = IGNORE,
                         reduction: str = "mean"):
    """cross_entropy(h @ weightᵀ, labels) without the N × vocab logits.  h: (..., d), labels: (...).

    reduction "sum" or "mean" (over labels that are not ignore_index, like F.cross_entropy)."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"linear_cross_entropy: reduction must be 'sum' or 'mean', got {reduction!r}")
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1:
        raise ValueError(f"linear_cross_entropy: chunk_tokens must be a positive integer, got {chunk_tokens!r}")
    h2, lab = h.reshape(-1, h.shape[-1]), labels.reshape(-1)
    if lab.shape[0] != h2.shape[0]:
        raise ValueError(f"linear_cross_entropy: {h2.shape[0]} hidden states but {lab.shape[0]} labels")
    total = LinearCrossEntropy.apply(h2, weight, lab, chunk_tokens, ignore_index)
    if reduction == "sum":
        return total
    return total / (lab != ignore_index).sum().clamp_min(1)


def check_head(model):
    """The model's output head, if the chunked loss computes what the model's own loss does (else ValueError)."""
    head = model.get_output_embeddings()
    if type(head) is not nn.Linear or head.bias is not None:
        raise ValueError(f"low-memory loss: the output head must be a plain nn.Linear without bias, "
                         f"got {type(head).__name__}; use the model's own loss")
    for key in ("final_logit_softcapping", "logit_scale"):
        if getattr(model.config, key, None):
            raise ValueError(f"low-memory loss: config.{key} is set; the chunked loss does not apply it")
    return head


def causal_lm_loss(model, input_ids, labels, attention_mask=None, chunk_tokens: int = 1024):
    """The causal-LM loss of a transformers model (position t predicts labels[t+1], -100 ignored,
    mean over labelled tokens), as model(input_ids, labels=labels).loss, with a chunked head."""
    head = check_head(model)
    h = model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    return linear_cross_entropy(h[:, :-1], head.weight, labels[:, 1:], chunk_tokens)


# ----------------------------------------------------------------------------- lean elementwise pieces

class RMSNormFunction(torch.autograd.Function):
    """weight · (x / rms(x)) as transformers' Llama RMSNorm (float32 inside, one rounding); saves x and 1/rms."""

    @staticmethod
    def forward(ctx, x, weight, eps: float):
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        y = weight * (xf * rstd).to(x.dtype)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, rstd = ctx.saved_tensors
        xhat = x.to(rstd.dtype) * rstd
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = (g * xhat.to(x.dtype)).reshape(-1, x.shape[-1]).to(rstd.dtype).sum(0).to(weight.dtype)
        gx = (g * weight).to(rstd.dtype)
        grad_x = rstd * (gx - xhat * (gx * xhat).mean(-1, keepdim=True))
        return grad_x.to(x.dtype), grad_w, None


class SwiGLUFunction(torch.autograd.Function):
    """silu(gate) · up; saves gate and up only (silu is redone in the backward). The backward runs the
    kernels autograd runs for F.silu(gate) * up (same bits), plus the one that redoes silu(gate)."""

    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, g):
        gate, up = ctx.saved_tensors
        grad_up = g * F.silu(gate)
        grad_gate = torch.ops.aten.silu_backward(g * up, gate)
        return grad_gate, grad_up


def _rmsnorm_forward(norm, x):
    return RMSNormFunction.apply(x, norm.weight, norm.variance_epsilon)


def _swiglu_mlp_forward(mlp, x):
    return mlp.down_proj(SwiGLUFunction.apply(mlp.gate_proj(x), mlp.up_proj(x)))


# ----------------------------------------------------------------------------- the down projection, not recomputed

class KnownGradLinear(torch.autograd.Function):
    """Stands in for the down projection while a layer is recomputed: its output is only added to the
    residual, so its real value is not needed, and the gradient of that sum (g) is already known.
    Forward returns a 0-dim zero (the residual sum becomes h1 + 0); backward ignores the incoming
    gradient and returns the projection's true gradients for g: the input's and its trainable weights'."""

    @staticmethod
    def forward(ctx, a, g, W, bias, A, B, scaling: float):
        ctx.save_for_backward(a, g, W, A, B)
        ctx.scaling, ctx.bias_shape = scaling, None if bias is None else bias.shape
        return a.new_zeros(())

    @staticmethod
    def backward(ctx, _unused):
        a, g, W, A, B = ctx.saved_tensors
        need = ctx.needs_input_grad              # (a, g, W, bias, A, B, scaling)
        g2, a2 = g.reshape(-1, W.shape[0]), a.reshape(-1, W.shape[1])
        grad_W = (g2.t() @ a2).to(W.dtype) if need[2] else None
        grad_b = g2.float().sum(0).to(g.dtype) if need[3] else None
        if A is None or A.numel() == 0:         # a plain linear layer
            grad_a = (g2 @ W).view(a.shape) if need[0] else None
            return grad_a, None, grad_W, grad_b, None, None, None
        s, dt = ctx.scaling, a.dtype
        sA, B_ = (A * s).to(dt), B.to(dt)
        hs = a2 @ sA.t() if need[5] else None
        grad_a, grad_A, grad_B = fast.lora_grads(g2, (a2, W, sA, B_, hs), s, (need[0], need[4], need[5]))
        grad_a = None if grad_a is None else grad_a.view(a.shape)
        grad_A = None if grad_A is None else grad_A.to(A.dtype)
        grad_B = None if grad_B is None else grad_B.to(B.dtype)
        return grad_a, None, grad_W, grad_b, grad_A, grad_B, None


def _down_forward(down, x):
    g = down.__dict__.get("_lowmem_grad")
    w = down.weight if type(down) is nn.Linear else down.base.weight
    if g is None or x.dtype != w.dtype or g.dtype != w.dtype or torch.is_autocast_enabled(x.device.type):
        return type(down).forward(down, x)     # (under autocast: recomputed like the rest)
    if type(down) is nn.Linear:
        return KnownGradLinear.apply(x, g, down.weight, down.bias, None, None, 1.0)
    base = down.base
    return KnownGradLinear.apply(x, g, base.weight, base.bias, down.lora_A, down.lora_B, down.scaling)


def _skippable_down(layer):
    """The layer's down projection when its recomputation can be skipped (see KnownGradLinear), else None."""
    from .layers import LoRALinear
    mlp = getattr(layer, "mlp", None)
    down = getattr(mlp, "down_proj", None)
    if type(layer).__name__ not in SKIP_DOWN or down is None:
        return None
    if type(down) is nn.Linear:
        return down
    if (type(down) is LoRALinear and type(down.base) is nn.Linear and not down.fan_in_fan_out
            and down.dropout_p == 0 and not down.base.weight.requires_grad):
        return down
    return None


# ----------------------------------------------------------------------------- one decoder layer, checkpointed

@contextlib.contextmanager
def _fast_without_grad():
    """No grad mode (nothing saved), but the fast LoRA kernels: the recomputation gives the same bits."""
    with torch.no_grad(), fast.fast_path(no_grad=True):
        yield


class LayerCheckpoint(torch.autograd.Function):
    """y = run(x), keeping only x; backward recomputes run(x) (its down projection stood in by
    KnownGradLinear) and differentiates it. params: the layer's trainable tensors (their gradients
    are returned like any input's)."""

    @staticmethod
    def forward(ctx, run, down, x, *params):
        with _fast_without_grad():
            y = run(x)                           # no grad mode: nothing is kept; the same fast LoRA kernels
        ctx.run, ctx.down, ctx.params = run, down, params
        ctx.save_for_backward(x)
        return y.detach()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        need = ctx.needs_input_grad
        x_ = x.detach().requires_grad_(need[2])
        with torch.enable_grad(), _known_grad(ctx.down, g):
            y = ctx.run(x_)
        wanted = [(i, t) for i, t in enumerate((x_, *ctx.params)) if need[2 + i]]
        grads = torch.autograd.grad(y, [t for _, t in wanted], g, allow_unused=True)
        out = [None] * (1 + len(ctx.params))
        for (i, _), gr in zip(wanted, grads):
            out[i] = gr
        return (None, None, *out)


@contextlib.contextmanager
def _known_grad(down, g):
    if down is None:
        yield
        return
    down._lowmem_grad = g
    try:
        yield
    finally:
        down.__dict__.pop("_lowmem_grad", None)


def _layer_forward(layer, hidden_states, *args, **kwargs):
    plain = functools.partial(type(layer).forward, layer)
    if not (torch.is_grad_enabled() and layer.training):
        return plain(hidden_states, *args, **kwargs)
    params = tuple(p for p in layer.parameters() if p.requires_grad)
    if not params and not hidden_states.requires_grad:
        return plain(hidden_states, *args, **kwargs)
    if kwargs.get("past_key_values") is not None or kwargs.get("use_cache"):
        # a KV cache would be written twice (forward and recomputation): training needs none
        kwargs = {**kwargs, "past_key_values": None, "use_cache": False}
    out_tuple = []

    def run(h):
        out = plain(h, *args, **kwargs)
        if isinstance(out, tuple):
            out_tuple[:] = [True]
            return out[0]
        return out
    y = LayerCheckpoint.apply(run, layer.__dict__.get("_lowmem_down"), hidden_states, *params)
    return (y,) if out_tuple else y


# ----------------------------------------------------------------------------- switching it on and off

def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The model's decoder layers: the items of its ModuleList of blocks with an MLP and attention."""
    for mod in model.modules():
        if isinstance(mod, nn.ModuleList) and len(mod) and all(
                hasattr(b, "mlp") and (hasattr(b, "self_attn") or hasattr(b, "attn")) for b in mod):
            return list(mod)
    raise ValueError(f"low-memory mode: no decoder layers found in {type(model).__name__} "
                     "(a ModuleList of blocks with .mlp and .self_attn)")


def _check_no_dropout(model):
    from .layers import LoRALinear
    for name, mod in model.named_modules():
        p = (mod.p if isinstance(mod, nn.Dropout) else mod.dropout_p if isinstance(mod, LoRALinear)
             else getattr(mod, "attention_dropout", 0.0))
        if isinstance(p, (int, float)) and p > 0:
            raise ValueError(f"low-memory mode recomputes layers, so dropout must be 0; {name or 'the model'} "
                             f"has p = {p}: set the dropout to 0 (e.g. --dropout 0)")


def _is_silu(act) -> bool:
    """torch's nn.SiLU, or transformers' own SiLU module (the MLPs' act_fn since transformers 5)."""
    return isinstance(act, nn.SiLU) or type(act).__name__ == "SiLUActivation"


def enable(model: nn.Module) -> nn.Module:
    """Switch the low-memory mode on for `model` (in place; returns it). See the module docstring."""
    if is_enabled(model):
        return model
    _check_no_dropout(model)
    layers = decoder_layers(model)
    for layer in layers:
        layer.forward = functools.partial(_layer_forward, layer)
        down = _skippable_down(layer)
        layer.__dict__["_lowmem_down"] = down
        if down is not None:
            down.forward = functools.partial(_down_forward, down)
        mlp = layer.mlp
        if (all(hasattr(mlp, k) for k in ("gate_proj", "up_proj", "down_proj"))
                and _is_silu(getattr(mlp, "act_fn", None)) and not kernels.runs_liger(mlp)):
            mlp.forward = functools.partial(_swiglu_mlp_forward, mlp)
    for mod in model.modules():
        if (type(mod).__name__ in RMS_NORMS and hasattr(mod, "variance_epsilon")
                and getattr(mod, "weight", None) is not None and not kernels.runs_liger(mod)):
            mod.forward = functools.partial(_rmsnorm_forward, mod)
    model.__dict__["_lowmem_layers"] = len(layers)
    return model


def disable(model: nn.Module) -> nn.Module:
    """Undo enable(model): every module uses its class's forward again."""
    for mod in model.modules():
        if isinstance(mod.__dict__.get("forward"), functools.partial):
            del mod.forward
        mod.__dict__.pop("_lowmem_down", None)
    model.__dict__.pop("_lowmem_layers", None)
    return model


def is_enabled(model: nn.Module) -> bool:
    return "_lowmem_layers" in model.__dict__


def activation_bytes(hidden: int, layers: int, intermediate: int, vocab: int, batch: int, seq: int,
                     elem: int = 2, chunk_tokens: int = 1024) -> dict:
    """Rough bytes of activations in the low-memory mode (weights and optimizer state not included).

    kept: every layer's input ((layers + 1) · N · d, N = batch · seq tokens); layer: one layer's
    recomputation during its backward (≈ 8·d + 4·f values per token: normed inputs, q, k, v, attention
    output, the residual, gate, up, their product, and gradients of that size); loss: one chunk of
    float32 logits and its bf16 copies plus the hidden-state gradient (N · d).
    """
    N = batch * seq
    kept = (layers + 1) * N * hidden * elem
    layer = N * (8 * hidden + 4 * intermediate) * elem
    loss = min(chunk_tokens, N) * vocab * (4 + 2 * elem) + N * hidden * elem
    return {"kept": kept, "layer": layer, "loss": loss, "total": kept + max(layer, loss)}
