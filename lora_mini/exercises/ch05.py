"""Self-checks for chapter 5 (merge, save, share)."""
import torch


def check_exercise_5_1(answer):
    """Bytes of tensor data in an fp32 adapter with r=8 on q_proj and v_proj of SmolLM2-135M."""
    params = 30 * 8 * ((576 + 576) + (576 + 192))
    assert isinstance(answer, int), f"answer should be an int number of bytes, got {type(answer).__name__}"
    assert answer != params, "that is the number of parameters; each fp32 parameter takes 4 bytes"
    assert answer != 2 * params, "A and B are saved in float32 (4 bytes), not 16-bit"
    assert answer == 4 * params, f"got {answer:,}; count A and B of q_proj (576→576) and v_proj (576→192) in 30 layers"
    print(f"✓ {answer / 1e6:.2f} MB, against {134_515_008 * 4 / 1e6:.0f} MB for the fp32 model")


def check_exercise_5_2(merge_weight):
    """merge_weight(W, A, B, alpha, r) -> W + (α/r)·B·A  (W: out × in)."""
    g = torch.Generator().manual_seed(5)
    W, A, B = torch.randn(12, 9, generator=g), torch.randn(3, 9, generator=g), torch.randn(12, 3, generator=g)
    W0 = W.clone()
    out = merge_weight(W, A, B, 6.0, 3)
    assert tuple(out.shape) == (12, 9), f"merged weight should be out × in = (12, 9), got {tuple(out.shape)}"
    assert not torch.allclose(out, W0 + B @ A), "forgot the scaling α/r"
    assert torch.allclose(out, W0 + 2.0 * B @ A, atol=1e-5), "expected W + (α/r)·B·A"
    print("✓ W' = W + (α/r)·B·A")


def check_exercise_5_3(answer):
    """Smallest power of two δ with bfloat16(1 + δ) != 1."""
    one = torch.tensor(1.0, dtype=torch.bfloat16)
    want = next(2.0 ** -k for k in range(20, 0, -1)
                if (torch.tensor(1.0 + 2.0 ** -k).to(torch.bfloat16) != one).item())
    assert isinstance(answer, float), f"answer should be a float, got {type(answer).__name__}"
    if answer == 2.0 ** -8:
        raise AssertionError("1 + 2^-8 lies exactly half-way between 1 and the next bfloat16; "
                             "round-to-nearest-even rounds the tie back to 1.0")
    assert answer == want, f"bfloat16(1 + {answer}) == {torch.tensor(1.0 + answer).to(torch.bfloat16).item()}; " \
                           "bfloat16 keeps 8 significant bits (7 stored)"
    print(f"✓ δ = {answer}: any update smaller than ~{want / 2} of W's size vanishes when merged into bf16 W")


def check_exercise_5_4(peft_key):
    """peft_key(module_name, "A" | "B") -> the tensor key in PEFT's adapter_model.safetensors."""
    cases = {("model.layers.0.self_attn.q_proj", "A"): "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
             ("model.layers.29.mlp.down_proj", "B"): "base_model.model.model.layers.29.mlp.down_proj.lora_B.weight",
             ("transformer.h.1.attn.c_attn", "A"): "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight"}
    for (name, which), want in cases.items():
        got = peft_key(name, which)
        assert got == want, f"peft_key({name!r}, {which!r}) = {got!r}, want {want!r}"
    print("✓ PEFT keys: base_model.model.<module>.lora_A.weight / lora_B.weight")
