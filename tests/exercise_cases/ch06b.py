RIGHT_6B_1 = '''def answer_labels(input_ids, header_ids, end_id):
    labels = [-100] * len(input_ids)
    n, i, inside = len(header_ids), 0, False
    while i < len(input_ids):
        if not inside and input_ids[i:i + n] == header_ids:
            inside, i = True, i + n
            continue
        if inside:
            labels[i] = input_ids[i]
            inside = input_ids[i] != end_id
        i += 1
    return labels'''

CASES = {
    "6b.1": {"wrong": [
        # everything from the first answer on: the user turns between answers get labels too
        '''def answer_labels(input_ids, header_ids, end_id):
    n = len(header_ids)
    first = next(i for i in range(len(input_ids)) if input_ids[i:i + n] == header_ids) + n
    last = max(i for i, t in enumerate(input_ids) if t == end_id)
    return [t if first <= i <= last else -100 for i, t in enumerate(input_ids)]''',
        # the end-of-turn token left out
        RIGHT_6B_1.replace("labels[i] = input_ids[i]\n            inside = input_ids[i] != end_id",
                           "inside = input_ids[i] != end_id\n            if inside:\n                labels[i] = input_ids[i]"),
        # the header labelled too
        RIGHT_6B_1.replace("inside, i = True, i + n", "inside = True\n            for j in range(i, i + n):\n"
                           "                labels[j] = input_ids[j]\n            i += n"),
        # labels shifted by one (the model shifts them itself)
        RIGHT_6B_1.replace("labels[i] = input_ids[i]", "labels[i - 1] = input_ids[i]"),
        # only the last answer
        '''def answer_labels(input_ids, header_ids, end_id):
    n = len(header_ids)
    start = max(i for i in range(len(input_ids)) if input_ids[i:i + n] == header_ids) + n
    labels = [-100] * len(input_ids)
    for i in range(start, len(input_ids)):
        labels[i] = input_ids[i]
        if input_ids[i] == end_id:
            break
    return labels''',
        # every token labelled (train on all)
        "def answer_labels(input_ids, header_ids, end_id):\n    return list(input_ids)"],
        "right": [
            RIGHT_6B_1,
            # a tensor, found with a mask
            '''def answer_labels(input_ids, header_ids, end_id):
    ids = torch.tensor(input_ids)
    mask = torch.zeros(len(input_ids), dtype=torch.bool)
    n, on = len(header_ids), False
    for i in range(len(input_ids)):
        if i >= n and input_ids[i - n:i] == header_ids:
            on = True
        if on:
            mask[i] = True
            if input_ids[i] == end_id:
                on = False
    return torch.where(mask, ids, torch.full_like(ids, -100))''']},
    "6b.2": {"wrong": [
        # naive comma split: breaks on quoted commas and newlines
        '''def csv_to_jsonl(csv_text):
    lines = csv_text.strip().split("\\n")
    out = []
    for line in lines[1:]:
        q, a = line.split(",", 1)
        out.append(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}))
    return "\\n".join(out) + "\\n"''',
        # no check for empty answers
        '''def csv_to_jsonl(csv_text):
    rows = csv.DictReader(io.StringIO(csv_text))
    return "".join(json.dumps({"messages": [{"role": "user", "content": r["question"]},
                                            {"role": "assistant", "content": r["answer"]}]}) + "\\n" for r in rows)''',
        # the other format's keys
        '''def csv_to_jsonl(csv_text):
    out = []
    for n, r in enumerate(csv.DictReader(io.StringIO(csv_text)), start=1):
        if not (r.get("question") or "").strip() or not (r.get("answer") or "").strip():
            raise ValueError(f"row {n}: empty field")
        out.append(json.dumps({"prompt": r["question"], "completion": r["answer"]}))
    return "\\n".join(out) + "\\n"''',
        # an error without the row number (the physical line number instead, counting the header)
        '''def csv_to_jsonl(csv_text):
    out = []
    for n, r in enumerate(csv.DictReader(io.StringIO(csv_text)), start=2):
        if not (r.get("question") or "").strip() or not (r.get("answer") or "").strip():
            raise ValueError(f"line {n}: empty field")
        out.append(json.dumps({"messages": [{"role": "user", "content": r["question"]},
                                            {"role": "assistant", "content": r["answer"]}]}))
    return "\\n".join(out) + "\\n"'''],
        "right": ['''def csv_to_jsonl(csv_text):
    reader = csv.reader(io.StringIO(csv_text))
    header = [h.strip() for h in next(reader)]
    if "question" not in header or "answer" not in header:
        raise ValueError(f"the header {header} needs the columns 'question' and 'answer'")
    qi, ai = header.index("question"), header.index("answer")
    lines = []
    for n, row in enumerate(reader, start=1):
        q, a = (row[qi] if qi < len(row) else ""), (row[ai] if ai < len(row) else "")
        for name, value in (("question", q), ("answer", a)):
            if not value.strip():
                raise ValueError(f"row {n}: the {name} is empty")
        chat = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        lines.append(json.dumps({"messages": chat}, ensure_ascii=False))
    return "\\n".join(lines)''']},
    "6b.3": {"wrong": [
        "def lenient_match(reply, answer):\n    return reply.strip() == answer.strip()",
        # the answer anywhere in the reply
        "def lenient_match(reply, answer):\n    return answer.strip().lower().rstrip('.') in reply.lower()",
        # JSON compared as text without spaces: key order matters, trailing text breaks it
        '''def lenient_match(reply, answer):
    norm = lambda s: "".join(s.split()).lower().rstrip(".")
    return norm(reply) == norm(answer)''',
        # JSON parsed, but the whole reply must parse (a reply that goes on after the object fails)
        '''def lenient_match(reply, answer):
    if answer.strip().startswith("{"):
        try:
            return json.loads(reply) == json.loads(answer)
        except ValueError:
            return False
    norm = lambda s: " ".join(s.split()).lower().removesuffix(".").strip()
    return norm(reply) == norm(answer)'''],
        "right": ['''def lenient_match(reply, answer):
    reply, answer = reply.strip(), answer.strip()
    if answer.startswith("{"):
        if not reply.startswith("{"):
            return False
        try:
            value, _ = json.JSONDecoder().raw_decode(reply)
        except ValueError:
            return False
        return value == json.loads(answer)
    norm = lambda s: " ".join(s.split()).lower().removesuffix(".").strip()
    return norm(reply) == norm(answer)''',
                  # numpy's bool is another right form
                  '''def lenient_match(reply, answer):
    import re
    a, r = answer.strip(), reply.strip()
    if a[:1] == "{":
        try:
            return np.bool_(r[:1] == "{" and json.JSONDecoder().raw_decode(r)[0] == json.loads(a))
        except json.JSONDecodeError:
            return np.bool_(False)
    f = lambda s: re.sub(r"\\s+", " ", s).strip().lower()
    f2 = lambda s: f(f(s)[:-1]) if f(s).endswith(".") else f(s)
    return np.bool_(f2(r) == f2(a))''']},
}
