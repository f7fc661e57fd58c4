"""Reference solutions for chapter 6's exercises."""
import math


def make_labels(prompt_ids, answer_ids):
    return list(prompt_ids) + list(answer_ids), [-100] * len(prompt_ids) + list(answer_ids)


def lr_at(step, steps, warmup, peak):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def is_correct(text, answer):
    return text.split("<|im_end|>")[0].strip() == answer


def allreduce_bytes(shapes, r):
    return sum(4 * r * (i + o) for o, i in shapes)


SOLUTIONS = {"6_1": make_labels, "6_2": lr_at, "6_3": is_correct, "6_4": allreduce_bytes}
