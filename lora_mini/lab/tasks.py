"""The arithmetic task of chapter 6: teach a small chat model to add, and measure it exactly.

    task = AdditionTask(digits=(2, 3), seed=0)
    train, test = task.make_splits(n_train=20_000, n_test=300)     # disjoint pairs {a, b}
    enc = encode_examples(tok, train)                               # prompt + answer token ids
    it = batches(enc, batch_size=64, seed=0, pad_id=tok.pad_token_id)
    next(it)  # {"input_ids": (B, T), "attention_mask": (B, T), "labels": (B, T)}, right-padded
    exact_match(model, tok, test)                                   # {"exact_match": 0.97, ...}

An example is a chat: the user asks "What is 436 + 760?", the assistant answers "1196<|im_end|>".
The prompt goes through the model's own chat template; the loss is only on the answer tokens
(labels are -100 on the prompt and on padding), so the model learns to answer, not to ask.
Evaluation is batched greedy decoding (left padding, so every prompt ends where generation
starts) and exact string match of the answer.
"""
from __future__ import annotations

import random
from numbers import Integral

import torch

IGNORE = -100            # label value that cross-entropy skips
END_TOKEN = "<|im_end|>"  # how a chat turn ends in SmolLM2's template (ChatML)


class AdditionTask:
    """Random additions a + b, each operand with a number of digits drawn from `digits`.

    digits: (lo, hi) inclusive, e.g. (2, 3) gives 10..999; (2, 2) gives 10..99.
    system: the system message; None keeps the chat template's default one, "" an empty one.
    question: the user message, formatted with a and b.
    Every split is a deterministic function of `seed`.
    """

    def __init__(self, digits=(2, 3), seed: int = 0, system: str | None = None,
                 question: str = "What is {a} + {b}?"):
        if isinstance(digits, Integral):
            digits = (digits, digits)
        lo, hi = digits
        if not (isinstance(lo, Integral) and isinstance(hi, Integral) and 1 <= lo <= hi <= 9):
            raise ValueError(f"digits must be (lo, hi) with 1 <= lo <= hi <= 9, e.g. (2, 3); got {digits!r}")
        self.digits, self.seed, self.system, self.question = (int(lo), int(hi)), seed, system, question

    def operand(self, rng: random.Random) -> int:
        n = rng.randint(*self.digits)                 # number of digits, then a value with that many
        return rng.randint(10 ** (n - 1) if n > 1 else 0, 10 ** n - 1)

    def n_pairs(self) -> int:
        """How many unordered pairs {a, b} exist (the most examples a split can hold)."""
        lo = 10 ** (self.digits[0] - 1) if self.digits[0] > 1 else 0
        n = 10 ** self.digits[1] - lo
        return n * (n + 1) // 2

    def example(self, a: int, b: int) -> dict:
        """{"a", "b", "messages" (chat without the answer), "answer" (digits as a string)}."""
        messages = [] if self.system is None else [{"role": "system", "content": self.system}]
        messages.append({"role": "user", "content": self.question.format(a=a, b=b)})
        return {"a": a, "b": b, "messages": messages, "answer": str(a + b)}

    def make_splits(self, n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
        """(train, test): distinct random pairs; no pair {a, b} (in either order) is in both."""
        if n_train < 0 or n_test < 0:
            raise ValueError(f"n_train and n_test must be >= 0, got {n_train}, {n_test}")
        if n_train + n_test > self.n_pairs():
            raise ValueError(f"{n_train} + {n_test} examples is too many for digits={self.digits} "
                             f"({self.n_pairs()} distinct pairs); use fewer or more digits")
        rng = random.Random(self.seed)
        seen, pairs = set(), []
        while len(pairs) < n_train + n_test:
            a, b = self.operand(rng), self.operand(rng)
            key = (min(a, b), max(a, b))
            if key not in seen:
                seen.add(key)
                pairs.append((a, b))
        test, train = pairs[:n_test], pairs[n_test:]   # test first: it does not change with n_train
        return [self.example(a, b) for a, b in train], [self.example(a, b) for a, b in test]


# ----------------------------------------------------------------------------- more tasks (chapter 8's several adapters)

class SubtractionTask(AdditionTask):
    """"What is a - b?" with a ≥ b (the pair is ordered so answers are never negative)."""

    def __init__(self, digits=(2, 3), seed: int = 0, system: str | None = None,
                 question: str = "What is {a} - {b}?"):
        super().__init__(digits, seed, system, question)

    def example(self, a: int, b: int) -> dict:
        a, b = max(a, b), min(a, b)
        ex = super().example(a, b)
        ex["answer"] = str(a - b)
        return ex


class ReverseTask(AdditionTask):
    """"Reverse the digits of 43676." → "67634" (the digits of a then b, read backwards)."""

    def __init__(self, digits=(2, 3), seed: int = 0, system: str | None = None,
                 question: str = "Reverse the digits of {a}{b}."):
        super().__init__(digits, seed, system, question)

    def example(self, a: int, b: int) -> dict:
        ex = super().example(a, b)
        ex["answer"] = f"{a}{b}"[::-1]
        return ex


TASKS = {"add": AdditionTask, "sub": SubtractionTask, "rev": ReverseTask}


def end_token_id(tokenizer) -> int:
    """Id of the token that ends the assistant's turn (<|im_end|>, else the tokenizer's eos)."""
    tid = tokenizer.convert_tokens_to_ids(END_TOKEN)
    if tid is None or tid == tokenizer.unk_token_id:
        tid = tokenizer.eos_token_id
    if tid is None:
        raise ValueError(f"tokenizer has neither {END_TOKEN!r} nor an eos token; set tokenizer.eos_token")
    return tid


def prompt_ids(tokenizer, messages) -> list[int]:
    """Token ids of the chat up to and including the assistant header, via the chat template."""
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, tokenize=True)
    return list(out["input_ids"])


def encode_examples(tokenizer, examples) -> list[dict]:
    """[{"input_ids": prompt + answer + end, "labels": -100 on the prompt, "prompt_len"}] (lists)."""
    end = end_token_id(tokenizer)
    encoded = []
    for ex in examples:
        prompt = prompt_ids(tokenizer, ex["messages"])
        answer = tokenizer(ex["answer"], add_special_tokens=False)["input_ids"] + [end]
        encoded.append({"input_ids": prompt + answer, "labels": [IGNORE] * len(prompt) + answer,
                        "prompt_len": len(prompt)})
    return encoded


def collate(rows: list[dict], pad_id: int) -> dict:
    """Right-pad a list of encoded examples into tensors (B, T); labels -100 on padding."""
    T = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    labels = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(r["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batches(encoded: list[dict], batch_size: int, seed: int = 0, pad_id: int = 0,
            rank: int = 0, world_size: int = 1):
    """Endless batches: shuffle (seeded, new order each epoch), take batch_size, right-pad.

    With world_size > 1 every rank draws the same global batch and keeps its own slice of
    batch_size // world_size rows, so N ranks together see exactly what one process sees.
    """
    if not encoded:
        raise ValueError("batches: no encoded examples; call encode_examples on a non-empty split")
    if batch_size < 1 or batch_size % world_size:
        raise ValueError(f"batch_size ({batch_size}) must be a positive multiple of world_size ({world_size})")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    local = batch_size // world_size
    rng = random.Random(seed)
    order, pos = [], 0
    while True:
        rows = []
        while len(rows) < batch_size:
            if pos == len(order):
                order, pos = list(range(len(encoded))), 0
                rng.shuffle(order)
            take = min(batch_size - len(rows), len(order) - pos)
            rows += [encoded[i] for i in order[pos:pos + take]]
            pos += take
        yield collate(rows[rank * local:(rank + 1) * local], pad_id)


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists -> ids (B, T) and attention mask (B, T), left-padded: every prompt ends at column T."""
    T = max(map(len, prompts))
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), T), dtype=torch.long)
    for j, p in enumerate(prompts):
        ids[j, T - len(p):] = torch.tensor(p)
        mask[j, T - len(p):] = 1
    return ids, mask


def parse_answer(text: str) -> str:
    """The model's answer as a string: the generated text up to the end of the turn, stripped."""
    return text.split(END_TOKEN)[0].strip()


@torch.no_grad()
def generate(model, tokenizer, examples, batch_size: int = 64, max_new_tokens: int = 8,
             progress: bool = False) -> list[str]:
    """Greedy answers (decoded strings) for each example's prompt, in batches, left-padded."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    end, pad = end_token_id(tokenizer), tokenizer.pad_token_id
    pad = end if pad is None else pad
    was_training = model.training
    model.eval()
    answers = []
    try:
        for i in tqdm(range(0, len(examples), batch_size), desc="generate", disable=not progress, leave=False):
            prompts = [prompt_ids(tokenizer, ex["messages"]) for ex in examples[i:i + batch_size]]
            ids, mask = left_pad(prompts, pad)
            T = ids.shape[1]
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=end,
                                 pad_token_id=pad, temperature=None, top_p=None, top_k=None)
            for row in out[:, T:].tolist():
                row = row[:row.index(end)] if end in row else row
                answers.append(tokenizer.decode(row, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return answers


def exact_match(model, tokenizer, examples, batch_size: int = 64, max_new_tokens: int = 8,
                progress: bool = False) -> dict:
    """{"exact_match": fraction of answers equal to a + b, "answers": [str], "correct": [bool]}."""
    if not examples:
        raise ValueError("exact_match: no examples to evaluate")
    answers = generate(model, tokenizer, examples, batch_size, max_new_tokens, progress)
    correct = [parse_answer(a) == ex["answer"] for a, ex in zip(answers, examples)]
    return {"exact_match": sum(correct) / len(correct), "answers": answers, "correct": correct}


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def char_tokenizer():
    """A character-level chat tokenizer (ChatML template, 101 tokens): with `tiny_model(vocab_size=101)`
    it runs the whole finetune job in seconds (tests, `finetune --model tiny`)."""
    import string
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    specials = ["<pad>", "<unk>", "<|im_start|>", END_TOKEN]
    chars = [c for c in string.printable if c not in "\x0b\x0c\r"]
    tk = Tokenizer(models.WordLevel({t: i for i, t in enumerate(specials + chars)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")   # one token per character (newlines too)
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", eos_token=END_TOKEN,
                                  additional_special_tokens=["<|im_start|>", END_TOKEN])
    tok.chat_template = CHATML
    return tok
