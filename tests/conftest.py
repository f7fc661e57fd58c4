import pytest
import torch


@pytest.fixture(scope="session")
def smollm():
    """The real SmolLM2-135M-Instruct in float32 on CPU, loaded once per session.

    Tests must not change it in place; use `copy.deepcopy(model)` first.
    """
    from lora_mini import load_model
    model, tokenizer = load_model(device="cpu", dtype=torch.float32)
    return model, tokenizer
