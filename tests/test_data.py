"""lora_mini.lab.data: the three JSONL formats, answer-only labels checked against the chat
template, the long-example rule, the validation split, and one error per kind of bad data."""
import json
import sys
from pathlib import Path

import pytest

from lora_mini.lab.data import (IGNORE, DataConfig, DataError, check_data, encode_chat, evaluate_replies,
                                load_data, split_examples, read_examples)
from lora_mini.lab.tasks import char_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}]


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


def write(path, rows) -> str:
    """Write rows (dicts are JSON-encoded, str/bytes written as they are) one per line."""
    data = b"".join((r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode())
                    + b"\n" for r in rows)
    Path(path).write_bytes(data)
    return str(path)


def template_ids(tok, messages, gen=False):
    return list(tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen,
                                        return_dict=True)["input_ids"])


def expected_labels(tok, messages):
    """Labels built independently, from token prefixes of the template: each assistant turn's
    tokens after its header, through the end-of-turn token."""
    full = template_ids(tok, messages)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    labels = [IGNORE] * len(full)
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            start = len(template_ids(tok, messages[:i], gen=True))
            stop = full.index(end, start) + 1
            assert full[:start] == template_ids(tok, messages[:i], gen=True)
            labels[start:stop] = full[start:stop]
    return full, labels


def check_masks(tok, messages):
    row = encode_chat(tok, messages, "t:1")
    full, labels = expected_labels(tok, messages)
    assert row["input_ids"] == full                   # exactly what the template gives at chat time
    assert row["labels"] == labels
    answers = [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
    spans, cur = [], []
    for t in row["labels"]:
        if t == IGNORE and cur:
            spans.append(cur)
            cur = []
        elif t != IGNORE:
            cur.append(t)
    spans += [cur] if cur else []
    assert [tok.decode(s) for s in spans] == answers   # each turn's label tokens are its answer
    assert row["prompt_len"] == row["labels"].index(next(t for t in row["labels"] if t != IGNORE))


def test_chat_labels_every_assistant_turn_and_nothing_else(tok):
    check_masks(tok, CHAT)
    check_masks(tok, CHAT[1:3])


@pytest.mark.slow
def test_labels_match_smollm2s_chat_template():
    from transformers import AutoTokenizer
    from lora_mini.models import find_gguf
    gguf = find_gguf()
    real = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    check_masks(real, CHAT)
    check_masks(real, CHAT[1:3])                       # no system: the template adds its default one
    check_masks(real, [{"role": "user", "content": "Ünïcödé → JSON?"},
                       {"role": "assistant", "content": ' {"a": 1}\n'}])


def test_three_formats_load(tmp_path, tok):
    chat = write(tmp_path / "chat.jsonl", [{"messages": CHAT}, {"messages": CHAT[1:3]}])
    pc = write(tmp_path / "pc.jsonl", [{"prompt": "Hi", "completion": "Hello!"}, {"prompt": "a", "completion": "b"}])
    text = write(tmp_path / "text.jsonl", [{"text": "Once upon a time."}, {"text": "The end."}])
    s = load_data(DataConfig(chat, val_fraction=0), tok)
    assert s.stats["format"] == "chat" and len(s.train) == 2 and s.val == []
    s = load_data(DataConfig(pc, val_path=None, val_fraction=0), tok)
    assert s.stats["format"] == "prompt_completion"
    assert s.train[0] == encode_chat(tok, CHAT[1:3], "x") or s.train[1] == encode_chat(tok, CHAT[1:3], "x")
    s = load_data(DataConfig(text, val_fraction=0), tok)
    assert s.stats["format"] == "text"
    for row in s.train:
        assert row["labels"] == row["input_ids"] and row["input_ids"]
    s = load_data(DataConfig(chat, val_fraction=0, train_on_all=True), tok)
    assert all(r["labels"] == r["input_ids"] for r in s.train)


def test_long_examples_truncate_keep_the_prompt_or_drop(tmp_path, tok):
    long_answer = {"prompt": "Q", "completion": "x" * 200}
    long_prompt = {"prompt": "q" * 200, "completion": "y"}
    short = {"prompt": "Q2", "completion": "ok"}
    path = write(tmp_path / "d.jsonl", [long_answer, long_prompt, short])
    s = load_data(DataConfig(path, val_fraction=0, max_length=64), tok)
    assert (s.stats["truncated"], s.stats["dropped"], s.stats["dropped_prompt_too_long"]) == (1, 1, 1)
    assert len(s.train) == 2 and all(len(r["input_ids"]) <= 64 for r in s.train)
    cut = max(s.train, key=lambda r: len(r["input_ids"]))
    full = encode_chat(tok, [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "x" * 200}], "x")
    assert cut["input_ids"] == full["input_ids"][:64] and cut["prompt_len"] == full["prompt_len"]
    s = load_data(DataConfig(path, val_fraction=0, max_length=64, long="drop"), tok)
    assert (s.stats["truncated"], s.stats["dropped"], len(s.train)) == (0, 2, 1)
    with pytest.raises(DataError, match="every training example"):
        load_data(DataConfig(write(tmp_path / "e.jsonl", [long_prompt]), val_fraction=0, max_length=64), tok)


def test_validation_split_is_seeded_at_least_one_and_keeps_copies_together(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(30)] + [{"prompt": "q0", "completion": "a0"}]
    path = write(tmp_path / "d.jsonl", rows)
    a, b = check_data(DataConfig(path, seed=1)), check_data(DataConfig(path, seed=1))
    assert [e.line for e in a.val] == [e.line for e in b.val]
    assert len({e.key() for e in a.val}) == 3           # 10% of 30 distinct examples
    assert not {e.key() for e in a.val} & {e.key() for e in a.train}
    assert [e.line for e in check_data(DataConfig(path, seed=2)).val] != [e.line for e in a.val]
    _, ex = read_examples(write(tmp_path / "s.jsonl", rows[:3]))
    train, val = split_examples(ex, 0.01, 0)
    assert len(val) == 1 and len(train) == 2


def test_val_prompts_and_exact_match(tmp_path, tok, monkeypatch):
    rows = [{"messages": CHAT}, {"prompt": "Q", "completion": "A"}]
    val = write(tmp_path / "v.jsonl", [{"messages": CHAT}, {"messages": CHAT[1:3]}])
    train = write(tmp_path / "t.jsonl", [{"messages": CHAT[:3] + [{"role": "user", "content": "x"},
                                                                 {"role": "assistant", "content": "y"}]}])
    s = load_data(DataConfig(train, val_path=val), tok)
    assert s.val_prompts[0]["messages"] == CHAT[:4] and s.val_prompts[0]["answer"] == "4"
    assert s.val_prompts[1]["messages"] == CHAT[1:2] and s.val_prompts[1]["answer"] == "Hello!"
    import lora_mini.lab.generate as gen
    seen = {}
    monkeypatch.setattr(gen, "generate_replies", lambda m, t, convs, cfg, bs: seen.update(cfg=cfg) or [" 4\n", "Hi!"])
    out = evaluate_replies(None, tok, s, n_samples=1)
    assert seen["cfg"].max_new_tokens == len("Hello!") + 16      # the longest answer + 16 (< 64)
    assert out["exact_match"] == 0.5 and out["n"] == 2 and out["correct"] == [True, False]
    assert out["samples"] == [{"prompt": "2+2?", "answer": "4", "reply": " 4\n", "correct": True}]
    assert rows  # (the prompt/completion row above is the same chat as CHAT[1:3] in the other format)


def test_evaluate_replies_runs_a_real_model(tmp_path, tok):
    from lora_mini import tiny_model
    path = write(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(10)])
    s = load_data(DataConfig(path, val_fraction=0.2), tok)
    out = evaluate_replies(tiny_model("llama", vocab_size=len(tok)), tok, s, max_new_tokens=4)
    assert out["n"] == 2 and out["exact_match"] == 0.0 and len(out["replies"]) == 2


# ----------------------------------------------------------------------------- bad data: one row per problem

OK = {"prompt": "q", "completion": "a"}
MSG = lambda *pairs: {"messages": [{"role": r, "content": c} for r, c in pairs]}   # noqa: E731
BAD = [  # (name, lines, line number of the error, words the message must contain)
    ("invalid json", [OK, '{"prompt": "q", "completion": "a"'], 2, "invalid JSON"),
    ("not an object", [OK, "[1, 2]"], 2, "must be a JSON object"),
    ("unknown keys", [{"question": "q", "answer": "a"}], 1, "unknown keys"),
    ("missing key", [OK, {"prompt": "q"}], 2, "missing key(s) ['completion']"),
    ("extra key", [{"prompt": "q", "completion": "a", "id": 3}], 1, "unknown key(s) ['id']"),
    ("mixed formats", [OK, OK, {"text": "t"}], 3, "one format per file"),
    ("unknown role", [MSG(("user", "q"), ("tool", "x"), ("assistant", "a"))], 1, "role 'tool'"),
    ("empty answer", [OK, {"prompt": "q", "completion": "  "}], 2, "is empty"),
    ("empty assistant message", [MSG(("user", "q"), ("assistant", ""))], 1, "is empty"),
    ("non-UTF-8", [json.dumps(OK).encode(), b'{"prompt": "caf\xe9", "completion": "a"}'], 2, "not UTF-8"),
    ("wrong type", [{"prompt": "q", "completion": 42}], 1, "must be a string"),
    ("messages not a list", [{"messages": "hello"}], 1, "non-empty list"),
    ("message keys", [{"messages": [{"role": "user", "text": "q"}]}], 1, "exactly the keys 'role' and 'content'"),
    ("ends with the user", [MSG(("user", "q"), ("assistant", "a"), ("user", "q2"))], 1, "end it with the assistant"),
    ("starts with the assistant", [MSG(("assistant", "a"))], 1, "start with a user message"),
    ("system not first", [MSG(("user", "q"), ("system", "s"), ("assistant", "a"))], 1, "put the system message first"),
    ("empty text", [{"text": ""}], 1, "is empty"),
]


@pytest.mark.parametrize("name,lines,line,words", BAD, ids=[b[0] for b in BAD])
def test_bad_data_names_file_line_problem(tmp_path, name, lines, line, words):
    path = write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DataError) as e:
        check_data(DataConfig(path, val_fraction=0))
    assert str(e.value).startswith(f"{path}:{line}: ") and words in str(e.value) and " — " in str(e.value)


def test_empty_and_missing_files(tmp_path):
    for rows in ([], ["", "   "]):
        with pytest.raises(DataError, match=r"bad\.jsonl: the file is empty"):
            check_data(DataConfig(write(tmp_path / "bad.jsonl", rows)))
    with pytest.raises(DataError, match="no such file"):
        check_data(DataConfig(str(tmp_path / "nope.jsonl")))


def test_validation_file_overlapping_training_or_in_another_format(tmp_path):
    train = write(tmp_path / "t.jsonl", [OK, {"prompt": "q2", "completion": "a2"}])
    val = write(tmp_path / "v.jsonl", [{"prompt": "q3", "completion": "a3"}, {"prompt": "q2", "completion": "a2"}])
    with pytest.raises(DataError, match=rf"^{val}:2: .*also in the training data \({train}:2\)"):
        check_data(DataConfig(train, val_path=val))
    other = write(tmp_path / "o.jsonl", [{"text": "t"}])
    with pytest.raises(DataError, match=rf"^{other}:1: .*the training file is in the prompt_completion format"):
        check_data(DataConfig(train, val_path=other))


def test_the_template_refusing_a_conversation_is_a_data_error(tmp_path):
    tok = char_tokenizer()
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                         "{{ raise_exception('no system role') }}{% endif %}{{ m['content'] }}{% endfor %}")
    path = write(tmp_path / "d.jsonl", [MSG(("user", "q"), ("assistant", "a")),
                                        MSG(("system", "s"), ("user", "q"), ("assistant", "a"))])
    with pytest.raises(DataError, match=r"d\.jsonl:2: the tokenizer's chat template refuses"):
        load_data(DataConfig(path, val_fraction=0), tok)


def test_check_data_needs_no_tokenizer_and_is_fast(tmp_path):
    import time
    path = write(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(5000)])
    t0 = time.perf_counter()
    s = check_data(DataConfig(path))
    assert time.perf_counter() - t0 < 5 and len(s.train) + len(s.val) == 5000 and len(s.val) == 500


@pytest.mark.parametrize("kw,field", [(dict(val_fraction=1.0), "val_fraction"), (dict(long="cut"), "long"),
                                      (dict(max_length=0), "max_length"), (dict(path=""), "path"),
                                      (dict(train_on_all="yes"), "train_on_all")])
def test_config_is_validated(kw, field):
    with pytest.raises(ValueError, match=f"DataConfig.{field}"):
        DataConfig(**{"path": "x.jsonl", **kw})
    cfg = DataConfig("x.jsonl", val_fraction=0.2)
    assert DataConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ----------------------------------------------------------------------------- the shipped sample


def test_sample_data_is_generated_by_its_script_and_checks(tmp_path):
    sys.path.insert(0, str(ROOT / "data"))
    try:
        import make_sample
    finally:
        sys.path.pop(0)
    make_sample.write(tmp_path)                        # the script reproduces the committed bytes
    for name in ("sample_train.jsonl", "sample_val.jsonl"):
        assert (tmp_path / name).read_bytes() == (ROOT / "data" / name).read_bytes()
    s = check_data(DataConfig(str(ROOT / "data" / "sample_train.jsonl"),
                              val_path=str(ROOT / "data" / "sample_val.jsonl")))
    assert (s.format, len(s.train), len(s.val), s.duplicates) == ("chat", 320, 48, 0)
    for ex in s.train + s.val:                         # every answer is right
        q, a = ex.messages[0]["content"], ex.messages[1]["content"]
        if q.startswith("Extract"):
            d = json.loads(a)
            assert d["name"] in q and str(d["age"]) in q and d["city"] in q
        elif "DD/MM" in q:
            y, m, d = q.split()[next(i for i, w in enumerate(q.split()) if w[:4].isdigit() and "-" in w)].split("-")
            assert a == f"{d}/{m}/{y}"
        else:
            import re
            v, frm = re.search(r"(\d+) (\w+)", q).groups()
            out, to = a.split()
            factor = next(f for x, y_, f in make_sample.UNITS if x == frm and y_ == to)
            assert abs(float(out) - int(v) * factor) < 1e-9
