"""Bottleneck adapters and prompt tuning (tiny models, CPU)."""
import copy

import pytest
import torch

from lora_mini import count_parameters, tiny_model
from lora_mini.adapters import BottleneckAdapter, SoftPrompt, apply_adapters


def _ids(seed=0, b=2, t=7):
    return torch.randint(2, 256, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind,targets", [("llama", ["o_proj", "down_proj"]), ("gpt2", ["attn.c_proj", "mlp.c_proj"])])
def test_adapters_start_as_identity_and_count(kind, targets):
    base = tiny_model(kind)
    model = apply_adapters(copy.deepcopy(base), targets, bottleneck=8)
    x = _ids()
    with torch.no_grad():
        assert (model(x).logits - base(x).logits).abs().max() < 1e-6
    d = 64
    assert count_parameters(model)[0] == 4 * (2 * d * 8 + 8 + d)   # 2 layers × 2 adapters
    assert all(".adapter_" in n for n, p in model.named_parameters() if p.requires_grad)


def test_adapter_learns_and_is_nonlinear():
    layer = BottleneckAdapter(torch.nn.Linear(4, 6), bottleneck=3)
    with torch.no_grad():
        layer.adapter_up.weight.normal_()
        layer.adapter_down.weight.normal_()
    x = torch.randn(5, 4)
    # a linear map would satisfy f(2x) − 2 f(x) = −b; the adapter does not
    lin = layer.base
    assert (layer(2 * x) - 2 * layer(x) + lin.bias).abs().max() > 1e-3
    with pytest.raises(ValueError, match="bottleneck"):
        BottleneckAdapter(torch.nn.Linear(4, 6), bottleneck=0)


def test_soft_prompt_shapes_loss_and_grads():
    model = SoftPrompt(tiny_model(), n_tokens=5)
    assert count_parameters(model)[0] == 5 * 64
    x = _ids()
    labels = x.clone()
    labels[:, :3] = -100
    out = model(x, attention_mask=torch.ones_like(x), labels=labels)
    assert out.logits.shape == (2, 7, 256)
    out.loss.backward()
    assert model.prompt.grad is not None and model.prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.model.parameters())


def test_soft_prompt_equals_prepended_tokens():
    """A prompt set to real token embeddings computes what the LM computes on those tokens."""
    base = tiny_model()
    model = SoftPrompt(copy.deepcopy(base), n_tokens=3)
    prefix = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        model.prompt.copy_(base.get_input_embeddings().weight[prefix[0]])
        x = _ids(b=1)
        ours = model(x).logits
        ref = base(torch.cat([prefix, x], 1)).logits[:, 3:]
    assert (ours - ref).abs().max() < 1e-5


def test_soft_prompt_generate_matches_forward_greedy():
    model = SoftPrompt(tiny_model(), n_tokens=4)
    x = _ids(b=2, t=5)
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=3, do_sample=False,
                             pad_token_id=1)
        assert out.shape == (2, 8) and torch.equal(out[:, :5], x)
        nxt = model(x).logits[:, -1].argmax(-1)
    assert torch.equal(out[:, 5], nxt)


def test_soft_prompt_trains_with_lora_mini_train():
    from lora_mini.lab.trainer import AnswerLoss
    model = SoftPrompt(tiny_model(), n_tokens=3)
    x = _ids()
    labels = x.clone()
    labels[:, :4] = -100
    loss_sum, n = AnswerLoss(model)(x, torch.ones_like(x), labels)
    ref = model(x, attention_mask=torch.ones_like(x), labels=labels).loss
    assert abs(loss_sum.item() / n.item() - ref.item()) < 1e-5


def test_soft_prompt_training_lowers_the_loss_and_moves_only_the_prompt():
    model = SoftPrompt(tiny_model(), n_tokens=3)
    frozen = {n: p.clone() for n, p in model.model.named_parameters()}
    p0 = model.prompt.detach().clone()
    x = _ids(b=4, t=8)
    opt = torch.optim.Adam([model.prompt], lr=0.05)
    losses = []
    for _ in range(15):
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    assert not torch.equal(model.prompt, p0)
    assert all(torch.equal(p, frozen[n]) for n, p in model.model.named_parameters())
