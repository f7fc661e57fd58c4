"""Self-checks for chapter 3 (a LoRA layer from scratch)."""
import math

import torch
import torch.nn as nn


def check_exercise_3_1(answer):
    """Trainable parameters of LoRA r=16 on SmolLM2's up_proj (in 576, out 1536)."""
    want = 16 * (576 + 1536)
    assert isinstance(answer, int), f"answer should be an int (a parameter count), got {type(answer).__name__}"
    assert answer != 576 * 1536, "that is the size of W itself; LoRA trains A (r × in) and B (out × r)"
    assert answer == want, f"got {answer:,}; count the entries of A (r × in) plus B (out × r)"
    print(f"✓ {answer:,} trainable parameters = {100 * answer / (576 * 1536):.1f}% of W's {576 * 1536:,}")


def check_exercise_3_2(lora_forward):
    """lora_forward(x, W, b, A, B, alpha, r) -> y = x Wᵀ + b + (α/r)·x Aᵀ Bᵀ."""
    g = torch.Generator().manual_seed(3)
    x, W, b = torch.randn(5, 7, 12, generator=g), torch.randn(20, 12, generator=g), torch.randn(20, generator=g)
    A, B = torch.randn(4, 12, generator=g), torch.randn(20, 4, generator=g)
    y = lora_forward(x, W, b, A, B, 8.0, 4)
    assert tuple(y.shape) == (5, 7, 20), f"output shape should be (batch, seq, out) = (5, 7, 20), got {tuple(y.shape)}"
    want = x @ W.T + b + 2.0 * (x @ A.T @ B.T)
    no_scale = x @ W.T + b + x @ A.T @ B.T
    assert not torch.allclose(y, no_scale, atol=1e-4), "forgot the scaling α/r on the LoRA branch"
    err = (y - want).abs().max().item()
    assert err < 1e-4, f"max error {err:.2e}: y should be x Wᵀ + b + (α/r)·(x Aᵀ) Bᵀ"
    print(f"✓ lora_forward matches x Wᵀ + b + (α/r)·x Aᵀ Bᵀ (max error {err:.1e})")


def check_exercise_3_3(init_lora):
    """init_lora(in_features, out_features, r) -> (A, B) initialised as in the paper and PEFT."""
    torch.manual_seed(0)
    A, B = init_lora(300, 40, 8)
    assert tuple(A.shape) == (8, 300), f"A is r × in = (8, 300), got {tuple(A.shape)}"
    assert tuple(B.shape) == (40, 8), f"B is out × r = (40, 8), got {tuple(B.shape)}"
    assert torch.all(B == 0), "B must start at zero so that the layer starts as exactly W"
    assert A.abs().min() >= 0 and A.std() > 0, "A must not be zero, or no gradient ever reaches A or B"
    bound = 1 / math.sqrt(300)    # kaiming_uniform_(a=√5) draws from U(-1/√in, 1/√in)
    assert A.abs().max() <= bound + 1e-6, f"A's entries should lie in ±1/√in = ±{bound:.4f}, max is {A.abs().max():.4f}"
    assert abs(A.std().item() - bound / math.sqrt(3)) < 0.1 * bound, "A should be uniform over ±1/√in (std bound/√3)"
    assert isinstance(A, nn.Parameter) and isinstance(B, nn.Parameter), "return nn.Parameter objects so they train"
    print("✓ A ~ U(±1/√in) (r × in), B = 0 (out × r)")


def check_exercise_3_4(conv1d_merged_weight):
    """conv1d_merged_weight(W, A, B, scaling) -> W + (scaling·B·A)ᵀ for GPT-2's Conv1D (W: in × out)."""
    from transformers.pytorch_utils import Conv1D
    torch.manual_seed(1)
    conv = Conv1D(24, 10)           # Conv1D(nf=out, nx=in): weight (in=10, out=24)
    nn.init.normal_(conv.weight)
    A, B = torch.randn(3, 10), torch.randn(24, 3)
    W2 = conv1d_merged_weight(conv.weight.detach(), A, B, 0.5)
    assert tuple(W2.shape) == (10, 24), f"the merged weight keeps Conv1D's (in, out) = (10, 24) shape, got {tuple(W2.shape)}"
    x = torch.randn(6, 10)
    want = conv(x) + 0.5 * (x @ A.T @ B.T)
    err = (x @ W2 + conv.bias - want).abs().max().item()
    assert err < 1e-4, f"x @ W' + b should equal the LoRA layer's output; max error {err:.2e} (transpose B·A?)"
    print(f"✓ merged Conv1D weight reproduces the LoRA output (max error {err:.1e})")
