"""Several LoRA adapters on one base: switching and per-row mixed batches (tiny model, CPU)."""
import copy

import pytest
import torch

from lora_mini import apply_lora, tiny_model
from lora_mini.multi import apply_multi_lora, lora_state, parameter_bytes, set_adapter, use_adapter


def _trained_like(base, seed):
    m = apply_lora(copy.deepcopy(base), "all-linear", r=4, alpha=8)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    return m


@pytest.fixture(scope="module")
def setup():
    base = tiny_model()
    singles = [_trained_like(base, s) for s in (1, 2, 3)]
    multi = apply_multi_lora(copy.deepcopy(base), [lora_state(m) for m in singles])
    return base, singles, multi


def _ids(b=4, t=6):
    return torch.randint(2, 256, (b, t), generator=torch.Generator().manual_seed(0))


def test_switching_equals_single_models(setup):
    base, singles, multi = setup
    x = _ids()
    with torch.no_grad():
        for k, single in enumerate(singles):
            with use_adapter(multi, k):
                assert (multi(x).logits - single(x).logits).abs().max() < 1e-5
        assert (multi(x).logits - base(x).logits).abs().max() < 1e-6   # None = base


def test_mixed_batch_equals_per_row_outputs(setup):
    base, singles, multi = setup
    x = _ids(b=5)
    idx = torch.tensor([2, 0, -1, 1, 2])
    with torch.no_grad(), use_adapter(multi, idx):
        mixed = multi(x).logits
    for i, k in enumerate(idx.tolist()):
        ref = (base if k < 0 else singles[k])
        with torch.no_grad():
            want = ref(x[i:i + 1]).logits[0]
        assert (mixed[i] - want).abs().max() < 1e-5, (i, k)


def test_mixed_batch_generate(setup):
    base, singles, multi = setup
    x = _ids(b=3)
    idx = torch.tensor([1, 0, 2])
    kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=1)
    with torch.no_grad(), use_adapter(multi, idx):
        mixed = multi.generate(x, attention_mask=torch.ones_like(x), **kw)
    for i, k in enumerate(idx.tolist()):
        with torch.no_grad():
            want = singles[k].generate(x[i:i + 1], attention_mask=torch.ones_like(x[i:i + 1]), **kw)
        assert torch.equal(mixed[i], want[0])


def _lora_of_rank(base, r, seed, targets="all-linear"):
    m = apply_lora(copy.deepcopy(base), targets, r=r, alpha=2 * r)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return m


@pytest.mark.parametrize("ranks", [(2,), (1, 4), (3, 1, 5, 2, 8)])
def test_segmented_mixed_batch_any_ranks_counts_and_row_order(setup, ranks):
    base = setup[0]
    singles = [_lora_of_rank(base, r, seed=10 + r + i) for i, r in enumerate(ranks)]
    multi = apply_multi_lora(copy.deepcopy(base), [lora_state(m) for m in singles])
    K = len(ranks)
    g = torch.Generator().manual_seed(K)
    idx = torch.randint(-1, K, (9,), generator=g)          # unsorted, repeats, some rows base only
    x = _ids(b=9, t=5)
    with torch.no_grad(), use_adapter(multi, idx):
        mixed = multi(x).logits
    with torch.no_grad():
        for i, k in enumerate(idx.tolist()):
            want = (base if k < 0 else singles[k])(x[i:i + 1]).logits[0]
            assert (mixed[i] - want).abs().max() < 1e-5, (ranks, i, k)


def test_segments_read_the_stacks_without_per_row_copies(setup):
    from lora_mini.multi import MultiLoRALinear, RowSegments
    multi = setup[2]
    layer = next(m for m in multi.modules() if isinstance(m, MultiLoRALinear))
    seg = RowSegments(torch.tensor([2, 0, 0, 1, 2, 2, 1]))
    assert seg.rows.tolist() == [[1, 2, 0], [3, 6, 0], [0, 4, 5]] and seg.weight.tolist()[0] == [1, 1, 0]
    At, Bt, w = seg.stacks(layer, torch.float32)
    assert At.shape[0] == 3 and At.data_ptr() == layer.lora_A.data_ptr() and Bt.data_ptr() == layer.lora_B.data_ptr()
    some = RowSegments(torch.tensor([-1, 2, 2]))             # one adapter present: one copy of it, not one per row
    assert some.stacks(layer, torch.float32)[0].shape[0] == 1 and some.rows.tolist() == [[1, 2]]
    none = RowSegments(torch.tensor([-1, -1]))
    x = torch.randn(2, 3, layer.lora_A.shape[-1])
    with torch.no_grad():
        layer.active = none
        assert torch.equal(layer(x), layer.base(x))
        layer.active = RowSegments(torch.tensor([0]))
        with pytest.raises(ValueError, match="rows"):
            layer(x)
    layer.active = None


def test_bad_indices_and_memory(setup):
    base, singles, multi = setup
    with pytest.raises(ValueError, match="in 0..2"):
        set_adapter(multi, 3)
    with pytest.raises(ValueError, match="−1..2"):
        set_adapter(multi, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="no MultiLoRALinear"):
        set_adapter(base, 0)
    # one base + 3 adapters: exactly the base's bytes plus 3 × (A, B) in float32 and the scales
    adapters = sum(4 * (m.lora_A.numel() + m.lora_B.numel() + m.scaling.numel())
                   for m in multi.modules() if hasattr(m, "n_adapters"))
    assert adapters > 0 and parameter_bytes(multi) == parameter_bytes(base) + adapters
    assert parameter_bytes(multi) < 1.5 * parameter_bytes(base)   # far below 3 full models


def test_extra_tasks():
    from lora_mini.lab.tasks import TASKS
    train, test = TASKS["sub"](seed=0).make_splits(50, 10)
    for ex in train + test:
        assert int(ex["answer"]) == ex["a"] - ex["b"] >= 0
        assert f"{ex['a']} - {ex['b']}" in ex["messages"][-1]["content"]
    train, _ = TASKS["rev"](seed=0).make_splits(50, 10)
    for ex in train:
        assert ex["answer"] == f"{ex['a']}{ex['b']}"[::-1]
