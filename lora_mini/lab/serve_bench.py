"""`python -m lora_mini serve-bench`: many LoRA adapters served at once, tokens per second.

    python -m lora_mini serve-bench --model smollm2-135m-instruct --budget-s 270 --out figures/serve_gpu.json
    python -m lora_mini serve-bench --model smollm2-135m-instruct --dtype float32 --out figures/serve_gpu_fp32.json

One base model (the real SmolLM2 with --model, else a random-initialised Llama of the named
shape), K adapters of rank r on all linear layers (random non-zero B, so they differ), N requests
(N/K per adapter, interleaved), greedy, `new_tokens` each, no early stop. Rows (`method`):

  hf_generate_merged   transformers' generate, all requests on one merged model (adapter 0)
  hf_generate_static   the same with transformers' static KV cache (cache_implementation="static",
                       disable_compile=True: eager, as on the CPU; on a GPU generate would compile it):
                       its agreement with hf_generate_merged is how far transformers' own greedy
                       tokens move in this dtype when only the cache layout (and so the kernels) change
  decode_loop          lora_mini.decode (static KV cache, CUDA graph) on the same merged model, with
                       a cache as long as transformers' static one: transformers' ops in its shapes
  decode_loop_fused    the same with q/k/v and gate/up as one GEMM each (fuse=True): faster, other bf16 bits
  peft_mixed           PEFT, one mixed batch (generate(adapter_names=...))
  peft_one_at_a_time   PEFT, each adapter's requests as their own batch
  peft_unmerged_one    PEFT, one unmerged adapter for all requests
  lora_mini_mixed      lora_mini.multi adapters in the fused decode loop: one mixed batch, segmented products

--dtype float32 runs everything in float32 (default: bfloat16 on CUDA): slower, but its tokens show
whether the rows agree when no bf16 rounding can flip a near-tie.

tokens_per_s counts generated tokens over wall time (prompt included); ratio_to_merged is to
decode_loop_fused (the mixed batch runs that loop), ratio_to_peft to peft_mixed, ratio_to_hf_generate
to hf_generate_merged and ratio_to_hf_static to hf_generate_static. The decode-loop target: ≥ 3× both
generate rows, and its greedy tokens equal to generate's with the static cache (the like-for-like
reference; its agreement with the dynamic cache is recorded beside it).
tokens_match: the rows' greedy tokens equal the reference, which is transformers' generate on the
request's adapter merged (per adapter, its requests as one batch); the merged rows compare with
hf_generate_merged, peft_unmerged_one on adapter 0's requests. `token_agreement` is the share of
equal tokens (bf16 kernels that differ can flip a near-tie).
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .budget import Budget
from .system import code_version

SHAPES = {
    "smollm2-135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True, rope_theta=100000.0,
                         max_position_embeddings=8192, rms_norm_eps=1e-5),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=256, tie_word_embeddings=True, max_position_embeddings=256),
}
DTYPES = ("auto", "bfloat16", "float32")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class ServeBenchConfig:
    shape: str = "smollm2-135m"
    model: str | None = None          # a loadable model (overrides shape)
    adapters: int = 8
    rank: int = 16
    alpha: float = 32.0
    requests: int = 32
    new_tokens: int = 64
    prompt_len: int = 32
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"               # auto: bfloat16 on CUDA, float32 on the CPU
    budget_s: float | None = None

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"--shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        for f in ("adapters", "rank", "requests", "new_tokens", "prompt_len"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) < 1:
                raise ValueError(f"--{f.replace('_', '-')} must be a positive integer, got {getattr(self, f)!r}")
        if self.requests % self.adapters:
            raise ValueError(f"--requests ({self.requests}) must be a multiple of --adapters ({self.adapters})")


def build_base(cfg: ServeBenchConfig, device, dtype):
    """(model, description): --model if given and loadable, else a random Llama of the shape."""
    from transformers import LlamaConfig, LlamaForCausalLM
    if cfg.model is not None:
        try:
            from lora_mini import load_model
            model, _ = load_model(cfg.model, device=str(device), dtype=dtype)
            return model.eval(), f"{cfg.model}"
        except Exception as e:                          # noqa: BLE001 -- fall back to the shape, say so
            print(f"serve-bench: cannot load {cfg.model} ({e}); using the random {cfg.shape} shape", file=sys.stderr)
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(LlamaConfig(**SHAPES[cfg.shape], bos_token_id=0, eos_token_id=None, pad_token_id=0))
    return model.to(device, dtype).eval(), f"random {cfg.shape}"


def random_states(model, cfg: ServeBenchConfig) -> list[dict]:
    """K adapter states {name: (A r × in, B out × r, α/r)} with non-zero B, for every linear layer."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    names = [n for n, m in model.named_modules() if n.split(".")[-1] in TARGETS and isinstance(m, torch.nn.Linear)]
    states = []
    for _ in range(cfg.adapters):
        st = {}
        for n in names:
            w = model.get_submodule(n).weight
            A = torch.randn(cfg.rank, w.shape[1], generator=g) / w.shape[1] ** 0.5
            st[n] = (A, 0.02 * torch.randn(w.shape[0], cfg.rank, generator=g), cfg.alpha / cfg.rank)
        states.append(st)
    return states


def merged_copy(base, state):
    import copy
    m = copy.deepcopy(base)
    with torch.no_grad():
        for n, (A, B, s) in state.items():
            w = m.get_submodule(n).weight
            w.copy_((w.float() + s * (B.to(w.device) @ A.to(w.device))).to(w.dtype))
    return m


def peft_model(base, states, cfg: ServeBenchConfig):
    import copy

    from peft import LoraConfig, get_peft_model
    lc = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=TARGETS, lora_dropout=0.0)
    pm = get_peft_model(copy.deepcopy(base), lc, adapter_name="a0")
    for k in range(1, len(states)):
        pm.add_adapter(f"a{k}", lc)
    with torch.no_grad():
        for k, st in enumerate(states):
            for n, (A, B, _) in st.items():
                mod = pm.base_model.model.get_submodule(n)
                mod.lora_A[f"a{k}"].weight.copy_(A)
                mod.lora_B[f"a{k}"].weight.copy_(B)
    return pm.eval()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hf_generate(model, ids, n, **kw):
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                         do_sample=False, pad_token_id=0, **kw)
    return out[:, ids.shape[1]:]


def timed(fn, device, warm=None):
    """(result, seconds) of fn() after one untimed warm-up call (`warm`, default fn itself)."""
    (warm or fn)()
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t


def _agreement(got, want):
    got, want = got.cpu(), want.cpu()
    return bool(torch.equal(got, want)), float((got == want).float().mean())


def _row(method, out, sec, want, extra=None, tokens=None) -> dict:
    """One row: `tokens` generated in `sec` (default: all of `out`, rows × new tokens) and how `out`
    compares with `want`."""
    match, agree = _agreement(out, want)
    return {"method": method, "tokens_per_s": (out.numel() if tokens is None else tokens) / sec, "seconds": sec, "tokens_match": match,
            "token_agreement": agree, **(extra or {})}


def merged_rows(model, ids, n: int, device) -> list:
    """transformers' generate (its default and its static cache) and the decode loop (exact, fused)
    on one merged model; every row compared with the default generate's tokens."""
    from lora_mini.decode import StaticDecoder
    short = lambda **kw: hf_generate(model, ids[:, :4], 2, **kw)       # noqa: E731 -- an untimed warm-up
    out, sec = timed(lambda: hf_generate(model, ids, n), device, short)
    hf = out.cpu()
    rows = [_row("hf_generate_merged", out, sec, hf, {"compared_with": "hf_generate_merged (itself)"})]
    static = dict(cache_implementation="static", disable_compile=True)    # eager: on a GPU it would auto-compile
    out, sec = timed(lambda: hf_generate(model, ids, n, **static), device, lambda: short(**static))
    hf_static = out.cpu()
    rows.append(_row("hf_generate_static", out, sec, hf, {"compared_with": "hf_generate_merged"}))
    prompts, L = ids.cpu().tolist(), ids.shape[1] + n - 1           # L: transformers' static cache length
    for method, fuse in (("decode_loop", False), ("decode_loop_fused", True)):
        dec = StaticDecoder(model, ids.shape[0], L, fuse=fuse)
        out, sec = timed(lambda: dec.greedy(prompts, n), device)
        match_static, agree_static = _agreement(out, hf_static)
        rows.append(_row(method, out, sec, hf, {"compared_with": "hf_generate_merged", "graph": dec.graph,
                                                "fuse": fuse, "graph_error": dec.graph_error,
                                                "tokens_match_static": match_static,
                                                "token_agreement_with_static": agree_static}))
        del dec
    return rows


def run_methods(cfg: ServeBenchConfig, base, states, ids, idx, device, budget: Budget) -> tuple[list, list]:
    """(rows, skipped): each method's tokens_per_s and tokens_match against the per-adapter reference."""
    from lora_mini.decode import StaticDecoder
    from lora_mini.multi import apply_multi_lora, use_adapter
    K, n, N = cfg.adapters, cfg.new_tokens, ids.shape[0]
    groups = [torch.nonzero(idx == k).flatten() for k in range(K)]
    ref = torch.zeros(N, n, dtype=torch.long)
    merged0 = None
    for k in range(K):                                               # the reference: adapter k merged, alone
        mk = merged_copy(base, states[k])
        ref[groups[k]] = hf_generate(mk, ids[groups[k]], n).cpu()
        merged0 = mk if k == 0 else merged0
        del mk
    rows, skipped = merged_rows(merged0, ids, n, device), []
    del merged0
    multi = apply_multi_lora(__import__("copy").deepcopy(base), states)
    with use_adapter(multi, idx.to(device)):
        dec = StaticDecoder(multi, N, ids.shape[1] + n - 1, fuse=True)
        out, sec = timed(lambda: dec.greedy(ids.cpu().tolist(), n), device)
    rows.append(_row("lora_mini_mixed", out, sec, ref, {"compared_with": "per-adapter reference", "graph": dec.graph,
                                                         "graph_error": dec.graph_error}))
    del dec, multi
    pm = peft_model(base, states, cfg)
    names = [f"a{k}" for k in idx.tolist()]
    plan = [("peft_unmerged_one", lambda: hf_generate(pm, ids, n)),
            ("peft_mixed", lambda: hf_generate(pm, ids, n, adapter_names=names)),
            ("peft_one_at_a_time", lambda: _one_at_a_time(pm, ids, groups, n))]
    for method, fn in plan:
        est = rows[0]["seconds"] * (15 if method != "peft_unmerged_one" else 3)
        if not budget.fits(est):
            skipped.append({"method": method, "why": f"needs about {est:.0f} s, {budget.remaining():.0f} s left"})
            continue
        pm.set_adapter("a0")
        try:
            out, sec = timed(fn, device, lambda: hf_generate(pm, ids[:, :4], 2))
        except Exception as e:                      # noqa: BLE001 -- a PEFT failure is a result, not a crash
            skipped.append({"method": method, "why": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
            continue
        if method == "peft_unmerged_one":
            rows.append(_row(method, out[groups[0]], sec, ref[groups[0]],     # all N rows ran; compared: adapter 0's
                             {"compared_with": "reference, adapter 0's requests"}, tokens=out.numel()))
        else:
            rows.append(_row(method, out, sec, ref, {"compared_with": "per-adapter reference"}))
    return rows, skipped


def _one_at_a_time(pm, ids, groups, n):
    out = torch.zeros(ids.shape[0], n, dtype=torch.long, device=ids.device)
    for k, g in enumerate(groups):
        pm.set_adapter(f"a{k}")
        out[g] = hf_generate(pm, ids[g], n)
    return out


def ratios(rows: list) -> list:
    by = {r["method"]: r["tokens_per_s"] for r in rows}
    for r in rows:
        for key, ref in (("ratio_to_peft", "peft_mixed"), ("ratio_to_merged", "decode_loop_fused"),
                         ("ratio_to_hf_generate", "hf_generate_merged"), ("ratio_to_hf_static", "hf_generate_static")):
            r[key] = r["tokens_per_s"] / by[ref] if ref in by else None
    return rows


def targets(rows: list) -> dict:
    r = {x["method"]: x for x in rows}
    get = lambda m, k: r.get(m, {}).get(k)                          # noqa: E731
    mixed_m, mixed_p = get("lora_mini_mixed", "ratio_to_merged"), get("lora_mini_mixed", "ratio_to_peft")
    loop_hf, loop_static = get("decode_loop", "ratio_to_hf_generate"), get("decode_loop", "ratio_to_hf_static")
    slower = None if loop_hf is None or loop_static is None else min(loop_hf, loop_static)
    return {"mixed_vs_decode_loop_merged": {"want": ">= 0.75", "got": mixed_m, "met": None if mixed_m is None else mixed_m >= 0.75},
            "mixed_vs_peft_mixed": {"want": ">= 10", "got": mixed_p, "met": None if mixed_p is None else mixed_p >= 10},
            "decode_loop_vs_hf_generate": {"want": ">= 3 x both generate rows, the static cache's greedy tokens",
                                           "got": slower, "tokens_match_static": get("decode_loop", "tokens_match_static"),
                                           "tokens_match_dynamic": get("decode_loop", "tokens_match"),
                                           "met": None if slower is None else
                                           bool(slower >= 3 and get("decode_loop", "tokens_match_static"))}}


NAMES = {"hf_generate_merged": "HF generate, merged", "hf_generate_static": "HF generate, static cache",
         "decode_loop": "decode loop, merged", "decode_loop_fused": "decode loop, merged, fused GEMMs",
         "lora_mini_mixed": "lora_mini mixed batch", "peft_mixed": "PEFT mixed batch",
         "peft_one_at_a_time": "PEFT one adapter at a time", "peft_unmerged_one": "PEFT, one unmerged adapter"}


def load(path) -> dict:
    """A serve-bench JSON with its rows also by method ("by_method"); skipped methods are not rows."""
    res = json.loads(Path(path).read_text())
    res["by_method"] = {r["method"]: r for r in res["rows"]}
    clash = set(res["by_method"]) & {s["method"] for s in res.get("skipped", [])}
    if clash:
        raise ValueError(f"{path}: {', '.join(sorted(clash))} both timed and skipped; re-run serve-bench")
    return res


def plot(results: dict, names: dict = NAMES):
    """Generated tokens/s per method (log scale), one group of bars per result ({label: load(...)})."""
    import matplotlib.pyplot as plt

    methods = [m for m in names if any(m in r["by_method"] for r in results.values())]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(len(results), 1)
    every = [r["tokens_per_s"] for res in results.values() for r in res["rows"] if r["method"] in methods]
    low, high = min(every) / 3, max(every) * 3
    for j, (label, res) in enumerate(results.items()):
        xs = [i + (j - (len(results) - 1) / 2) * width for i in range(len(methods))]
        vals = [res["by_method"].get(m, {}).get("tokens_per_s", float("nan")) for m in methods]
        ax.bar(xs, vals, width, label=label)
        for x, v in zip(xs, vals):
            ax.text(x, v * 1.08 if v == v else low * 1.2, f"{v:.0f}" if v == v else "skipped", ha="center",
                    va="bottom", fontsize=7, rotation=0 if v == v else 90)
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ax.set_xticks(range(len(methods)), [names[m].replace(", ", ",\n") for m in methods], fontsize=8)
    ax.set_ylabel("generated tokens/s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def run(cfg: ServeBenchConfig, command: str | None = None) -> dict:
    budget = Budget(cfg.budget_s)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    auto = torch.bfloat16 if device.type == "cuda" else torch.float32
    dtype = auto if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
    with torch.no_grad():
        base, what = build_base(cfg, device, dtype)
        base.generation_config.eos_token_id = None
        states = random_states(base, cfg)
        g = torch.Generator().manual_seed(cfg.seed + 2)
        ids = torch.randint(1, base.config.vocab_size, (cfg.requests, cfg.prompt_len), generator=g).to(device)
        idx = torch.arange(cfg.requests) % cfg.adapters                      # interleaved: rows need sorting
        rows, skipped = run_methods(cfg, base, states, ids, idx, device, budget)
    rows = ratios(rows)
    return {"config": asdict(cfg), "model": what, "dtype": str(dtype).replace("torch.", ""), "rows": rows,
            "skipped": skipped, "targets": targets(rows), "command": command,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "code_version": code_version(), "seconds": budget.elapsed()}


def add_arguments(p) -> None:
    d = ServeBenchConfig()
    p.add_argument("--shape", default=d.shape, choices=list(SHAPES), help="the random model's shape (no --model)")
    p.add_argument("--model", default=None, help="a loadable model (e.g. smollm2-135m-instruct); else --shape")
    for f in ("adapters", "rank", "requests", "new_tokens", "prompt_len", "seed"):
        p.add_argument(f"--{f.replace('_', '-')}", type=int, default=getattr(d, f))
    p.add_argument("--alpha", type=float, default=d.alpha)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=d.dtype, choices=DTYPES,
                   help="weights and activations (auto: bfloat16 on CUDA, float32 on the CPU); float32 shows "
                   "whether the rows' greedy tokens agree without bf16 rounding")
    p.add_argument("--budget-s", type=float, default=None, help="skip the PEFT rows that would not fit")
    p.add_argument("--out", default=None, help="JSON path (default runs/serve/serve_<gpu|cpu>.json; the committed "
                   "figures/serve_gpu.json is written only by name)")


def main(args) -> int:
    cfg = ServeBenchConfig(shape=args.shape, model=args.model, adapters=args.adapters, rank=args.rank,
                           alpha=args.alpha, requests=args.requests, new_tokens=args.new_tokens,
                           prompt_len=args.prompt_len, seed=args.seed, device=args.device, dtype=args.dtype,
                           budget_s=args.budget_s)
    command = "python -m lora_mini serve-bench " + shlex.join(getattr(args, "argv", []) or [])
    res = run(cfg, command.strip())
    out = Path(args.out or f"runs/serve/serve_{'gpu' if res['device'] != 'cpu' else 'cpu'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    for r in res["rows"]:
        print(f"{r['method']:20s} {r['tokens_per_s']:10.1f} tok/s  match {r['tokens_match']} "
              f"({r['token_agreement']:.3f})  x merged {r['ratio_to_merged'] or float('nan'):.2f}")
    print(f"wrote {out}")
    return 0
