"""Your own data: a JSON Lines file -> token ids with answer-only labels, checked line by line.

    cfg = DataConfig("data/sample_train.jsonl", val_path="data/sample_val.jsonl")
    check_data(cfg)                      # no tokenizer, no model: every line checked, in seconds
    split = load_data(cfg, tokenizer)    # .train, .val: [{"input_ids", "labels", "prompt_len"}]
    evaluate_replies(model, tokenizer, split)   # {"exact_match": ..., "samples": [...]}

One example per line, in one of three formats (one format per file):

    chat               {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
                       (the format of OpenAI fine-tuning files and of TRL)
    prompt_completion  {"prompt": "...", "completion": "..."}   (a one-turn chat: user, assistant)
    text               {"text": "..."}                          (plain language modelling)

Chats go through the tokenizer's chat template. The loss is on the assistant's answers only:
every token of every assistant turn, up to and including its end-of-turn token, has a label;
everything else (system, user, the template's headers) gets -100, which cross-entropy skips.
The positions are found by rendering the conversation up to each assistant turn with the
template and mapping those character offsets onto the tokens of the whole conversation, so a
template's headers and separators are never guessed. `train_on_all=True` labels every token.

Long examples (more than `max_length` tokens), `long="truncate"` (default): cut at max_length,
which keeps the prompt and cuts the end of the answer; an example whose prompt alone reaches
max_length (no answer token would be left) is dropped. `long="drop"`: drop every long example.
Both counts are in `SplitData.stats`.

Validation: `val_path`, else a seeded random `val_fraction` of the examples (at least one);
identical examples always land on the same side, and a validation file that repeats a training
example is an error.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .tasks import IGNORE   # the label cross-entropy skips

ROLES = ("system", "user", "assistant")
FORMATS = {"chat": ("messages",), "prompt_completion": ("prompt", "completion"), "text": ("text",)}


class DataError(ValueError):
    """Bad data: the message names the file, the line, the problem and the fix."""


@dataclass(frozen=True)
class DataConfig:
    path: str
    val_path: str | None = None       # a separate validation file (then val_fraction is not used)
    val_fraction: float = 0.1         # held out from `path` when val_path is None (0: no validation)
    train_on_all: bool = False        # labels on every token, not just the answers
    max_length: int = 512             # tokens per example
    long: str = "truncate"            # "truncate" | "drop"
    seed: int = 0                     # the validation split's shuffle

    def __post_init__(self):
        if not isinstance(self.path, (str, Path)) or not str(self.path):
            raise ValueError(f"DataConfig.path must be a path to a .jsonl file, got {self.path!r}")
        if self.val_path is not None and not isinstance(self.val_path, (str, Path)):
            raise ValueError(f"DataConfig.val_path must be a path or None, got {self.val_path!r}")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0 <= self.val_fraction < 1:
            raise ValueError(f"DataConfig.val_fraction must be in [0, 1), e.g. 0.1; got {self.val_fraction!r}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 2:
            raise ValueError(f"DataConfig.max_length must be an integer >= 2 (tokens), got {self.max_length!r}")
        if self.long not in ("truncate", "drop"):
            raise ValueError(f"DataConfig.long must be 'truncate' or 'drop', got {self.long!r}")
        if not isinstance(self.train_on_all, bool):
            raise ValueError(f"DataConfig.train_on_all must be True or False, got {self.train_on_all!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"DataConfig.seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        return cls(**d)


@dataclass
class Example:
    """One line of a data file. Chat and prompt/completion examples have `messages`; text has `text`."""
    file: str
    line: int
    messages: list | None = None
    text: str | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def key(self) -> str:
        """The example's content, for finding exact duplicates."""
        return json.dumps(self.messages if self.messages is not None else self.text, sort_keys=True)


@dataclass
class DataSummary:
    """What check_data found: the format and the examples of each split (not yet tokenized)."""
    format: str
    train_file: str
    val_file: str | None
    train: list = field(repr=False)
    val: list = field(repr=False)
    lines: int = 0                    # non-blank lines read (all files)
    duplicates: int = 0               # training examples that repeat an earlier one exactly

    def __str__(self) -> str:
        val = self.val_file or "held out from the training file"
        return (f"{self.train_file}: {self.format} format, {len(self.train)} training and {len(self.val)} "
                f"validation examples (validation: {val}); {self.duplicates} exact duplicates")


@dataclass
class SplitData:
    train: list          # [{"input_ids": [...], "labels": [...], "prompt_len": int}]
    val: list            # the same, for the validation loss
    val_prompts: list    # [{"messages": chat up to the last answer, "answer": that answer, "where"}]
    stats: dict          # counts: examples, train, val, truncated, dropped, format, ...


# ----------------------------------------------------------------------------- reading and checking


def read_jsonl(path) -> list[tuple[int, object]]:
    """[(line number, parsed JSON)] of a JSON Lines file; blank lines skipped. Raises DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file — pass the path of a .jsonl file (one JSON object per line)")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]                                  # a UTF-8 byte-order mark (Windows editors)
    rows = []
    for n, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{n}: byte {line[e.start]:#04x} at column {e.start + 1} is not UTF-8 — "
                            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None
        if not text.strip():
            continue
        try:
            rows.append((n, json.loads(text)))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno}) — each line must be "
                            'one complete JSON object, e.g. {"prompt": "...", "completion": "..."}') from None
    if not rows:
        raise DataError(f"{path}: the file is empty (no JSON lines) — add one example per line")
    return rows


def detect_format(obj, where: str) -> str:
    """Which of FORMATS a parsed line is in (by its keys). Raises DataError for anything else."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: a line must be a JSON object, got a {type(obj).__name__} — "
                        'write e.g. {"prompt": "...", "completion": "..."}')
    keys = set(obj)
    for name, wanted in FORMATS.items():
        if keys == set(wanted):
            return name
    for name, wanted in FORMATS.items():
        if keys & set(wanted):
            missing, unknown = sorted(set(wanted) - keys), sorted(keys - set(wanted))
            problem = "; ".join(p for p in (f"missing key(s) {missing}" if missing else "",
                                            f"unknown key(s) {unknown}" if unknown else "") if p)
            raise DataError(f"{where}: {problem} for the {name} format — its lines have exactly the keys "
                            f"{list(wanted)}")
    raise DataError(f"{where}: unknown keys {sorted(keys)} — a line must have 'messages' (chat), "
                    "'prompt' and 'completion', or 'text'")


def _string(value, what: str, where: str, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: {what} must be a string, got {type(value).__name__} {json.dumps(value)[:40]} — "
                        "quote it (numbers and lists too)")
    if not empty_ok and not value.strip():
        raise DataError(f"{where}: {what} is empty — write it, or delete the line")
    return value


def check_messages(messages, where: str) -> list:
    """A chat's message list, checked: roles, order, string contents, a non-empty last answer."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{\"role\", \"content\"}} objects — "
                        'write e.g. [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]')
    out = []
    for i, m in enumerate(messages):
        what = f"messages[{i}]"
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            got = sorted(m) if isinstance(m, dict) else type(m).__name__
            raise DataError(f"{where}: {what} must be an object with exactly the keys 'role' and 'content', "
                            f"got {got} — write {{\"role\": \"user\", \"content\": \"...\"}}")
        role = m["role"]
        if role not in ROLES:
            raise DataError(f"{where}: {what} has role {role!r}, which the chat template does not know — "
                            f"use one of {list(ROLES)}")
        if role == "system" and i > 0:
            raise DataError(f"{where}: {what} is a system message after the start — put the system message first")
        content = _string(m["content"], f"{what}.content ({role})", where, empty_ok=role == "system")
        out.append({"role": role, "content": content})
    first = 1 if out[0]["role"] == "system" else 0
    if first >= len(out) or out[first]["role"] != "user":
        raise DataError(f"{where}: the conversation must start with a user message (after an optional system "
                        "message) — add the user's question")
    if out[-1]["role"] != "assistant":
        raise DataError(f"{where}: the conversation ends with a {out[-1]['role']!r} message — end it with "
                        "the assistant's answer (the model learns from assistant messages only)")
    return out


def parse_example(obj, fmt: str, file: str, line: int) -> Example:
    where = f"{file}:{line}"
    if fmt == "chat":
        return Example(file, line, messages=check_messages(obj["messages"], where))
    if fmt == "prompt_completion":
        prompt = _string(obj["prompt"], "'prompt'", where)
        answer = _string(obj["completion"], "'completion' (the answer)", where)
        return Example(file, line, messages=[{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": answer}])
    return Example(file, line, text=_string(obj["text"], "'text'", where))


def read_examples(path, fmt: str | None = None) -> tuple[str, list[Example]]:
    """(format, examples) of one file; every line must be in the same format (`fmt` if given)."""
    rows = read_jsonl(path)
    origin = "the training file" if fmt is not None else None
    examples = []
    for line, obj in rows:
        f = detect_format(obj, f"{path}:{line}")
        if fmt is None:
            fmt, origin = f, f"line {line}"
        elif f != fmt:
            raise DataError(f"{path}:{line}: this line is in the {f} format but {origin} is in the {fmt} "
                            "format — use one format per file (and the same for training and validation)")
        examples.append(parse_example(obj, f, str(path), line))
    return fmt, examples


def split_examples(examples: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, val): a seeded random `fraction` of the distinct examples (at least one) is held out.

    Copies of one example stay together, so the validation set never repeats a training example.
    """
    if fraction == 0:
        return list(examples), []
    groups: dict[str, list] = {}
    for ex in examples:
        groups.setdefault(ex.key(), []).append(ex)
    keys = list(groups)
    if len(keys) < 2:
        raise DataError(f"{examples[0].file}: only {len(keys)} distinct example(s), too few to hold out a "
                        "validation set — add examples, pass a validation file, or set val_fraction=0")
    random.Random(seed).shuffle(keys)
    n_val = min(len(keys) - 1, max(1, round(fraction * len(keys))))
    val_keys = set(keys[:n_val])
    train = [ex for ex in examples if ex.key() not in val_keys]
    val = [ex for ex in examples if ex.key() in val_keys]
    return train, val


def check_data(cfg: DataConfig) -> DataSummary:
    """Read and check the data file(s) without a tokenizer; raises DataError naming file and line."""
    fmt, examples = read_examples(cfg.path)
    lines = len(examples)
    if cfg.val_path is not None:
        _, val = read_examples(cfg.val_path, fmt)
        lines += len(val)
        seen: dict = {}
        for ex in examples:
            seen.setdefault(ex.key(), ex)              # the first copy names the line
        for ex in val:
            if ex.key() in seen:
                raise DataError(f"{ex.where}: this validation example is also in the training data "
                                f"({seen[ex.key()].where}) — remove it from one of the files, or the validation "
                                "loss measures memory, not learning")
        train = examples
    else:
        train, val = split_examples(examples, cfg.val_fraction, cfg.seed)
    duplicates = len(train) - len({ex.key() for ex in train})
    return DataSummary(fmt, str(cfg.path), None if cfg.val_path is None else str(cfg.val_path),
                       train, val, lines, duplicates)


# ----------------------------------------------------------------------------- tokens and labels


def _render(tokenizer, messages, where: str, add_generation_prompt: bool = False) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as e:   # jinja2 raises TemplateError for conversations a template refuses
        raise DataError(f"{where}: the tokenizer's chat template refuses this conversation ({e}) — "
                        "change the messages to what the template expects (roles, order)") from None


def answer_spans(tokenizer, messages, where: str) -> tuple[str, list[tuple[int, int]]]:
    """(the chat rendered by the template, [(start, stop) character span of each assistant turn]).

    A turn's span runs from the end of the conversation before it, rendered with the generation
    prompt (the assistant header), to the end of the conversation rendered through that turn.
    """
    text = _render(tokenizer, messages, where)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], where, add_generation_prompt=True)
        through = _render(tokenizer, messages[:i + 1], where)
        if not (text.startswith(through) and through.startswith(before)):
            raise DataError(f"{where}: the chat template does not render messages[{i}] the same way as a prefix "
                            "of the whole conversation, so the answer's tokens cannot be located — "
                            "use train_on_all (--train-on-all) or a template that renders turn by turn")
        if m["content"].strip() not in through[len(before):]:
            raise DataError(f"{where}: the chat template changes the text of the assistant's messages[{i}] — "
                            "use train_on_all (--train-on-all) or the model's plain chat template")
        spans.append((len(before), len(through)))
    return text, spans


def encode_chat(tokenizer, messages, where: str, train_on_all: bool = False) -> dict:
    """{"input_ids", "labels", "prompt_len"}: labels on each assistant turn through its end-of-turn token.

    Tokens after an answer's end-of-turn token (a template's newline) and before the next turn
    stay unlabelled; prompt_len is the position of the first answer token.
    """
    from .generate import end_of_turn_id
    text, spans = answer_spans(tokenizer, messages, where)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    end = end_of_turn_id(tokenizer)
    labels, prompt_len = [IGNORE] * len(ids), None
    for start, stop in spans:
        inside = [j for j, (s, _) in enumerate(offsets) if start <= s < stop]
        for j in inside:
            labels[j] = ids[j]
            if ids[j] == end:
                break
        if inside and prompt_len is None:
            prompt_len = inside[0]
    if prompt_len is None:
        raise DataError(f"{where}: no token of the answer was found after tokenizing — check the tokenizer")
    return {"input_ids": ids, "labels": list(ids) if train_on_all else labels, "prompt_len": prompt_len}


def encode_text(tokenizer, text: str) -> dict:
    """Plain language modelling: every token has a label."""
    ids = list(tokenizer(text)["input_ids"])
    return {"input_ids": ids, "labels": list(ids), "prompt_len": 0}


def fit_length(row: dict, max_length: int, long: str) -> tuple[dict | None, str]:
    """(row or None, "kept" | "truncated" | "dropped" | "dropped_prompt") by the module's long-example rule."""
    n = len(row["input_ids"])
    if n <= max_length:
        return row, "kept"
    if long == "drop":
        return None, "dropped"
    if row["prompt_len"] >= max_length:
        return None, "dropped_prompt"              # not one answer token would be left
    return {"input_ids": row["input_ids"][:max_length], "labels": row["labels"][:max_length],
            "prompt_len": row["prompt_len"]}, "truncated"


def encode_split(tokenizer, examples: list, cfg: DataConfig, counts: dict) -> tuple[list, list]:
    """(rows, kept examples), counting truncated/dropped examples into `counts`."""
    rows, kept = [], []
    for ex in examples:
        row = (encode_text(tokenizer, ex.text) if ex.text is not None
               else encode_chat(tokenizer, ex.messages, ex.where, cfg.train_on_all))
        row, status = fit_length(row, cfg.max_length, cfg.long)
        counts[status] = counts.get(status, 0) + 1
        if row is not None:
            rows.append(row)
            kept.append(ex)
    return rows, kept


def load_data(cfg: DataConfig, tokenizer) -> SplitData:
    """Check the file(s), tokenize every example with the chat template, label the answers, split."""
    summary = check_data(cfg)
    counts: dict = {}
    train, _ = encode_split(tokenizer, summary.train, cfg, counts)
    val, val_kept = encode_split(tokenizer, summary.val, cfg, counts)
    if not train:
        raise DataError(f"{cfg.path}: every training example is longer than max_length={cfg.max_length} tokens "
                        f"and was dropped — raise max_length (--max-length) or use long='truncate'")
    val_prompts = []
    for ex in val_kept:
        if ex.messages is not None:
            last = max(i for i, m in enumerate(ex.messages) if m["role"] == "assistant")
            val_prompts.append({"messages": ex.messages[:last], "answer": ex.messages[last]["content"],
                                "where": ex.where})
    stats = {"format": summary.format, "examples": len(summary.train) + len(summary.val),
             "train": len(train), "val": len(val), "truncated": counts.get("truncated", 0),
             "dropped": counts.get("dropped", 0) + counts.get("dropped_prompt", 0),
             "dropped_prompt_too_long": counts.get("dropped_prompt", 0), "duplicates": summary.duplicates,
             "train_tokens": sum(len(r["input_ids"]) for r in train),
             "train_label_tokens": sum(sum(t != IGNORE for t in r["labels"]) for r in train),
             "max_length": cfg.max_length, "long": cfg.long, "train_on_all": cfg.train_on_all}
    return SplitData(train, val, val_prompts, stats)


def evaluate_replies(model, tokenizer, split: SplitData, n_samples: int = 3, max_new_tokens: int = 64,
                     batch_size: int = 16) -> dict:
    """Greedy replies to every validation prompt: {"exact_match", "n", "samples", "replies", "correct"}.

    exact_match: the fraction of replies equal to the reference answer (both stripped of
    surrounding white space); None when there are no chat prompts (text format, no validation).
    A reply is cut at max_new_tokens, or at 16 tokens more than the longest reference answer if
    that is sooner (a longer reply cannot match; a base model that rambles costs less).
    """
    from .generate import GenerateConfig, generate_replies
    prompts = split.val_prompts
    if not prompts:
        return {"exact_match": None, "n": 0, "samples": []}
    longest = max(len(tokenizer(p["answer"], add_special_tokens=False)["input_ids"]) for p in prompts)
    cfg = GenerateConfig(max_new_tokens=min(max_new_tokens, longest + 16))
    replies = generate_replies(model, tokenizer, [p["messages"] for p in prompts], cfg, batch_size)
    correct = [r.strip() == p["answer"].strip() for r, p in zip(replies, prompts)]
    samples = [{"prompt": p["messages"][-1]["content"], "answer": p["answer"], "reply": r, "correct": c}
               for p, r, c in list(zip(prompts, replies, correct))[:n_samples]]
    return {"exact_match": sum(correct) / len(correct), "n": len(correct), "samples": samples,
            "replies": replies, "correct": correct}

