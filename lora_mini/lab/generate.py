"""Talking to a model: one decode loop with a KV cache, streamed replies, `generate` and `chat`.

    cfg = GenerateConfig(max_new_tokens=64)                 # greedy: deterministic
    generate_reply(model, tok, [{"role": "user", "content": "Convert 3 km to m."}], cfg)
    for piece in stream_reply(model, tok, messages, cfg):   # text as each token arrives
        print(piece, end="", flush=True)
    generate_replies(model, tok, [messages, ...], cfg)      # a batch, left-padded (evaluation)

The loop: the prompt goes through the model once, filling the KV cache (each layer's keys and
values for every position); after that each step feeds only the newest token, so a step costs
one token's work instead of the whole sequence's. Batches are left-padded, so every prompt ends
where generation starts; position ids count only real tokens. A reply ends at the chat's
end-of-turn token (or eos) or after max_new_tokens.

Greedy (temperature 0, the default) takes the most likely token. temperature > 0 samples from
softmax(logits / temperature), restricted with top_p to the smallest set of tokens whose
probability reaches top_p (nucleus sampling), from a generator seeded with `seed`.

Command line:
    python -m lora_mini generate --adapter runs/finetune/adapter "Convert 3 km to m."
    python -m lora_mini chat --adapter runs/finetune/adapter        # /exit to leave, /reset
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .tasks import left_pad

END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")   # ChatML, Llama 3, Gemma, Phi-3


@dataclass(frozen=True)
class GenerateConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0     # 0: greedy
    top_p: float = 1.0           # nucleus sampling (with temperature > 0)
    seed: int = 0                # the sampling generator's seed

    def __post_init__(self):
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {self.temperature!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def end_of_turn_id(tokenizer) -> int | None:
    """The token that ends an assistant turn: the first of END_TOKENS the tokenizer has, else eos."""
    for t in END_TOKENS:
        tid = tokenizer.convert_tokens_to_ids(t)
        if tid is not None and tid != tokenizer.unk_token_id:
            return tid
    return tokenizer.eos_token_id


def stop_ids(tokenizer) -> list[int]:
    """Tokens that end a reply: the end-of-turn token and eos."""
    ids = [end_of_turn_id(tokenizer), tokenizer.eos_token_id]
    return sorted({i for i in ids if i is not None})


def prompt_ids(tokenizer, messages) -> list[int]:
    """The chat through the assistant header (the generation prompt), as token ids."""
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(out["input_ids"])


def pick(logits: torch.Tensor, cfg: GenerateConfig, gen: torch.Generator) -> torch.Tensor:
    """Next tokens (B,) from logits (B, vocab): argmax, or a seeded sample (temperature, top-p)."""
    if cfg.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float().cpu() / cfg.temperature, dim=-1)
    if cfg.top_p < 1:
        p, order = probs.sort(-1, descending=True)
        drop = p.cumsum(-1) - p >= cfg.top_p          # tokens after the nucleus is full
        probs = torch.zeros_like(probs).scatter(-1, order, p.masked_fill(drop, 0))
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1).to(logits.device)


@torch.no_grad()
def decode(model, prompts: list[list[int]], cfg: GenerateConfig, stop: list[int], pad_id: int = 0):
    """Yield the next token of every prompt, (B,) on CPU, step by step; finished rows repeat pad_id.

    Llama models (plain, merged LoRA, or lora_mini.multi adapters) run the static-KV-cache loop
    (lora_mini.decode: one CUDA graph per step on a GPU); other models use transformers' cache.
    """
    from lora_mini.decode import StaticDecoder, unsupported
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    stop_t = torch.tensor(stop, device=device)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)

    def choose(logits):
        return pick(logits, cfg, gen).masked_fill(done, pad_id)

    if unsupported(model) is None:
        max_len = max(len(p) for p in prompts) + cfg.max_new_tokens
        steps = StaticDecoder(model, len(prompts), max_len).steps(prompts, cfg.max_new_tokens, choose, pad_id)
    else:
        steps = _cache_steps(model, prompts, cfg, choose, pad_id, device)
    for nxt in steps:
        yield nxt.cpu()
        done |= torch.isin(nxt, stop_t)
        if bool(done.all()):
            return


def _cache_steps(model, prompts, cfg: GenerateConfig, choose, pad_id: int, device):
    """The same steps through the model's own forward and transformers' growing KV cache."""
    ids, mask = left_pad(prompts, pad_id)
    B = ids.shape[0]
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    for step in range(cfg.max_new_tokens):
        nxt = choose(out.logits[:, -1])
        yield nxt
        if step == cfg.max_new_tokens - 1:
            return
        mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=device)], dim=1)
        pos = pos[:, -1:] + 1
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos,
                    past_key_values=out.past_key_values, use_cache=True)


class _Eval:
    """Puts a model in eval mode for a block and restores its mode after."""

    def __init__(self, model):
        self.model, self.was = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was)


def reply_tokens(model, tokenizer, messages, cfg: GenerateConfig) -> list[int]:
    """The reply's token ids (without the end-of-turn token)."""
    stop = stop_ids(tokenizer)
    tokens = []
    with _Eval(model):
        for nxt in decode(model, [prompt_ids(tokenizer, messages)], cfg, stop):
            if int(nxt[0]) in stop:
                break
            tokens.append(int(nxt[0]))
    return tokens


def generate_reply(model, tokenizer, messages, cfg: GenerateConfig | None = None) -> str:
    """The assistant's reply to a chat (a list of {"role", "content"}), as text."""
    cfg = cfg or GenerateConfig()
    return tokenizer.decode(reply_tokens(model, tokenizer, messages, cfg), skip_special_tokens=True,
                            clean_up_tokenization_spaces=False)


def stream_reply(model, tokenizer, messages, cfg: GenerateConfig | None = None):
    """Yield the reply's text in pieces as the tokens are produced (their sum is generate_reply's text).

    A piece is held back while the decoded text ends in an incomplete UTF-8 character (U+FFFD).
    """
    cfg = cfg or GenerateConfig()
    stop = stop_ids(tokenizer)
    tokens, shown = [], ""
    with _Eval(model):
        for nxt in decode(model, [prompt_ids(tokenizer, messages)], cfg, stop):
            if int(nxt[0]) in stop:
                break
            tokens.append(int(nxt[0]))
            text = tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            if text != shown and text.startswith(shown) and not text.endswith("\ufffd"):
                yield text[len(shown):]
                shown = text
    text = tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if text != shown:
        yield text[len(shown):] if text.startswith(shown) else text   # (a tokenizer that rewrote its past)


def generate_replies(model, tokenizer, conversations: list, cfg: GenerateConfig | None = None,
                     batch_size: int = 16, progress: bool = False) -> list[str]:
    """Replies to many chats, in left-padded batches (what evaluation uses)."""
    from tqdm.auto import tqdm
    cfg = cfg or GenerateConfig()
    stop = stop_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    replies = []
    with _Eval(model):
        for i in tqdm(range(0, len(conversations), batch_size), desc="generate", disable=not progress, leave=False):
            prompts = [prompt_ids(tokenizer, m) for m in conversations[i:i + batch_size]]
            rows = [[] for _ in prompts]
            finished = [False] * len(prompts)
            for nxt in decode(model, prompts, cfg, stop, pad):
                for j, t in enumerate(nxt.tolist()):
                    if not finished[j]:
                        finished[j] = t in stop
                        if not finished[j]:
                            rows[j].append(t)
            replies += [tokenizer.decode(r, skip_special_tokens=True, clean_up_tokenization_spaces=False) for r in rows]
    return replies


# ----------------------------------------------------------------------------- loading a tuned model


def adapter_folder(path) -> Path:
    """The adapter folder: `path` itself, or `path`/adapter for a finetune output folder."""
    from lora_mini.io import CONFIG, PEFT_CONFIG
    path = Path(path)
    for folder in (path, path / "adapter"):
        if (folder / CONFIG).is_file() or (folder / PEFT_CONFIG).is_file():
            return folder
    raise FileNotFoundError(f"{path} holds no adapter ({CONFIG} or {PEFT_CONFIG}); pass the folder that "
                            "finetune wrote (its adapter/ folder), e.g. --adapter runs/finetune/adapter")


def adapter_base_model(folder) -> str | None:
    """The base model an adapter folder records (lora_mini's 'base_model', PEFT's 'base_model_name_or_path')."""
    from lora_mini.io import CONFIG, PEFT_CONFIG
    folder = Path(folder)
    for name, key in ((CONFIG, "base_model"), (PEFT_CONFIG, "base_model_name_or_path")):
        if (folder / name).is_file():
            return json.loads((folder / name).read_text()).get(key)
    return None


def model_to_load(recorded: str | None) -> str:
    """What load_model should load for a recorded base: SmolLM2 from the offline GGUF by default."""
    from lora_mini.models import DEFAULT_MODEL, HUB_ID
    return DEFAULT_MODEL if recorded in (None, HUB_ID) else recorded


def load_tuned(adapter=None, model_name: str | None = None, base_only: bool = False,
               device: str | None = None, dtype: torch.dtype | None = None):
    """(model, tokenizer, description): the adapter's base model (or `model_name`), with the adapter.

    base_only=True loads the same base model and leaves the adapter out (for comparing).
    """
    from lora_mini import load_adapter, load_model
    folder = adapter_folder(adapter) if adapter is not None else None
    name = model_name or model_to_load(adapter_base_model(folder) if folder is not None else None)
    model, tok = load_model(name, device=device, dtype=dtype)
    if folder is None or base_only:
        return model, tok, f"{name} (base model, no adapter)"
    load_adapter(model, folder)
    return model, tok, f"{name} + adapter {folder}"


def _dtype(name: str | None):
    return None if name in (None, "auto") else {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                                 "float16": torch.float16}[name]


# ----------------------------------------------------------------------------- command line


def add_common_arguments(p) -> None:
    p.add_argument("--adapter", default=None, help="adapter folder written by finetune (its adapter/ folder)")
    p.add_argument("--base", action="store_true", help="run the base model without the adapter (to compare)")
    p.add_argument("--model", default=None, help="base model (default: the one the adapter records; SmolLM2)")
    p.add_argument("--system", default=None, help="a system message (default: the chat template's own)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy (deterministic); > 0: sample")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: keep tokens up to this mass")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])


def add_arguments(p) -> None:
    """`generate`: one reply to one prompt, streamed to stdout."""
    p.add_argument("prompt", help="the user's message")
    add_common_arguments(p)


def add_chat_arguments(p) -> None:
    """`chat`: an interactive conversation on stdin/stdout."""
    add_common_arguments(p)


def setup(args):
    """(model, tokenizer, GenerateConfig, first messages) from the parsed options."""
    from lora_mini.models import default_device
    cfg = GenerateConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         top_p=args.top_p, seed=args.seed)
    if args.adapter is None and not args.base:
        raise ValueError("pass --adapter DIR (the folder finetune wrote), or --base for the base model alone")
    device = default_device() if args.device == "auto" else args.device
    model, tok, what = load_tuned(args.adapter, args.model, args.base, device, _dtype(args.dtype))
    if args.adapter is not None and not args.base:
        from lora_mini import merge
        merge(model)                                   # W + (α/r)·B·A: decoding costs what the base costs
    print(f"[{what}]", file=sys.stderr)
    system = [] if args.system is None else [{"role": "system", "content": args.system}]
    return model, tok, cfg, system


def main(args) -> int:
    model, tok, cfg, messages = setup(args)
    for piece in stream_reply(model, tok, messages + [{"role": "user", "content": args.prompt}], cfg):
        print(piece, end="", flush=True)
    print()
    return 0


def chat_loop(model, tokenizer, cfg: GenerateConfig, messages: list, stdin, stdout) -> list:
    """Read user lines from stdin, stream replies to stdout; /exit (or end of input) leaves,
    /reset starts over. Returns the conversation."""
    start = list(messages)
    stdout.write("Type a message and press Enter. /reset starts over, /exit leaves.\n")
    while True:
        stdout.write("you> ")
        stdout.flush()
        line = stdin.readline()
        if not line or line.strip() in ("/exit", "/quit"):
            stdout.write("\n" if not line else "")
            return messages
        line = line.strip()
        if line == "/reset":
            messages = list(start)
            continue
        if not line:
            continue
        messages.append({"role": "user", "content": line})
        stdout.write("assistant> ")
        pieces = []
        for piece in stream_reply(model, tokenizer, messages, cfg):
            stdout.write(piece)
            stdout.flush()
            pieces.append(piece)
        stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(pieces)})


def chat_main(args) -> int:
    model, tok, cfg, messages = setup(args)
    chat_loop(model, tok, cfg, messages, sys.stdin, sys.stdout)
    return 0
