"""Write the sample data set: short instructions with answers a program can check.

    python data/make_sample.py          # -> data/sample_train.jsonl, data/sample_val.jsonl

Three kinds of request, in the chat format ({"messages": [user, assistant]}), mixed evenly:

    unit conversion   "Convert 7 km to m."                      -> "7000 m"
    extraction        "Extract the name, age and city as JSON:  -> {"name": "Ana", "age": 34,
                       Ana is 34 years old and lives in Porto."     "city": "Porto"}
    date format       "Write 2024-03-07 as DD/MM/YYYY."          -> "07/03/2024"

Every answer is computed here, so it is right by construction; the validation examples share no
question with the training examples. Deterministic: the same seed writes the same bytes.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_TRAIN, N_VAL, SEED = 320, 48, 0

# (from, to, factor): value in `to` = value in `from` × factor
UNITS = [("km", "m", 1000), ("m", "cm", 100), ("cm", "mm", 10), ("kg", "g", 1000), ("L", "mL", 1000),
         ("m", "mm", 1000), ("g", "mg", 1000), ("min", "s", 60), ("h", "min", 60), ("m", "km", 1 / 1000),
         ("g", "kg", 1 / 1000), ("mm", "cm", 1 / 10)]
CONVERT = ["Convert {v} {a} to {b}.", "How many {b} is {v} {a}?", "{v} {a} in {b}?", "Express {v} {a} in {b}."]
NAMES = ["Ana", "Ben", "Chloe", "David", "Elif", "Farah", "Goran", "Hana", "Ivan", "Jia", "Kofi", "Lena",
         "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yara"]
CITIES = ["Porto", "Lagos", "Osaka", "Quito", "Tallinn", "Dakar", "Perth", "Bergen", "Cusco", "Hanoi",
          "Lyon", "Accra", "Krakow", "Austin", "Seville", "Nairobi"]
SENTENCES = ["{n} is {a} years old and lives in {c}.", "{n}, {a}, lives in {c}.",
             "Meet {n} from {c}, who is {a}.", "{n} ({a}) moved to {c} last year.",
             "At {a}, {n} runs a small shop in {c}."]
DATES = ["Write {iso} as DD/MM/YYYY.", "Reformat the date {iso} to DD/MM/YYYY.", "{iso} in DD/MM/YYYY format?"]


def conversion(rng: random.Random) -> tuple[str, str]:
    a, b, factor = rng.choice(UNITS)
    if factor < 1:                                     # down-conversions: whole results only
        out = rng.randint(1, 99)
        v = round(out / factor)
    else:
        v = rng.randint(1, 99)
        out = v * factor
    return rng.choice(CONVERT).format(v=v, a=a, b=b), f"{out} {b}"


def extraction(rng: random.Random) -> tuple[str, str]:
    n, c, a = rng.choice(NAMES), rng.choice(CITIES), rng.randint(18, 90)
    sentence = rng.choice(SENTENCES).format(n=n, a=a, c=c)
    answer = json.dumps({"name": n, "age": a, "city": c})
    return f"Extract the name, age and city as JSON: {sentence}", answer


def date_format(rng: random.Random) -> tuple[str, str]:
    y, m, d = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice(DATES).format(iso=f"{y}-{m:02d}-{d:02d}"), f"{d:02d}/{m:02d}/{y}"


def make_examples(n: int, seed: int = SEED) -> list[dict]:
    """n distinct chats, the three kinds in turn."""
    rng = random.Random(seed)
    kinds = [conversion, extraction, date_format]
    seen, out = set(), []
    while len(out) < n:
        question, answer = kinds[len(out) % len(kinds)](rng)
        if question not in seen:
            seen.add(question)
            out.append({"messages": [{"role": "user", "content": question},
                                     {"role": "assistant", "content": answer}]})
    return out


def write(folder: Path = HERE, n_train: int = N_TRAIN, n_val: int = N_VAL, seed: int = SEED) -> list[Path]:
    """Write sample_val.jsonl (first n_val) and sample_train.jsonl (the rest) into `folder`."""
    examples = make_examples(n_train + n_val, seed)
    paths = []
    for name, rows in (("sample_val.jsonl", examples[:n_val]), ("sample_train.jsonl", examples[n_val:])):
        path = Path(folder) / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        tmp.replace(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write():
        print(f"wrote {p} ({sum(1 for _ in p.open())} lines)")
