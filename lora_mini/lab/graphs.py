"""CUDA graphs for a whole training step: record its kernels once, replay them with one call.

A small model's training step is bound by the CPU, not the GPU. SmolLM2-135M has 30 layers;
one step (forward, backward, gradient clipping, AdamW) launches thousands of kernels, most of
them a few microseconds of GPU work behind ~5-20 µs of Python, dispatcher and launch overhead
each. At ~40-token sequences the GPU mostly waits, and every extra op that LoRA adds (casting
A and B, two thin GEMMs per layer) costs CPU time even though its GPU work is tiny.

A CUDA graph (torch.cuda.CUDAGraph) records the kernels of one step at fixed memory addresses;
`replay()` launches all of them with one call, so a step costs its GPU time alone. What that
requires, and how `GraphedStep` provides it:

    fixed shapes            every batch padded to the same (B, T) and copied into static inputs
    no CPU syncs            no .item(), no boolean-mask indexing, no data-dependent Python branches
                            inside the step (the caller's step_fn must respect this)
    optimizer state exists  the first `warmup` steps run eagerly (on a side stream, as PyTorch asks)
    capturable optimizer    AdamW(fused=True, capturable=True) with lr as a tensor (see make_adamw)
    autocast (full FT)      runs graphed when asked for (--strategy cuda_graph); its NaN after a
                            LoRA run came from the old fast path's strided grad_x (graph_nan/bisect6.py)

The steps stay real training steps: warm-up steps update the weights like any other, capture
records without running, so the captured step is replayed once right away.

    step = GraphedStep(step_fn, optimizer, warmup=3)     # step_fn(inputs) -> tensors (loss, ...)
    for batch in batches:
        out = step(batch)      # eager for 3 steps, then capture + replay; out is overwritten next step
"""
from __future__ import annotations

import torch


def make_adamw(params, lr: float, weight_decay: float = 0.0, graphs: bool = False, **kw):
    """AdamW for `params`: fused on CUDA; with graphs=True also capturable, lr as a CUDA tensor.

    With a tensor lr, change it in place (set_lr), not by assignment: the captured kernels read
    the tensor's memory.
    """
    params = list(params)
    cuda = params[0].device.type == "cuda"
    if graphs:
        if not cuda:
            raise ValueError("CUDA graphs need the parameters on a CUDA device; use graphs=False on CPU")
        lr = torch.tensor(float(lr), device=params[0].device)
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True, capturable=True, **kw)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=cuda, **kw)


def set_lr(group: dict, value: float) -> None:
    """Set a param group's learning rate, in place when it is a tensor (graph-captured optimizers)."""
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = value


def get_lr(group: dict) -> float:
    lr = group["lr"]
    return float(lr) if isinstance(lr, torch.Tensor) else lr


class GraphedStep:
    """Run step_fn eagerly for `warmup` calls, then capture it in a CUDA graph and replay it.

    step_fn(inputs: dict[str, Tensor]) -> Tensor or tuple of Tensors: one whole training step
    (forward, backward, clipping, optimizer.step()); it must not zero the gradients (this class
    does that between eager steps and before capture; in the graph, backward writes fresh
    gradients each replay). inputs: same keys, shapes and dtypes every call (CUDA tensors).

    If capture fails (an op that syncs with the CPU, an unsupported optimizer, ...) the error is
    kept in `.error`, the step runs eagerly from then on, and `.mode` says "eager (capture failed)".
    """

    def __init__(self, step_fn, optimizer, warmup: int = 3):
        if warmup < 1:
            raise ValueError("GraphedStep needs warmup >= 1 (the optimizer state must exist before capture)")
        self.step_fn, self.optimizer, self.warmup = step_fn, optimizer, warmup
        self.calls, self.graph, self.static_in, self.static_out = 0, None, None, None
        self.error, self.mode = None, "warm-up"
        self.capture_seconds = None

    def _eager(self, inputs):
        out = self.step_fn(inputs)
        self.optimizer.zero_grad(set_to_none=True)
        return out

    def __call__(self, inputs: dict):
        self.calls += 1
        if self.graph is not None:                      # the common case: copy in, replay
            for k, v in inputs.items():
                self.static_in[k].copy_(v, non_blocking=True)
            self.graph.replay()
            return self.static_out
        if self.error is not None or self.calls <= self.warmup:
            if self.error is None:                      # warm-up on a side stream (PyTorch's recipe)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    out = self._eager(inputs)
                torch.cuda.current_stream().wait_stream(side)
                return out
            return self._eager(inputs)
        return self._capture(inputs)

    def _capture(self, inputs):
        import time
        t0 = time.perf_counter()
        self.static_in = {k: v.clone() for k, v in inputs.items()}
        self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                out = self.step_fn(self.static_in)
        except Exception as e:      # nothing ran during capture: fall back to eager for this step on
            self.error = f"{type(e).__name__}: {str(e)[:300]}"
            self.mode = "eager (capture failed)"
            del graph
            self.static_in = None
            self.optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            return self._eager(inputs)
        self.graph, self.static_out, self.mode = graph, out, "cuda graph"
        graph.replay()                                  # capture records only: run this step now
        torch.cuda.synchronize()
        self.capture_seconds = time.perf_counter() - t0
        return self.static_out

    def release(self) -> None:
        """Free the graph and its static tensors (and the gradients, which live in its memory pool)."""
        if self.graph is not None:
            self.graph.reset()
        self.graph = self.static_in = self.static_out = None
        self.optimizer.zero_grad(set_to_none=True)


def right_padded(attention_mask: torch.Tensor) -> bool:
    """True if every row of a (B, T) 0/1 mask is ones then zeros (so a causal model needs no mask)."""
    m = attention_mask.to(torch.long)
    return bool((m.cumprod(dim=1) == m).all())
