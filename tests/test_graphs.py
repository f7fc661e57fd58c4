"""graphs.py: what can be checked without a GPU (the capture itself runs on the H200, see GPU_RUNS.md)."""
import pytest
import torch

from lora_mini import apply_lora, tiny_model
from lora_mini.lab.graphs import GraphedStep, get_lr, make_adamw, right_padded, set_lr
from lora_mini.lab.tasks import IGNORE
from lora_mini.lab.trainer import AnswerLoss, train


def test_right_padded():
    assert right_padded(torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert not right_padded(torch.tensor([[0, 1, 1], [1, 1, 1]]))     # left padding
    assert not right_padded(torch.tensor([[1, 0, 1]]))                 # a hole


def test_set_lr_float_and_tensor():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=1e-3)
    set_lr(opt.param_groups[0], 5e-4)
    assert opt.param_groups[0]["lr"] == 5e-4
    g = {"lr": torch.tensor(1e-3)}
    t = g["lr"]
    set_lr(g, 2e-3)
    assert g["lr"] is t and get_lr(g) == pytest.approx(2e-3)           # changed in place


def test_graphs_need_cuda():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="CUDA"):
        make_adamw([p], 1e-3, graphs=True)
    with pytest.raises(ValueError, match="warmup"):
        GraphedStep(lambda x: x, None, warmup=0)


def _batch(model, B=3, T=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, model.config.vocab_size, (B, T), generator=g)
    lengths = torch.tensor([T, T - 3, T - 5])
    mask = (torch.arange(T)[None] < lengths[:, None]).long()           # right padding
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, IGNORE))
    labels[:, :4] = IGNORE                                             # a "prompt" without labels
    return ids, mask, labels


def test_static_loss_equals_masked_loss():
    """The fixed-shape loss (head on every position, no attention mask) equals the masked one."""
    model = tiny_model("llama")
    apply_lora(model, "all-linear", r=4, alpha=8)
    ids, mask, labels = _batch(model)
    loss = AnswerLoss(model)
    a, n_a = loss(ids, mask, labels)
    b, n_b = loss(ids, None, labels, static=True)
    assert n_a == n_b == (labels[:, 1:] != IGNORE).sum()
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (a, b)


def test_train_cuda_graph_refused_on_cpu():
    model = tiny_model("llama")
    apply_lora(model, "all-linear", r=4, alpha=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="CUDA"):
        train(model, iter([]), steps=2, lr=1e-3, cuda_graph=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_needs_autocast_and_graph_guard():
    """LoRA on a bf16 base needs no autocast (so CUDA graphs are allowed); fp32 weights do."""
    from lora_mini.lab.trainer import needs_autocast
    full = tiny_model("llama")
    assert needs_autocast(full)                                        # fp32 weights, full FT
    lora16 = apply_lora(tiny_model("llama").to(torch.bfloat16), "all-linear", r=4, alpha=8)
    assert lora16.model.layers[0].self_attn.q_proj.lora_A.dtype == torch.float32
    assert not needs_autocast(lora16)                                  # fp32 masters A, B don't count
    lora32 = apply_lora(tiny_model("llama"), "all-linear", r=4, alpha=8)
    assert needs_autocast(lora32)
