"""Self-checks for chapter 6 (fine-tuning a small GPT: the task, the loop, data parallelism)."""
import math


def check_exercise_6_1(make_labels):
    """make_labels(prompt_ids, answer_ids) -> input_ids, labels (-100 on the prompt)."""
    ids, labels = make_labels([1, 9690, 198, 4093], [33, 34, 2])
    assert list(ids) == [1, 9690, 198, 4093, 33, 34, 2], f"input_ids should be prompt + answer, got {list(ids)}"
    assert len(labels) == len(ids), "labels must have one entry per input token (the loop shifts them itself)"
    assert list(labels[:4]) != [1, 9690, 198, 4093], "the prompt must not be learned: put -100 there"
    assert list(labels) == [-100] * 4 + [33, 34, 2], f"expected -100 on the prompt and the answer ids after it, got {list(labels)}"
    print("✓ loss only on the answer: cross-entropy skips every -100")


def check_exercise_6_2(lr_at):
    """lr_at(step, steps, warmup, peak): linear warm-up to `peak`, then cosine decay to 0."""
    from lora_mini.lab.trainer import lr_factor
    for steps, warmup, peak in ((100, 10, 1e-3), (300, 30, 2e-3), (50, 0, 5e-5)):
        for step in (0, 1, warmup // 2, warmup, (steps + warmup) // 2, steps - 1):
            want = peak * lr_factor(step, steps, warmup, "cosine")
            got = lr_at(step, steps, warmup, peak)
            assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12), (
                f"lr_at({step}, {steps}, {warmup}, {peak}) = {got:.3g}, expected {want:.3g}: warm-up is "
                f"peak·(step+1)/warmup, then peak·½(1+cos(π·(step−warmup)/(steps−warmup)))")
    print("✓ warm-up then cosine decay, as lora_mini.lab.trainer.lr_factor")


def check_exercise_6_3(is_correct):
    """is_correct(generated_text, answer) -> bool, exact match after cutting at <|im_end|>."""
    cases = [("1196", "1196", True), (" 1196\n", "1196", True), ("1196<|im_end|>", "1196", True),
             ("1196<|im_end|>\n<|im_start|>", "1196", True), ("11961", "1196", False),
             ("The answer is 1196", "1196", False), ("1,196", "1196", False), ("", "1196", False)]
    for text, answer, want in cases:
        got = is_correct(text, answer)
        assert got == want, (f"is_correct({text!r}, {answer!r}) returned {got}, expected {want}: cut the text at "
                             "'<|im_end|>', strip spaces, and compare the strings exactly")
    print("✓ exact match: a sentence around the right number does not count")


def check_exercise_6_4(allreduce_bytes):
    """allreduce_bytes(shapes, r) -> bytes of fp32 LoRA gradients DDP all-reduces per step.

    shapes: list of (out_features, in_features) of the adapted linear layers.
    """
    shapes = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)] * 30
    got = allreduce_bytes(shapes, 16)
    want = 4 * sum(16 * (i + o) for o, i in shapes)
    full = 4 * sum(o * i for o, i in shapes)
    assert got != full, "that is full fine-tuning: LoRA only all-reduces the gradients of A and B"
    assert got != want // 4, "count bytes, not parameters: an fp32 gradient is 4 bytes"
    assert got == want, f"got {got:,} bytes; each layer has r·(in + out) LoRA parameters, 4 bytes each"
    print(f"✓ {got / 2**20:.1f} MiB per step for LoRA r=16 vs {full / 2**20:.0f} MiB for these weights in full "
          f"fine-tuning ({full / got:.0f}× less traffic)")
