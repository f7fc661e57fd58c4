"""lora_mini.lab.tasks: the addition task, its encoding, batching and exact-match evaluation."""
import copy

import pytest
import torch

from lora_mini.lab.tasks import IGNORE, AdditionTask, batches, collate, encode_examples, exact_match, generate


def test_splits_are_deterministic_disjoint_and_in_range():
    task = AdditionTask(digits=(2, 3), seed=1)
    train, test = task.make_splits(500, 100)
    again = AdditionTask(digits=(2, 3), seed=1).make_splits(500, 100)
    assert (train, test) == again
    assert AdditionTask(digits=(2, 3), seed=2).make_splits(500, 100)[1] != test
    key = lambda e: (min(e["a"], e["b"]), max(e["a"], e["b"]))  # noqa: E731
    assert not {key(e) for e in train} & {key(e) for e in test}
    assert len({key(e) for e in train + test}) == 600
    for e in train + test:
        assert 10 <= e["a"] <= 999 and 10 <= e["b"] <= 999
        assert e["answer"] == str(e["a"] + e["b"])
        assert e["messages"][-1] == {"role": "user", "content": f"What is {e['a']} + {e['b']}?"}
    # the test split does not depend on how much training data is drawn
    assert AdditionTask(digits=(2, 3), seed=1).make_splits(50, 100)[1] == test


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="digits"):
        AdditionTask(digits=(3, 2))
    with pytest.raises(ValueError, match="too many"):
        AdditionTask(digits=(1, 1)).make_splits(50, 10)
    with pytest.raises(ValueError, match="multiple of world_size"):
        next(batches([{"input_ids": [1], "labels": [1]}], 3, world_size=2))
    with pytest.raises(ValueError, match="no encoded"):
        next(batches([], 4))


def _fake_encoded(n=10):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        p, a = 3 + i % 4, 2 + i % 3
        ids = torch.randint(3, 100, (p + a,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE] * p + ids[p:], "prompt_len": p})
    return out


def test_batches_pad_right_and_cycle_deterministically():
    enc = _fake_encoded(10)
    b = collate(enc[:3], pad_id=0)
    assert b["input_ids"].shape == b["labels"].shape == b["attention_mask"].shape == (3, 9)
    assert b["attention_mask"].sum(1).tolist() == [5, 7, 9]
    assert (b["labels"][b["attention_mask"] == 0] == IGNORE).all()
    it1, it2 = batches(enc, 4, seed=3, pad_id=0), batches(enc, 4, seed=3, pad_id=0)
    first = [next(it1) for _ in range(6)]          # 24 rows: crosses two epochs of 10
    assert all(torch.equal(x["input_ids"], next(it2)["input_ids"]) for x in first)
    seen = [tuple(r[m.bool()].tolist()) for x in first[:2] for r, m in zip(x["input_ids"], x["attention_mask"])]
    assert len(set(seen)) == 8                     # no repeats within an epoch


def test_rank_slices_make_up_the_global_batch():
    enc = _fake_encoded(10)
    one = batches(enc, 4, seed=0, pad_id=0)
    two = [batches(enc, 4, seed=0, pad_id=0, rank=r, world_size=2) for r in range(2)]
    for _ in range(5):
        g = next(one)
        parts = [next(it) for it in two]
        rows = [tuple(r[m.bool()].tolist()) for p in parts for r, m in zip(p["input_ids"], p["attention_mask"])]
        want = [tuple(r[m.bool()].tolist()) for r, m in zip(g["input_ids"], g["attention_mask"])]
        assert rows == want


@pytest.mark.slow
def test_encoding_puts_labels_on_the_answer_only(smollm):
    _, tok = smollm
    task = AdditionTask(digits=(2, 3), seed=0)
    _, test = task.make_splits(0, 3)
    enc = encode_examples(tok, test)
    for e, x in zip(test, enc):
        text = tok.decode(x["input_ids"])
        assert text.endswith(f"<|im_start|>assistant\n{e['answer']}<|im_end|>"), text
        assert f"What is {e['a']} + {e['b']}?" in text
        answer = [t for t in x["labels"] if t != IGNORE]
        assert tok.decode(answer) == e["answer"] + "<|im_end|>"
        assert x["labels"][:x["prompt_len"]] == [IGNORE] * x["prompt_len"]


@pytest.mark.slow
def test_batched_left_padded_greedy_equals_one_by_one(smollm):
    model, tok = smollm
    task = AdditionTask(digits=(1, 3), seed=0, system="")
    _, test = task.make_splits(0, 4)           # prompts of different lengths -> padding
    assert len({len(encode_examples(tok, [e])[0]["input_ids"]) for e in test}) > 1
    batched = generate(model, tok, test, batch_size=4, max_new_tokens=4)
    single = [generate(model, tok, [e], batch_size=1, max_new_tokens=4)[0] for e in test]
    assert batched == single


@pytest.mark.slow
def test_exact_match_counts_correct_answers(smollm):
    model, tok = smollm
    _, test = AdditionTask(digits=(2, 2), seed=0, system="").make_splits(0, 4)
    base = exact_match(model, tok, test, max_new_tokens=4)
    assert base["exact_match"] == 0.0 and len(base["answers"]) == 4   # the base model chats instead

    class Oracle(torch.nn.Module):             # "generates" the right answer: exact match must be 1
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
            rows = []
            for e in test:
                ans = tok(e["answer"], add_special_tokens=False)["input_ids"] + [kw["eos_token_id"]]
                rows.append(ans + [kw["pad_token_id"]] * (max_new_tokens - len(ans)))
            return torch.cat([input_ids, torch.tensor(rows)], 1)

    assert exact_match(Oracle(), tok, test, max_new_tokens=4)["exact_match"] == 1.0


def test_char_tokenizer_keeps_newlines():
    from lora_mini.lab.tasks import char_tokenizer
    tok = char_tokenizer()
    ids = tok("a\n\nb", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 and tok.unk_token_id not in ids
    assert tok.decode(ids) == "a\n\nb"
