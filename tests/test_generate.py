"""lora_mini.lab.generate: the decode loop (greedy = transformers' greedy, batched = one by one),
seeded sampling, streaming, stopping at the end of the turn, and the generate / chat commands."""
import argparse
import io
import types

import pytest
import torch

from lora_mini import apply_lora, load_model, save_adapter, tiny_model
from lora_mini.lab.tasks import char_tokenizer
from lora_mini.lab.generate import (GenerateConfig, add_arguments, add_chat_arguments, chat_loop, chat_main,
                                    generate_replies, generate_reply, main, pick, prompt_ids, reply_tokens,
                                    stream_reply)

CHATS = [[{"role": "user", "content": "Hi"}],
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}],
         [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]]


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


def tiny(kind, tok, seed):
    """A random tiny model whose vocabulary is the character tokenizer's."""
    return tiny_model(kind, seed=seed, vocab_size=len(tok), eos_token_id=tok.eos_token_id,
                      **({"pad_token_id": tok.pad_token_id} if kind == "llama" else {}))


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request, tok):
    return tiny(request.param, tok, seed=1)


def test_greedy_is_deterministic_and_equals_transformers_greedy(model, tok):
    cfg = GenerateConfig(max_new_tokens=12)
    for chat in CHATS:
        a, b = reply_tokens(model, tok, chat, cfg), reply_tokens(model, tok, chat, cfg)
        assert a == b and a
        ids = torch.tensor([prompt_ids(tok, chat)])
        end, pad = tok.eos_token_id, tok.pad_token_id
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                             eos_token_id=end, pad_token_id=pad)[0, ids.shape[1]:].tolist()
        assert a == (ref[:ref.index(end)] if end in ref else ref)


def test_batched_left_padded_replies_equal_one_by_one(model, tok):
    cfg = GenerateConfig(max_new_tokens=10)
    assert generate_replies(model, tok, CHATS, cfg, batch_size=3) == [generate_reply(model, tok, c, cfg) for c in CHATS]


def test_streaming_yields_the_same_text_as_one_reply(model, tok):
    for cfg in (GenerateConfig(max_new_tokens=15), GenerateConfig(max_new_tokens=15, temperature=0.8, seed=3)):
        pieces = list(stream_reply(model, tok, CHATS[1], cfg))
        assert len(pieces) > 1 and all(pieces)
        assert "".join(pieces) == generate_reply(model, tok, CHATS[1], cfg)


def test_sampling_is_seeded_and_top_p_near_zero_is_greedy(model, tok):
    hot = lambda seed: GenerateConfig(max_new_tokens=20, temperature=1.5, seed=seed)   # noqa: E731
    assert generate_reply(model, tok, CHATS[0], hot(1)) == generate_reply(model, tok, CHATS[0], hot(1))
    assert len({generate_reply(model, tok, CHATS[0], hot(s)) for s in range(4)}) > 1
    greedy = generate_reply(model, tok, CHATS[0], GenerateConfig(max_new_tokens=20))
    assert generate_reply(model, tok, CHATS[0], GenerateConfig(max_new_tokens=20, temperature=1.5,
                                                                top_p=1e-6)) == greedy
    assert generate_reply(model, tok, CHATS[0], hot(1)) != greedy


def test_top_p_keeps_the_nucleus_only():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    seen = {int(pick(logits, GenerateConfig(temperature=1.0, top_p=0.7), gen)) for _ in range(300)}
    assert seen == {0, 1}                               # 0.5 + 0.3 reaches 0.7; 2 and 3 never drawn
    seen = {int(pick(logits, GenerateConfig(temperature=1.0, top_p=1.0), gen)) for _ in range(300)}
    assert seen == {0, 1, 2, 3}


class Scripted(torch.nn.Module):
    """A fake causal LM that emits a fixed token sequence, one token per forward call."""

    def __init__(self, script, vocab=256):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.script, self.vocab, self.calls = script, vocab, 0

    def forward(self, input_ids, **kw):
        logits = torch.zeros(input_ids.shape[0], 1, self.vocab)
        logits[:, -1, self.script[min(self.calls, len(self.script) - 1)]] = 1.0
        self.calls += 1
        return types.SimpleNamespace(logits=logits, past_key_values=None)


def test_a_reply_stops_at_the_end_of_turn_token(tok):
    a, b, end = tok.convert_tokens_to_ids(["A", "B", "<|im_end|>"])
    fake = Scripted([a, b, end, a, a])
    assert generate_reply(fake, tok, CHATS[0], GenerateConfig(max_new_tokens=50)) == "AB" and fake.calls == 3
    fake = Scripted([a])
    assert generate_reply(fake, tok, CHATS[0], GenerateConfig(max_new_tokens=7)) == "A" * 7 and fake.calls == 7


def test_config_is_validated():
    for kw in (dict(max_new_tokens=0), dict(temperature=-1), dict(top_p=0), dict(top_p=1.5)):
        with pytest.raises(ValueError):
            GenerateConfig(**kw)


# ----------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, tok):
    """A tiny Llama saved as a transformers folder, and a LoRA adapter (non-zero B) trained 'on' it."""
    root = tmp_path_factory.mktemp("tuned")
    tiny("llama", tok, seed=2).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    model, _ = load_model(str(root / "base"), device="cpu")
    torch.manual_seed(0)
    apply_lora(model, "all-linear", r=4, alpha=8)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    save_adapter(model, root / "run" / "adapter")
    return root, model


def parse(add, argv):
    p = argparse.ArgumentParser()
    add(p)
    return p.parse_args(argv)


def test_generate_command_streams_the_adapters_reply(tuned, tok, capsys):
    root, model = tuned
    want = generate_reply(model, tok, [{"role": "user", "content": "Hi"}], GenerateConfig(max_new_tokens=8))
    assert main(parse(add_arguments, ["--adapter", str(root / "run"), "--max-new-tokens", "8", "Hi"])) == 0
    out = capsys.readouterr()
    assert out.out == want + "\n" and "adapter" in out.err
    main(parse(add_arguments, ["--adapter", str(root / "run" / "adapter"), "--base", "--max-new-tokens", "8", "Hi"]))
    base, _ = load_model(str(root / "base"), device="cpu")
    assert capsys.readouterr().out == generate_reply(base, tok, [{"role": "user", "content": "Hi"}],
                                                     GenerateConfig(max_new_tokens=8)) + "\n" != want + "\n"


def test_chat_keeps_the_conversation_and_exits(tuned, tok, monkeypatch, capsys):
    root, model = tuned
    cfg = GenerateConfig(max_new_tokens=6)
    out = io.StringIO()
    msgs = chat_loop(model, tok, cfg, [], io.StringIO("Hi\n\nagain\n/exit\nnever read\n"), out)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[1]["content"] == generate_reply(model, tok, msgs[:1], cfg)
    assert msgs[3]["content"] == generate_reply(model, tok, msgs[:3], cfg)    # the second turn sees the first
    assert out.getvalue().count("assistant> ") == 2 and "never read" not in out.getvalue()
    assert chat_loop(model, tok, cfg, [], io.StringIO("Hi\n/reset\nHi\n"), io.StringIO()) == msgs[:2]
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\n/exit\n"))
    assert chat_main(parse(add_chat_arguments, ["--adapter", str(root / "run"), "--max-new-tokens", "6"])) == 0
    assert f"assistant> {msgs[1]['content']}\n" in capsys.readouterr().out


def test_commands_explain_a_missing_adapter(tmp_path):
    with pytest.raises(ValueError, match="--adapter"):
        main(parse(add_arguments, ["Hi"]))
    with pytest.raises(FileNotFoundError, match="holds no adapter"):
        main(parse(add_arguments, ["--adapter", str(tmp_path), "Hi"]))
