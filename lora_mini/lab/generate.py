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
    """Yield the next token of every prompt, (B,) on CPU, step by step; finished rows repeat pad_id."""
    device = next(model.parameters()).device
    B, T = len(prompts), max(map(len, prompts))
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for i, p in enumerate(prompts):                   # left padding
        ids[i, T - len(p):] = torch.tensor(p)
        mask[i, T - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    gen = torch.Generator().manual_seed(cfg.seed)
    stop_t = torch.tensor(stop, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    for _ in range(cfg.max_new_tokens):
        nxt = pick(out.logits[:, -1], cfg, gen).masked_fill(done, pad_id)
        yield nxt.cpu()
        done |= torch.isin(nxt, stop_t)
        if bool(done.all()):
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
    return tokenizer.decode(reply_tokens(model, tokenizer, messages, cfg), skip_special_tokens=True)


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
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            if text != shown and text.startswith(shown) and not text.endswith("\ufffd"):
                yield text[len(shown):]
                shown = text
    text = tokenizer.decode(tokens, skip_special_tokens=True)
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
            replies += [tokenizer.decode(r, skip_special_tokens=True) for r in rows]
    return replies
