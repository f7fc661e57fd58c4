CASES = {
    "6.1": {"wrong": ["def make_labels(prompt_ids, answer_ids):\n    ids = list(prompt_ids) + list(answer_ids)\n    return ids, list(ids)",
                      "def make_labels(prompt_ids, answer_ids):\n    ids = list(prompt_ids) + list(answer_ids)\n"
                      "    return ids, [-100] * (len(prompt_ids) - 1) + list(answer_ids) + [-100]",      # shifted by hand
                      "def make_labels(prompt_ids, answer_ids):\n    ids = list(prompt_ids) + list(answer_ids)\n"
                      "    return ids, [-100] * len(prompt_ids) + ids[len(prompt_ids) + 1:]",           # one label short
                      "def make_labels(prompt_ids, answer_ids):\n    prompt_ids += answer_ids\n"
                      "    return prompt_ids, [-100] * (len(prompt_ids) - len(answer_ids)) + list(answer_ids)",   # in place
                      "def make_labels(prompt_ids, answer_ids):\n"
                      "    return [1, 9690, 198, 4093, 33, 34, 2], [-100] * 4 + [33, 34, 2]"],          # hard-coded
            "right": ["def make_labels(prompt_ids, answer_ids):\n    p, a = torch.tensor(prompt_ids), torch.tensor(answer_ids)\n"
                      "    return torch.cat([p, a]), torch.cat([torch.full_like(p, -100), a])",
                      "import numpy as np\ndef make_labels(prompt_ids, answer_ids):\n"
                      "    ids = np.array(list(prompt_ids) + list(answer_ids))\n    labels = ids.copy()\n"
                      "    labels[:len(prompt_ids)] = -100\n    return tuple(ids), labels"]},
    "6.2": {"wrong": ["def lr_at(step, steps, warmup, peak):\n    if step < warmup:\n        return peak * (step + 1) / warmup\n"
                      "    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - 1 - warmup)))",  # 0 at the last step
                      "def lr_at(step, steps, warmup, peak):\n    if step < warmup:\n        return peak * step / warmup\n"
                      "    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))",      # warm-up from 0
                      "def lr_at(step, steps, warmup, peak):\n    if step < warmup:\n        return (step + 1) / warmup\n"
                      "    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))",             # no peak
                      "def lr_at(step, steps, warmup, peak):\n    if step < warmup:\n        return peak * (step + 1) / warmup\n"
                      "    return peak * (1 - (step - warmup) / max(1, steps - warmup))",                               # linear decay
                      "from lora_mini.lab.trainer import lr_factor\n"
                      "def lr_at(step, steps, warmup, peak):\n    return peak * lr_factor(step, steps, warmup, 'cosine')"],
            "right": ["import numpy as np\ndef lr_at(step, steps, warmup, peak):\n"
                      "    if step < warmup:\n        return np.float64(peak) * (step + 1) / warmup\n"
                      "    t = (step - warmup) / (steps - warmup)\n    return np.float32(peak * np.cos(np.pi * t / 2) ** 2)"]},
    "6.3": {"wrong": ["def is_correct(text, answer):\n    return answer in text",
                      "def is_correct(text, answer):\n    return text.strip() == answer",
                      "import re\ndef is_correct(text, answer):\n    m = re.search(r'\\d+', text)\n    return bool(m) and m.group() == answer",
                      "def is_correct(text, answer):\n    return text.replace('<|im_end|>', '').strip() == answer",
                      "from lora_mini.lab.tasks import parse_answer\ndef is_correct(text, answer):\n    return parse_answer(text) == answer"],
            "right": ["import numpy as np\ndef is_correct(generated_text, answer):\n"
                      "    head = generated_text.partition('<|im_end|>')[0]\n    return np.bool_(head.strip() == answer.strip())"]},
    "6.4": {"wrong": ["def allreduce_bytes(shapes, r):\n    return sum(4 * o * i for o, i in shapes)",
                      "def allreduce_bytes(shapes, r):\n    return sum(r * (o + i) for o, i in shapes)",
                      "def allreduce_bytes(shapes, r):\n    return 16 * sum(4 * (o + i) for o, i in shapes)",       # r fixed at 16
                      "def allreduce_bytes(shapes, r):\n    return sum(2 * r * (o + i) for o, i in shapes)",
                      "def allreduce_bytes(shapes, r):\n    return 8 * r * sum(max(o, i) for o, i in shapes)"],
            "right": ["import numpy as np\ndef allreduce_bytes(shapes, r):\n"
                      "    s = np.array(shapes, dtype=np.int64)\n    return np.float64(4 * r * s.sum())"]},
}
