"""Checks for chapter 6 (fine-tune a small GPT: labels, the LR schedule, exact match, DDP traffic)."""
import math
import random

import torch
import torch.nn as nn

from lora_mini import LoRALinear
from lora_mini.lab.trainer import lr_factor

from . import call, exercise, integer, number

IGNORE = -100


def _ints(x, what):
    """A sequence of token ids (list, tuple, numpy array or 1-d tensor) as a list of Python ints."""
    if torch.is_tensor(x):
        assert x.dim() == 1, f"{what} should be one sequence (1-d), got shape {tuple(x.shape)}"
        x = x.tolist()
    try:
        return [integer(v, what) for v in x]
    except TypeError:
        raise AssertionError(f"{what} should be a sequence of token ids, got {type(x).__name__}") from None


def _label_cases():
    rng = random.Random(6)
    cases = [([1, 9690, 198, 4093], [33, 34, 2]), ([7], [5]), ((11, 12, 13, 14, 15, 16), (21, 2))]
    for n_prompt, n_answer in ((23, 4), (9, 1), (40, 6)):
        cases.append(([rng.randrange(49152) for _ in range(n_prompt)], [rng.randrange(49152) for _ in range(n_answer)]))
    return cases


@exercise("6.1")
def make_labels_test(make_labels):
    """make_labels(prompt_ids, answer_ids) -> (input_ids, labels): the loss only on the answer."""
    for prompt, answer in _label_cases():
        p0, a0 = list(prompt), list(answer)
        out = call(make_labels, prompt, answer)
        assert list(prompt) == p0 and list(answer) == a0, \
            "make_labels changed the lists it was given (e.g. with += or .extend); build new ones"
        assert isinstance(out, (tuple, list)) and len(out) == 2, "return two sequences: (input_ids, labels)"
        ids, labels = _ints(out[0], "input_ids"), _ints(out[1], "labels")
        assert ids == p0 + a0, "input_ids should be the prompt ids followed by the answer ids"
        assert len(labels) == len(ids), ("labels need one entry per input token; do not shift them, "
                                         "the training loop shifts by one position itself")
        assert labels[:len(p0)] != p0, "the prompt must not be learned: its labels should be -100"
        if len(p0) > 1:
            assert labels[len(p0) - 1:len(ids) - 1] != a0, \
                "your labels are shifted by one position; keep each label under its own token, the loop shifts"
        assert all(l == IGNORE for l in labels[:len(p0)]), "every prompt position should have the label -100"
        assert labels[len(p0):] == a0, "the answer positions should carry the answer ids themselves as labels"
    return "input_ids = prompt + answer, labels -100 on the prompt, for six prompts"


def _schedules():
    return [(100, 10, 1e-3), (300, 30, 2e-3), (50, 0, 5e-5), (7, 3, 0.1), (48, 5, 2e-3), (1000, 1, 3e-4)]


@exercise("6.2")
def lr_at_test(lr_at):
    """lr_at(step, steps, warmup, peak): linear warm-up, then cosine decay that reaches 0 at step `steps`."""
    for steps, warmup, peak in _schedules():
        points = sorted({0, 1, warmup // 2, max(warmup - 1, 0), warmup, (steps + warmup) // 2, steps - 2, steps - 1})
        for step in points:
            want = peak * lr_factor(step, steps, warmup, "cosine")     # the reference, outside your code
            got = number(call(lr_at, step, steps, warmup, peak), f"lr_at({step}, {steps}, {warmup}, {peak})")
            if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-15):
                continue
            where = f"lr_at({step}, steps={steps}, warmup={warmup}, peak={peak}) = {got:.4g}"
            if step < warmup:
                assert not (step == 0 and got == 0), f"{where}: the first step should already train (peak/warmup), not 0"
                assert not math.isclose(got, want / peak, rel_tol=1e-6), f"{where}: multiply by peak"
                raise AssertionError(f"{where}: during warm-up the LR should rise linearly and reach peak at step warmup−1")
            assert not math.isclose(got, want / peak, rel_tol=1e-6), f"{where}: multiply by peak"
            assert not (step == steps - 1 and abs(got) < 1e-15), \
                f"{where}: your decay reaches 0 at the last step; it should reach 0 one step later, at step `steps`"
            assert step != warmup or math.isclose(got, peak, rel_tol=1e-6), \
                f"{where}: the decay should start from peak at step warmup"
            raise AssertionError(f"{where}: after warm-up the LR should follow half a cosine period, from peak "
                                 "at step warmup down to 0 at step `steps`")
    return "warm-up and cosine decay are right for six schedules, warm-up 0 included"


_REPLIES = [("1196", "1196", True), (" 1196\n", "1196", True), ("1196<|im_end|>", "1196", True),
            ("1196<|im_end|>\n<|im_start|>user", "1196", True), ("  57 <|im_end|>", "57", True),
            ("11961", "1196", False), ("196", "1196", False), ("The answer is 1196", "1196", False),
            ("1,196", "1196", False), ("", "1196", False), ("1196 is the sum", "1196", False),
            ("<|im_end|>1196", "1196", False), ("57<|im_end|>57", "57", True), ("5 7", "57", False),
            ("63 + 43 = 106", "106", False), ("106.", "106", False)]


@exercise("6.3")
def is_correct_test(is_correct):
    """is_correct(generated_text, answer) -> bool: exact match after cutting at <|im_end|> and stripping."""
    for text, answer, want in _REPLIES:
        got = call(is_correct, text, answer)
        assert isinstance(got, bool) or type(got).__name__ in ("bool", "bool_"), \
            f"is_correct should return True or False, got {type(got).__name__}"
        if bool(got) != want:
            verdict = "accepted" if got else "refused"
            raise AssertionError(f"is_correct({text!r}, {answer!r}) {verdict} it: cut the text at the first "
                                 "'<|im_end|>', strip spaces and newlines, then compare the whole string")
    return f"exact match is right on {len(_REPLIES)} replies, sentences around the number refused"


def _layer_lists():
    llama = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]
    return [(llama * 30, 16), (llama * 30, 4), ([(64, 32)], 1), ([(10, 7), (3, 300), (128, 128)], 8),
            ([(2048, 512)] * 3 + [(512, 2048)], 64)]


def _lora_bytes(shapes, r):
    """The reference: fp32 bytes of the trainable parameters of lora_mini's own layer, per shape."""
    per_shape = {}
    for out_f, in_f in set(shapes):
        layer = LoRALinear(nn.Linear(in_f, out_f, bias=False), r=r, alpha=2 * r)
        per_shape[(out_f, in_f)] = sum(p.numel() for p in layer.parameters() if p.requires_grad) * 4
    return sum(per_shape[s] for s in shapes)


@exercise("6.4")
def allreduce_bytes_test(allreduce_bytes):
    """allreduce_bytes(shapes, r) -> bytes of fp32 LoRA gradients (A and B) DDP all-reduces per step."""
    for shapes, r in _layer_lists():
        want = _lora_bytes(shapes, r)
        got = integer(call(allreduce_bytes, list(shapes), r), f"allreduce_bytes(..., r={r})")
        full = 4 * sum(o * i for o, i in shapes)
        where = f"{len(shapes)} layers at r = {r}"
        assert got != full, f"{where}: that is full fine-tuning's traffic; LoRA all-reduces only A's and B's gradients"
        assert got != want // 4, f"{where}: that is the number of parameters; count bytes (an fp32 value is 4 bytes)"
        assert got != want // 2, f"{where}: the gradients of A and B are fp32 (4 bytes each), not 2 bytes"
        assert got == want, (f"{where}: got {got:,} bytes; count A (r × in) and B (out × r) of every layer, "
                             "4 bytes per gradient value")
    return "LoRA's all-reduced bytes are right for five layer lists and r from 1 to 64"
