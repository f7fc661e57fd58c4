"""lora_mini.decode: the static-KV-cache decode loop equals transformers (logits and greedy tokens),
and a mixed batch of adapters equals each adapter alone (tiny random Llama, CPU)."""
import copy

import pytest
import torch

from lora_mini import apply_lora, merge, tiny_model
from lora_mini.decode import StaticDecoder, segment_layout, unsupported
from lora_mini.multi import apply_multi_lora, lora_state, use_adapter


@pytest.fixture(scope="module")
def base():
    return tiny_model(rope_theta=500.0, seed=3)          # a non-default rope_theta: the model's own table is used


def _prompts(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, 256, (n,), generator=g).tolist() for n in lengths]


def _hf_greedy(model, prompt, n):
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                             eos_token_id=None, pad_token_id=1)
    return out[0, len(prompt):]


def _single(base, r, seed):
    m = apply_lora(copy.deepcopy(base), "all-linear", r=r, alpha=2 * r)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return m


@pytest.mark.parametrize("fuse", [False, True])
def test_logits_and_greedy_tokens_equal_transformers(base, fuse):
    prompts = _prompts((5, 9, 2, 7))
    dec = StaticDecoder(base, len(prompts), 32, fuse=fuse)
    first = []
    got = torch.stack(list(dec.steps(prompts, 10, lambda lg: (first.append(lg) if not first else None, lg.argmax(-1))[1])), 1)
    for i, p in enumerate(prompts):
        with torch.no_grad():
            want = base(torch.tensor([p])).logits[0, -1]
        assert (first[0][i] - want).abs().max() < 1e-4                       # the prompt's last logits
        assert torch.equal(got[i], _hf_greedy(base, p, 10)), i             # left-padded batch = one by one
    assert torch.equal(dec.greedy(prompts, 10), got)                        # the decoder can be reused


def test_bf16_logits_are_the_bits_of_transformers_static_cache():
    """In bfloat16 the loop runs transformers' ops in the same order and shapes: every step's logits are
    the same bits as generate(cache_implementation="static") with a cache of the same length."""
    model = tiny_model(hidden_size=256, intermediate_size=512, num_hidden_layers=3, num_attention_heads=8,
                       num_key_value_heads=2, vocab_size=512, seed=5).to(torch.bfloat16)
    prompts, n = _prompts((12,) * 4, seed=2), 10
    ids = torch.tensor(prompts)
    with torch.no_grad():
        hf = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                            do_sample=False, eos_token_id=None, pad_token_id=1, cache_implementation="static",
                            return_dict_in_generate=True, output_logits=True)
    logits = []
    dec = StaticDecoder(model, len(prompts), 12 + n - 1)                  # transformers' static cache length
    tokens = torch.stack(list(dec.steps(prompts, n, lambda lg: (logits.append(lg.float()), lg.argmax(-1))[1])), 1)
    assert torch.equal(torch.stack(logits, 1), torch.stack(hf.logits, 1))
    assert torch.equal(tokens, hf.sequences[:, 12:])


def test_mixed_adapters_equal_each_adapter_alone(base):
    singles = [_single(base, r, seed) for seed, r in enumerate((2, 4, 1))]
    multi = apply_multi_lora(copy.deepcopy(base), [lora_state(m) for m in singles])
    prompts = _prompts((5, 9, 3, 7, 4, 6, 8), seed=1)
    idx = torch.tensor([2, 0, -1, 2, 1, 2, 0])                           # any order, −1 = base only
    for fuse in (False, True):
        with use_adapter(multi, idx):
            got = StaticDecoder(multi, len(prompts), 32, fuse=fuse).greedy(prompts, 8)
        for i, (p, k) in enumerate(zip(prompts, idx.tolist())):
            assert torch.equal(got[i], _hf_greedy(base if k < 0 else singles[k], p, 8)), (fuse, i, k)
    with use_adapter(multi, 1):                                            # one adapter for the whole batch
        got = StaticDecoder(multi, 2, 32).greedy(prompts[:2], 6)
    assert all(torch.equal(got[i], _hf_greedy(singles[1], prompts[i], 6)) for i in range(2))
    merged = merge(copy.deepcopy(singles[0]))                              # merged LoRA layers read as W
    assert torch.equal(StaticDecoder(merged, 1, 32).greedy(prompts[:1], 6)[0], _hf_greedy(singles[0], prompts[0], 6))


def test_segment_layout_sorts_and_pads_rows():
    adapters, src, slot_of, L = segment_layout(torch.tensor([1, -1, 1, 0, 1]), 5)
    assert adapters == [-1, 0, 1] and L == 3
    assert src == [1, 1, 1, 3, 3, 3, 0, 2, 4] and slot_of == [6, 0, 7, 3, 8]


def test_unsupported_models_are_named(base):
    assert unsupported(base) is None
    assert "gpt2" in unsupported(tiny_model("gpt2"))
    assert "unmerged" in unsupported(apply_lora(copy.deepcopy(base), "all-linear", r=2, alpha=4))
    with pytest.raises(ValueError, match="cannot run"):
        StaticDecoder(tiny_model("gpt2"), 1, 8)
    with pytest.raises(ValueError, match="CUDA"):
        StaticDecoder(base, 1, 8, graph=True)
    with pytest.raises(ValueError, match="max_len"):
        next(StaticDecoder(base, 1, 8).steps([[3] * 6], 4, lambda lg: lg.argmax(-1)))
