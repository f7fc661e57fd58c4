"""Training memory, by arithmetic: full fine-tuning vs LoRA (weights, gradients, Adam, activations).

    shape = ModelShape.from_config(model.config)           # or SHAPES["llama-2-7b"]
    full = training_memory(shape, "full", batch=1, seq=512)
    lora = training_memory(shape, "lora", r=16, targets="all-linear", batch=1, seq=512)
    measured = measure_training_step(model, input_ids)     # the same four numbers, from tensors

Bytes per parameter (Adam, as in the ZeRO paper's "16 bytes per parameter"):
    full, fp32 : W 4 + grad 4 + Adam m,v 8                         = 16 per parameter
    full, bf16 : W 2 + fp32 master 4 + grad 2 + Adam 8             = 16 per parameter
    LoRA       : frozen W (2 or 4 per parameter) + A, B kept in fp32: 4 + grad 4 + Adam 8 = 16
                 per *trainable* parameter only.

Activations are the tensors autograd saves for backward, for a Llama-style decoder as
transformers runs it (RMSNorm computed in fp32, SDPA attention which saves q, k, v, out and the
log-sum-exp but no s × s matrix, SwiGLU MLP, loss on fp32 log-softmax), with dropout off.
Per token and layer (e = bytes of the model dtype, h hidden, i intermediate, a = heads·head_dim,
g = kv_heads·head_dim, n heads):

    norms       2 × (4h + 4)   fp32 copy of x and 1/rms, needed by any backward through the norm
              + 2 × e·h        the norm's output y, the input of q/k/v (gate/up): saved if those
                               layers need their input (full FT, or LoRA on one of them)
              + 2 × e·h        x̂ = x/rms for the norm weight's gradient (full FT only)
    attention   e·(2a + 2g) + 4n   q, k, v, output, log-sum-exp
    MLP         3·e·i (+ e·i)  gate out, silu(gate), up out (+ silu·up, the input of down_proj)
    LoRA        e·r per adapted layer (A·x, the input of B)
                (+ e·r·in per adapted layer, not per token: lora_mini's fused path saves s·A)

plus the final norm, the fp32 log-softmax (4·vocab per token), the labels (and, for full FT,
the token ids for the embedding's gradient). With frozen
embeddings (LoRA) the first norm needs no backward, so its 4h + 4 are not saved.
Before the first adapted layer nothing needs a gradient, so nothing is saved there (LoRA only).
These formulas were checked against `measure_training_step` (tests/test_memory.py, chapter 4).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_GATED = ("gate_proj", "up_proj", "down_proj")
TARGET_SETS = {"attention": ATTENTION, "mlp": MLP_GATED, "all-linear": ATTENTION + MLP_GATED}


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only transformer that fix its parameter count and memory."""
    name: str
    hidden: int            # h
    layers: int            # L
    intermediate: int      # i (MLP width)
    vocab: int             # V
    heads: int             # n
    kv_heads: int          # grouped-query attention: k, v have kv_heads heads
    head_dim: int | None = None   # default hidden // heads
    tied: bool = True      # output head shares the embedding matrix
    gated_mlp: bool = True  # Llama SwiGLU (gate, up, down) vs GPT (up, down)
    bias: bool = False     # GPT-style biases on every linear layer and norm
    positions: int = 0     # learned position embeddings (GPT), 0 for RoPE

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @classmethod
    def from_config(cls, config, name: str | None = None) -> "ModelShape":
        """From a transformers Llama-style config (hidden_size, num_hidden_layers, ...)."""
        return cls(name=name or getattr(config, "name_or_path", "") or config.model_type,
                   hidden=config.hidden_size, layers=config.num_hidden_layers,
                   intermediate=config.intermediate_size, vocab=config.vocab_size,
                   heads=config.num_attention_heads,
                   kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
                   head_dim=getattr(config, "head_dim", None),
                   tied=bool(getattr(config, "tie_word_embeddings", False)))

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """{layer name: (in, out)} of the linear layers of one transformer block."""
        h, i, a, g = self.hidden, self.intermediate, self.heads * self.hd, self.kv_heads * self.hd
        shapes = {"q_proj": (h, a), "k_proj": (h, g), "v_proj": (h, g), "o_proj": (a, h)}
        if self.gated_mlp:
            shapes.update(gate_proj=(h, i), up_proj=(h, i), down_proj=(i, h))
        else:
            shapes.update(up_proj=(h, i), down_proj=(i, h))
        return shapes


# Published shapes (config.json of each model; GPT-3 from Brown et al. 2020, Table 2.1)
SHAPES = {
    "smollm2-135m": ModelShape("SmolLM2-135M", hidden=576, layers=30, intermediate=1536, vocab=49152,
                               heads=9, kv_heads=3, tied=True),
    "llama-2-7b": ModelShape("Llama-2-7B", hidden=4096, layers=32, intermediate=11008, vocab=32000,
                             heads=32, kv_heads=32, tied=False),
    "llama-2-70b": ModelShape("Llama-2-70B", hidden=8192, layers=80, intermediate=28672, vocab=32000,
                              heads=64, kv_heads=8, tied=False),
    "gpt3-175b": ModelShape("GPT-3 175B", hidden=12288, layers=96, intermediate=4 * 12288, vocab=50257,
                            heads=96, kv_heads=96, tied=True, gated_mlp=False, bias=True, positions=2048),
}


def resolve_targets(shape: ModelShape, targets) -> tuple[str, ...]:
    """"attention" | "mlp" | "all-linear" | list of layer names -> layer names of one block."""
    names = tuple(shape.linear_shapes())
    if isinstance(targets, str):
        if targets not in TARGET_SETS:
            raise ValueError(f"targets must be one of {sorted(TARGET_SETS)} or a list of {names}, got {targets!r}")
        chosen = tuple(t for t in TARGET_SETS[targets] if t in names)
    else:
        chosen = tuple(targets)
    bad = [t for t in chosen if t not in names]
    if bad or not chosen:
        raise ValueError(f"unknown target layer(s) {bad or chosen!r} for {shape.name}; choose from {names}")
    return chosen


def base_params(shape: ModelShape) -> int:
    """Parameters of the model (embeddings, blocks, norms, head)."""
    h = shape.hidden
    per_block = sum(i * o + (o if shape.bias else 0) for i, o in shape.linear_shapes().values())
    per_block += 2 * h * (2 if shape.bias else 1)          # two norms (LayerNorm has a bias)
    embed = shape.vocab * h + shape.positions * h
    head = 0 if shape.tied else shape.vocab * h
    final_norm = h * (2 if shape.bias else 1)
    return embed + shape.layers * per_block + final_norm + head


def lora_params(shape: ModelShape, r: int, targets="all-linear") -> int:
    """Trainable LoRA parameters: r·(in + out) per adapted layer (A: r × in, B: out × r)."""
    if r < 1:
        raise ValueError(f"r must be a positive integer, got {r}")
    shapes = shape.linear_shapes()
    return shape.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in resolve_targets(shape, targets))


def _block_bytes(shape: ModelShape, e: int, full: bool, lora: set, r: int, grad_in: bool) -> tuple[int, bool]:
    """Bytes one block saves per token, walking it in order; grad_in: does its input need a gradient?
    Returns (bytes, grad_out)."""
    h, i = shape.hidden, shape.intermediate
    a, g, n = shape.heads * shape.hd, shape.kv_heads * shape.hd, shape.heads
    norm_core, x_hat = 4 * h + 4, (e * h if full else 0)   # fp32 x and 1/rms; x̂ for the norm weight
    adapted = lambda *names: full or bool(lora & set(names))  # noqa: E731
    total = e * r * len(lora)                               # A·x, the input of B
    # input norm -> q, k, v -> attention
    total += (norm_core + x_hat) * grad_in
    total += e * h * adapted("q_proj", "k_proj", "v_proj")  # norm output, saved as the input of A (or W)
    grad = grad_in or adapted("q_proj", "k_proj", "v_proj")
    total += (e * (2 * a + 2 * g) + 4 * n) * grad           # SDPA saves q, k, v, out, log-sum-exp
    if adapted("o_proj") and not grad:                      # else o_proj's input is SDPA's saved out
        total += e * a
    grad = grad or adapted("o_proj")
    # post-attention norm -> gate, up -> silu(gate)·up -> down
    total += (norm_core + x_hat) * grad
    total += e * h * adapted("gate_proj", "up_proj")
    gate_g, up_g = grad or adapted("gate_proj"), grad or adapted("up_proj")
    total += e * i * (2 * gate_g + up_g)                    # silu saves gate; mul saves silu(gate), up
    total += e * i * adapted("down_proj")                   # silu(gate)·up, the input of down
    return total, grad or adapted("gate_proj", "up_proj", "down_proj")


def activation_bytes(shape: ModelShape, method: str, batch: int, seq: int, dtype_bytes: int = 4,
                     r: int = 16, targets="all-linear", fused: bool = True) -> int:
    """Bytes autograd saves for backward in one forward pass (see the module docstring).

    fused: LoRALinear's fast path (lora_mini.fast) also saves s·A (r × in) once per adapted layer;
    fused=False is the plain W x + s·B(A x) path (and PEFT's), which does not.
    """
    if not shape.gated_mlp or shape.bias:
        raise NotImplementedError("activation formula is for Llama-style models (RMSNorm, SwiGLU, RoPE)")
    if method not in ("full", "lora"):
        raise ValueError(f"method must be 'full' or 'lora', got {method!r}")
    e, full = dtype_bytes, method == "full"
    lora = set() if full else set(resolve_targets(shape, targets))
    grad, per_token = full, 0                               # frozen embeddings: no gradient at first
    for _ in range(shape.layers):                           # blocks after the first repeat its end state
        b, grad = _block_bytes(shape, e, full, lora, r if not full else 0, grad)
        per_token += b
    h = shape.hidden
    per_token += (4 * h + 4) * grad + (2 * e * h if full else 0)  # final norm (+ x̂, the head's input)
    per_token += 4 * shape.vocab + 8                        # fp32 log-softmax, int64 labels
    per_token += 8 if full else 0                           # token ids, for the embedding's gradient
    tokens = batch * seq
    shapes = shape.linear_shapes()
    fused_bytes = shape.layers * sum(e * r * shapes[t][0] for t in lora) if fused else 0   # s·A per layer
    return tokens * per_token + 4 + 2 * seq * shape.hd * e + fused_bytes  # + loss scale, RoPE cos, sin


def training_memory(shape: ModelShape, method: str = "full", r: int = 16, targets="all-linear",
                    batch: int = 1, seq: int = 512, dtype: str = "bf16", fused: bool = True) -> dict:
    """Bytes of one Adam training step: {"weights", "gradients", "optimizer", "activations", "total"}.

    dtype "fp32": everything 4 bytes. dtype "bf16": weights and activations 2 bytes; full
    fine-tuning adds fp32 master weights (4) and bf16 gradients (2); LoRA's A, B stay fp32.
    Adam keeps m and v in fp32 (8 bytes per trainable parameter).
    """
    if dtype not in ("fp32", "bf16"):
        raise ValueError(f"dtype must be 'fp32' or 'bf16', got {dtype!r}")
    e = 4 if dtype == "fp32" else 2
    P = base_params(shape)
    if method == "full":
        weights = P * e + (P * 4 if dtype == "bf16" else 0)       # (+ fp32 master copy)
        trainable, grads = P, P * e
    elif method == "lora":
        trainable = lora_params(shape, r, targets)
        weights, grads = P * e + trainable * 4, trainable * 4
    else:
        raise ValueError(f"method must be 'full' or 'lora', got {method!r}")
    out = {"model": shape.name, "method": method, "dtype": dtype, "params": P, "trainable": trainable,
           "weights": weights, "gradients": grads, "optimizer": 8 * trainable}
    out["activations"] = activation_bytes(shape, method, batch, seq, e, r, targets, fused)
    out["total"] = out["weights"] + out["gradients"] + out["optimizer"] + out["activations"]
    return out


def measure_training_step(model: nn.Module, input_ids: torch.Tensor, lr: float = 1e-4) -> dict:
    """Run one forward/backward/AdamW step and measure the bytes of the tensors involved.

    weights: all parameters; gradients: .grad of trainable ones; optimizer: AdamW's state tensors
    (m, v and the step counters); activations: distinct storages autograd saved for backward
    (via torch.autograd.graph.saved_tensors_hooks), parameters excluded. Changes the model's weights.
    """
    params = [p for p in model.parameters()]
    param_storages = {p.untyped_storage().data_ptr() for p in params}
    saved: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in param_storages:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    was_training = model.training
    model.train()
    trainable = [p for p in params if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids, labels=input_ids).loss
    activations = sum(saved.values())
    loss.backward()
    opt.step()
    model.train(was_training)
    nbytes = lambda t: t.numel() * t.element_size()  # noqa: E731
    result = {"weights": sum(nbytes(p) for p in params),
              "gradients": sum(nbytes(p.grad) for p in trainable if p.grad is not None),
              "optimizer": sum(nbytes(v) for s in opt.state.values() for v in s.values() if torch.is_tensor(v)),
              "activations": activations, "trainable": sum(p.numel() for p in trainable),
              "loss": loss.item()}
    result["total"] = result["weights"] + result["gradients"] + result["optimizer"] + result["activations"]
    return result

