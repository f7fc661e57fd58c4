"""Checks for chapter 6b (fine-tune on your own data)."""
import json
import tempfile
from pathlib import Path

import torch

from . import call, exercise, no_library

IGNORE = -100


def _chats():
    """Conversations of several shapes: one turn, a system message, two and three assistant turns."""
    return [
        [{"role": "user", "content": "Convert 7 km to m."}, {"role": "assistant", "content": "7000 m"}],
        [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
         {"role": "user", "content": "Date 2015-05-16 as DD/MM/YYYY?"}, {"role": "assistant", "content": "16/05/2015"}],
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "a"},
         {"role": "assistant", "content": "b c"}, {"role": "user", "content": "d"},
         {"role": "assistant", "content": "e\nf"}, {"role": "user", "content": "g"},
         {"role": "assistant", "content": "assistant"}],
    ]


def _labelled(tok, chat):
    """(input_ids, labels) from lab.data's encoder (it finds the answers from the template's text offsets)."""
    from lora_mini.lab.data import encode_chat
    row = encode_chat(tok, chat, "check")
    return row["input_ids"], row["labels"]


def _as_list(labels, n):
    if torch.is_tensor(labels):
        labels = labels.tolist()
    assert isinstance(labels, (list, tuple)), f"return a list of labels (or a tensor), got {type(labels).__name__}"
    labels = [int(x) for x in labels]
    assert len(labels) == n, f"one label per input token: {n} tokens but {len(labels)} labels (do not shift them)"
    return labels


@exercise("6b.1")
def answer_labels_test(answer_labels):
    """answer_labels(input_ids, header_ids, end_id) -> labels: the ids of every assistant turn's tokens after
    its header, through its end-of-turn token; -100 everywhere else."""
    from lora_mini.lab.tasks import char_tokenizer
    tok = char_tokenizer()
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    for chat in _chats():
        ids, want = _labelled(tok, chat)
        given = list(ids)
        got = _as_list(call(answer_labels, given, list(header), end), len(ids))
        assert given == ids, "answer_labels changed input_ids in place; build a new list of labels"
        if got == want:
            continue
        turns = sum(m["role"] == "assistant" for m in chat)
        labelled = [i for i, x in enumerate(got) if x != IGNORE]
        assert all(got[i] == ids[i] for i in labelled), \
            "a label is the token's own id (the model shifts by one itself); do not shift or invent labels"
        assert not all(x != IGNORE for x in got), \
            "every token is labelled: the prompt (system, user, headers) must get -100"
        heads = [i for i in range(len(ids) - len(header) + 1) if ids[i:i + len(header)] == header]
        assert not any(got[h] != IGNORE for h in heads), \
            "the assistant header <|im_start|>assistant\\n is part of the prompt: label it -100"
        if turns > 1:
            first = [i for i, w in enumerate(want) if w != IGNORE][0]
            assert got[first] != IGNORE, "label every assistant turn, not only the last one"
            assert not any(x != IGNORE and w == IGNORE for x, w in zip(got, want)), \
                "a user turn between two answers got labels: stop at each answer's end-of-turn token"
        ends = [i for i, (x, w) in enumerate(zip(got, want)) if w != IGNORE and ids[i] == end]
        assert all(got[i] != IGNORE for i in ends), \
            "label each answer's end-of-turn token <|im_end|> too: it teaches the model to stop"
        wrong = [i for i, (x, w) in enumerate(zip(got, want)) if x != w]
        raise AssertionError(f"a chat with {turns} assistant turn(s): {len(wrong)} labels differ, first at token "
                             f"{wrong[0]} ({tok.convert_ids_to_tokens(ids[wrong[0]])!r})")
    return "the answer-only mask matches the template's answer spans on four chats (system, 1–3 answers)"


# ----------------------------------------------------------------------------- 6b.2

def _read_back(text):
    """Parse the JSONL text with lab.data's checker (a temporary file): (format, examples)."""
    from lora_mini.lab.data import read_examples
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "converted.jsonl"
        path.write_text(text, encoding="utf-8")
        return read_examples(path)


GOOD_CSV = ('question,answer\n'
            'Convert 7 km to m.,7000 m\n'
            '"Extract the name, age and city as JSON: Ana (41) lives in Porto.","{""name"": ""Ana"", ""age"": 41, '
            '""city"": ""Porto""}"\n'
            '"Two lines,\nplease",Zoë wrote it\n'
            'Write 2015-05-16 as DD/MM/YYYY.,16/05/2015\n')
GOOD_ROWS = [("Convert 7 km to m.", "7000 m"),
             ("Extract the name, age and city as JSON: Ana (41) lives in Porto.",
              '{"name": "Ana", "age": 41, "city": "Porto"}'),
             ("Two lines,\nplease", "Zoë wrote it"), ("Write 2015-05-16 as DD/MM/YYYY.", "16/05/2015")]


def _expect_error(csv_to_jsonl, text, row, what):
    try:
        with no_library():
            csv_to_jsonl(text)
    except ValueError as e:
        assert f"row {row}" in str(e), f"{what}: say where, with 'row {row}' in the message (got {str(e)!r})"
        return
    raise AssertionError(f"{what} must raise ValueError naming the row, before any line is written")


@exercise("6b.2")
def csv_to_jsonl_test(csv_to_jsonl):
    """csv_to_jsonl(csv_text) -> JSON Lines text of chats; ValueError naming the row for a bad row."""
    for text, rows in [(GOOD_CSV, GOOD_ROWS), ("answer,question\n5 kg,How heavy?\n", [("How heavy?", "5 kg")]),
                       (GOOD_CSV.replace("\n", "\r\n", 1), GOOD_ROWS)]:
        out = call(csv_to_jsonl, text)
        assert isinstance(out, str), f"return the JSON Lines text (a str), got {type(out).__name__}"
        lines = [x for x in out.split("\n") if x.strip()]
        assert len(lines) == len(rows), f"{len(rows)} data rows should give {len(rows)} lines, got {len(lines)} " \
                                        "(a quoted field may hold commas and newlines: use the csv module)"
        for line in lines:
            obj = json.loads(line)
            assert set(obj) == {"messages"}, f"a chat line has exactly the key 'messages', got {sorted(obj)}"
            roles = [m.get("role") for m in obj["messages"]]
            assert roles == ["user", "assistant"], f"the roles are 'user' then 'assistant', got {roles}"
        fmt, examples = _read_back(out)
        assert fmt == "chat", f"the file reads as the {fmt} format, not chat"
        got = [(e.messages[0]["content"], e.messages[1]["content"]) for e in examples]
        assert got == rows, f"the chats' contents differ from the CSV's fields (first: {got[0]!r}); take the " \
                            "columns by their header names, keep the text as it is"
    _expect_error(csv_to_jsonl, "question,answer\nA?,a\nB?,b\nC?,\n", 3, "an empty answer on row 3")
    _expect_error(csv_to_jsonl, "question,answer\nA?,a\n  ,b\n", 2, "an empty question on row 2")
    _expect_error(csv_to_jsonl, "question,answer\nA?,a\nB?,   \n", 2, "an answer of only spaces on row 2")
    try:
        with no_library():
            csv_to_jsonl("prompt,reply\nA?,a\n")
    except ValueError:
        pass
    else:
        raise AssertionError("a CSV without 'question' and 'answer' columns must raise ValueError")
    return "quoted commas and newlines, column order, CRLF, bad rows named by number, read back by the checker"


# ----------------------------------------------------------------------------- 6b.3

MATCH_CASES = [
    ("98000 mg", "98000 mg", True), ("98000 mg.", "98000 mg", True), ("  98000   MG \n", "98000 mg", True),
    ("9800 mg", "98000 mg", False), ("98000 mg", "8000 mg", False), ("The answer is 98000 mg", "98000 mg", False),
    ("16/05/2015", "16/05/2015", True), ("16/5/2015", "16/05/2015", False), ("", "16/05/2015", False),
    ('{\n  "name": "Ben",\n  "age": 83,\n  "city": "Cusco"\n}', '{"name": "Ben", "age": 83, "city": "Cusco"}', True),
    ('{"age": 83, "city": "Cusco", "name": "Ben"}', '{"name": "Ben", "age": 83, "city": "Cusco"}', True),
    ('{"name": "Ben", "age": 83, "city": "Cusco"}\n\nThis JSON structure is a JSON-compatible',
     '{"name": "Ben", "age": 83, "city": "Cusco"}', True),
    ('{"name": "Ben", "age": "83", "city": "Cusco"}', '{"name": "Ben", "age": 83, "city": "Cusco"}', False),
    ('{"name": "ben", "age": 83, "city": "Cusco"}', '{"name": "Ben", "age": 83, "city": "Cusco"}', False),
    ('{"name": "Ben", "age": 83', '{"name": "Ben", "age": 83, "city": "Cusco"}', False),
    ('Here: {"name": "Ben", "age": 83, "city": "Cusco"}', '{"name": "Ben", "age": 83, "city": "Cusco"}', False),
    ("7000 m", "7000 m.", True), ("7 000 m", "7000 m", False),
]


@exercise("6b.3")
def lenient_match_test(lenient_match):
    """lenient_match(reply, answer) -> True/False by the exercise's rules (case, spaces, final period, JSON)."""
    for reply, answer, want in MATCH_CASES:
        got = call(lenient_match, reply, answer)
        assert isinstance(got, bool) or (hasattr(got, "item") and isinstance(got.item(), bool)), \
            f"return True or False, got {type(got).__name__}"
        if bool(got) == want:
            continue
        if not want and "is" in reply:
            raise AssertionError(f"{reply!r} vs {answer!r}: extra words around a plain answer do not match "
                                 "(is the answer merely *inside* the reply?)")
        if answer.lstrip().startswith("{"):
            hint = ("compare the parsed JSON values (key order and layout do not matter, types and case do); "
                    "a reply matches when it *starts* with that JSON object, whatever follows")
        else:
            hint = "ignore case, runs of white space and one final period — nothing else"
        raise AssertionError(f"{reply!r} vs {answer!r} should be {want}: {hint}")
    return f"the lenient rules hold on {len(MATCH_CASES)} reply/answer pairs (numbers, dates, JSON)"
