"""Checks for chapter 5 (merge, save, share)."""
import math

import torch

from . import call, close, exercise, no_library, rand, same


@exercise("5.1")
def merge_weight_test(merge_weight):
    """merge_weight(W, A, B, alpha, r) -> a new W + (α/r)·B·A (W: out × in), W left as it was."""
    for seed, (d, k, r, alpha, dtype) in enumerate([(12, 9, 3, 6.0, torch.float32), (8, 8, 4, 3.0, torch.float64),
                                                    (10, 6, 2, 5, torch.float32), (16, 32, 8, 16.0, torch.bfloat16)]):
        W, A, B = rand(d, k, seed=seed, dtype=dtype), rand(r, k, seed=seed + 1, dtype=dtype), \
            rand(d, r, seed=seed + 2, dtype=dtype)
        out = call(merge_weight, W, A, B, alpha, r)
        assert torch.is_tensor(out) and tuple(out.shape) == (d, k), f"the merged weight is out × in = {(d, k)}"
        assert out.dtype == dtype, f"keep W's dtype ({dtype}), got {out.dtype}"
        Wd, BA = W.double(), B.double() @ A.double()
        want = (Wd + float(alpha) / r * BA).to(dtype)
        if not same(out, want):
            for s, hint in [(1.0, "forgot the scale α/r"), (float(alpha), "scale by α/r, not α"),
                            (float(alpha) / math.sqrt(r), "α/√r is rsLoRA's scale; LoRA merges with α/r"),
                            (float(alpha // r), "α // r is integer division: use true division")]:
                assert not same(out, (Wd + s * BA).to(dtype)), f"(α={alpha}, r={r}) {hint}"
        close(out, want, f"the merged weight at α={alpha}, r={r}, {dtype}")
    return "W' = W + (α/r)·B·A for four shapes and dtypes (float32, float64, bfloat16); W untouched"


@exercise("5.2")
def lora_state_dict_test(lora_state_dict):
    """lora_state_dict(model) -> {name: tensor} with copies of every LoRA A and B, keyed as in named_parameters()."""
    from lora_mini import apply_lora, tiny_model
    for kind, targets, r in [("llama", ["q_proj", "v_proj"], 4), ("gpt2", "all-linear", 2), ("llama", "all-linear", 8)]:
        model = apply_lora(tiny_model(kind, seed=r), targets, r=r, alpha=2 * r)
        for p in model.parameters():
            if p.requires_grad:
                torch.nn.init.normal_(p)
        want = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        with no_library(allow=("layers.py", "fast.py")):
            got = lora_state_dict(model)
        assert isinstance(got, dict), "return a dict {name: tensor}"
        extra, missing = set(got) - set(want), set(want) - set(got)
        assert not extra, f"{len(extra)} entries are not LoRA tensors (e.g. {sorted(extra)[0]}): keep only A and B"
        assert not missing, f"{len(missing)} LoRA tensors are missing (e.g. {sorted(missing)[0]})"
        for n in want:
            assert torch.equal(got[n], want[n]), f"{n} does not hold the model's values"
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        assert all(torch.equal(got[n], want[n]) for n in want), \
            "your tensors change when the model trains on: save copies (detach and clone), not the live parameters"
        assert not any(t.requires_grad for t in got.values()), "detach the tensors (a file stores values, not graphs)"
    return "lora_state_dict keeps exactly the A and B tensors, as copies, on three models"


@exercise("5.3")
def bf16_spacing_test(bf16_spacing):
    """bf16_spacing(x) -> for positive bfloat16 values x, the gap up to the next bfloat16 number (float32)."""
    g = torch.Generator().manual_seed(0)
    values = [torch.tensor([1.0, 2.0, 0.5, 3.0, 1024.0, 0.0078125]),                   # powers of two and a 3
              torch.exp(torch.empty(50).uniform_(-12, 12, generator=g))]               # magnitudes e^±12
    for x in values:
        xb = x.to(torch.bfloat16).float()                                             # representable in bf16
        want = (torch.nextafter(xb.bfloat16(), torch.tensor(math.inf, dtype=torch.bfloat16)).float() - xb)
        got = call(bf16_spacing, xb.clone())
        assert torch.is_tensor(got) and got.shape == xb.shape, "return a tensor with one gap per value"
        got = got.float()
        if not torch.equal(got, want):
            for wrong, hint in [(want / 2, "that is half the gap (the rounding error bound), not the gap"),
                                (want / 8, "bfloat16 keeps 8 significant bits (7 stored), not 11 like float16"),
                                (want * 2, "too large by 2: bfloat16 keeps 8 significant bits")]:
                assert not torch.equal(got, wrong), hint
            bad = int((got != want).nonzero()[0])
            raise AssertionError(f"at x = {xb[bad].item():g} you say {got[bad].item():g}; the gap is set by x's power "
                                 "of two — what happens exactly at a power of two?")
    return "bf16_spacing is exact for 56 values from e^-12 to e^12, powers of two included"
