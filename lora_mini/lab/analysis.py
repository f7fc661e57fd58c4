"""Chapter 7's analysis: published LoRA claims checked against our sweep records (JSONL).

    recs = load_records("figures/without_regret")
    c1 = claim1_seeds(recs)             # claims 1-2: best LRs over two seeds, ratio and its interval
    fig_lr_seeds(c1, "figures/07_lr_sweep.png")

Claims 1-2: lr_search / claim1_seeds / rank_spread (the chapter's bracket rule from brackets.py plus a
parabola per seed); 3, 4, 6, 7: claim3 / claim4 / claim6 / claim7 ({"claim", "numbers", "text", ...};
the chapter applies its one verdict rule to the numbers); 5: batch_cells / batch_gaps / fig_batch;
6 against pairs that differ in seed: overlap_control / fig_overlap_control.

Every number comes from the records; the thresholds that turn numbers into verdicts are the
constants below, fixed before looking at the GPU results.

Hu et al. (2021) §7, on adapters saved by the sweep (A: r × in, B: out × r, ΔW = (α/r)·B·A):
    direction_overlap(A8, A64)    ‖v_kᵀ V64[:, :8]‖² for the top-8 right-singular vectors v_k of A8
    amplification(W, ΔW, r)       ‖ΔW‖_F / ‖Uᵀ W V‖_F, U, V from ΔW's top-r SVD (≫ 1: ΔW amplifies
                                  directions that W does not emphasise)
"""
from __future__ import annotations

import math
import statistics as st
from pathlib import Path

import torch

from ..lowrank import random_orthonormal, singular_basis, subspace_similarity_grid, truncated_svd
from .sweep import condition_of, load_records, lr_results, make_config

RANKS = (1, 4, 16, 64, 256)
TOL = 0.05                          # "same loss": within 5 % of full FT's loss improvement
OVERLAP = 0.5                       # claim 6: Hu et al.'s "normalized similarity > 0.5"
AMPLIFY = (5.0, 2.0)                # claim 7: agrees if factor >= 5, partly if >= 2



def _ident(c):
    return c


def cond(scale=None, **kw) -> str:
    """The condition key (config without LR) of a plan config, e.g. cond(method="lora", rank=16)."""
    return condition_of(make_config(**(scale or _ident)(kw)))


def interp_best_lr(points: dict[float, float]) -> dict | None:
    """Best LR from {lr: loss}: a parabola in log10(lr) through the best grid point and its two
    neighbours; at the grid's edge (or non-convex) the grid point itself, with edge=True."""
    pts = sorted((lr, l) for lr, l in points.items() if math.isfinite(l))
    if not pts:
        return None
    i = min(range(len(pts)), key=lambda k: pts[k][1])
    lr, loss = pts[i]
    if i == 0 or i == len(pts) - 1:
        return {"lr": lr, "grid_lr": lr, "loss": loss, "edge": len(pts) > 1, "n": len(pts)}
    (x0, y0), (x1, y1), (x2, y2) = [(math.log10(a), b) for a, b in pts[i - 1: i + 2]]
    d = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / d
    b = (x2 ** 2 * (y0 - y1) + x1 ** 2 * (y2 - y0) + x0 ** 2 * (y1 - y2)) / d
    if a <= 0:
        return {"lr": lr, "grid_lr": lr, "loss": loss, "edge": False, "n": len(pts)}
    xm = min(max(-b / (2 * a), x0), x2)
    return {"lr": 10 ** xm, "grid_lr": lr, "loss": loss, "edge": False, "n": len(pts)}


def best(records, scale=None, **kw) -> dict | None:
    return interp_best_lr(lr_results(records, cond(scale, **kw)))


def _run(records, scale=None, **kw):
    """The record of the condition at its best grid LR (None if absent)."""
    b = best(records, scale, **kw)
    if b is None:
        return None
    key = cond(scale, **kw)
    return next(r for r in records if condition_of(r["config"]) == key and r["config"]["lr"] == b["grid_lr"])


def _verdict(ok_all: bool, ok_some: bool) -> str:
    return "agrees" if ok_all else "partly" if ok_some else "disagrees"


def _missing(claim, what):
    return {"claim": claim, "verdict": "not run", "numbers": {}, "text": f"no records yet for {what}"}


def capacity_curves(records, scale=None, steps=270) -> dict:
    """{label: (eval steps, held-out losses)} at each method's best LR: the one-epoch runs if
    present, else the LR-sweep run at the best LR."""
    out = {}
    for r in (None,) + RANKS:
        kw = dict(method="full") if r is None else dict(method="lora", rank=r)
        key = cond(scale, **kw, steps=steps)
        long = [x for x in records if condition_of(x["config"]) == key]
        rec = long[0] if long else _run(records, scale, **kw)
        if rec:
            out["full FT" if r is None else f"r={r}"] = (rec["curve"]["eval_step"], rec["curve"]["heldout_loss"])
    return out


def claim3(records, scale=None, steps=270) -> dict:
    """High-rank LoRA tracks full FT; low ranks fall behind at a step that grows with rank."""
    curves = capacity_curves(records, scale, steps)
    if "full FT" not in curves or len(curves) < 3:
        return _missing(3, "full FT and LoRA runs at their best LR")
    fs, fl = curves.pop("full FT")
    tol = TOL * (fl[0] - fl[-1])
    behind, final_gap = {}, {}
    for name, (s, l) in curves.items():
        full_at = dict(zip(fs, fl))
        gaps = [(k, v - full_at[k]) for k, v in zip(s, l) if k in full_at and k > 0]
        final_gap[name] = gaps[-1][1] if gaps else math.nan
        behind[name] = next((k for k, g in gaps if g > tol), None)
    ranks = sorted(curves, key=lambda n: int(n[2:]))
    top, low = ranks[-1], ranks[0]
    tracks = final_gap[top] <= tol
    low_behind = behind[low] is not None
    order = [behind[n] if behind[n] is not None else math.inf for n in ranks]
    grows = all(a <= b for a, b in zip(order, order[1:]))
    steps_run = max(fs)
    within = [n for n in ranks if final_gap[n] <= tol]
    text = (f"held-out loss gap to full FT after {steps_run} steps: " + ", ".join(f"{n}: {final_gap[n]:+.4f}" for n in ranks)
            + f" (tolerance {tol:.4f} = {TOL:.0%} of full FT's improvement {fl[0] - fl[-1]:.4f}); "
            + (f"within tolerance: {', '.join(within)}" if within else "no rank ends within tolerance")
            + "; first falls behind at step: "
            + ", ".join(f"{n}: {behind[n] if behind[n] is not None else 'never'}" for n in ranks)
            + f" (evaluated every {fs[1] - fs[0]} steps)")
    return {"claim": 3, "verdict": _verdict(tracks and low_behind and grows, tracks or low_behind),
            "numbers": {"final_gap": final_gap, "falls_behind_at": behind, "tol": tol,
                        "high_rank_tracks": tracks, "low_rank_behind": low_behind, "step_grows_with_rank": grows},
            "text": text}


LAYER_RUNS = (("attn", 64), ("mlp", 39), ("all", 24))


def claim4(records, scale=None) -> dict:
    """Attention-only LoRA < MLP-only at matched parameters; MLP-only ≈ all layers."""
    res = {L: best(records, scale, method="lora", layers=L, rank=r) for L, r in LAYER_RUNS}
    if any(v is None for v in res.values()):
        return _missing(4, "attention-only / MLP-only / all-layer runs")
    recs = {L: _run(records, scale, method="lora", layers=L, rank=r) for L, r in LAYER_RUNS}
    params = {L: recs[L]["trainable_params"] for L in res}
    init = recs["all"]["heldout_loss_init"]
    tol = TOL * (init - res["all"]["loss"])
    attn_worse = res["attn"]["loss"] - res["mlp"]["loss"] > tol
    mlp_eq_all = abs(res["mlp"]["loss"] - res["all"]["loss"]) <= tol
    text = ("best held-out loss: " + ", ".join(
        f"{L} r={r} ({params[L] / 1e6:.2f}M params): {res[L]['loss']:.4f}" for L, r in LAYER_RUNS)
        + f"; attention - MLP = {res['attn']['loss'] - res['mlp']['loss']:+.4f}, MLP - all = "
        f"{res['mlp']['loss'] - res['all']['loss']:+.4f} (tolerance {tol:.4f})")
    return {"claim": 4, "verdict": _verdict(attn_worse and mlp_eq_all, attn_worse or mlp_eq_all),
            "numbers": {"loss": {L: v["loss"] for L, v in res.items()}, "params": params, "tol": tol},
            "text": text}


BATCHES = (8, 32, 128)


def missing_runs(records) -> list[str]:
    """The conditions of the GPU plans (sweep.PLANS) with no record at all (e.g. cut by the time budget)."""
    from .sweep import PLANS, _describe
    have = {condition_of(r["config"]) for r in records}
    out = []
    for plan in PLANS.values():
        for g in plan():
            out += [_describe({**c, "lr": math.nan}).replace(" lr=nan", "") + (" (adapter saved)" if c["save"] else "")
                    for c in g["conditions"] if condition_of(c) not in have]
    return out


def same_lr_curves(records, lr, scale=None) -> dict:
    """{label: (eval steps, held-out losses)} of the 200-step LoRA runs at one LR, every rank (claim 2)."""
    out = {}
    for r in RANKS:
        key = cond(scale, method="lora", rank=r)
        rec = next((x for x in records if condition_of(x["config"]) == key and x["config"]["lr"] == lr), None)
        if rec:
            out[f"r={r}"] = (rec["curve"]["eval_step"], rec["curve"]["heldout_loss"])
    return out


# --------------------------------------------------------------------------- Hu et al. §7
def load_adapter_file(path) -> dict:
    """{module name: (A, B)} in float32 from a sweep adapter file, and its scaling."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        scaling = float(f.metadata()["scaling"])
        names = sorted({k.rsplit(".", 1)[0] for k in f.keys()})
        return {n: (f.get_tensor(n + ".lora_A").float(), f.get_tensor(n + ".lora_B").float()) for n in names}, scaling


def direction_overlap(A1: torch.Tensor, A2: torch.Tensor, k: int = 8) -> list[float]:
    """‖v_iᵀ V2[:, :k]‖² for the top-k right-singular vectors v_i of A1 (r1 × n); A2: r2 × n.
    Hu et al.'s φ(A1, A2, i, j) restricted to one direction i; random level ≈ k / n."""
    V1, V2 = singular_basis(A1, "right")[:, :k], singular_basis(A2, "right")[:, :k]
    return (V1.T @ V2).pow(2).sum(1).tolist()


def phi_grid(A1: torch.Tensor, A2: torch.Tensor) -> torch.Tensor:
    """φ(A1, A2, i, j) for i = 1..r1, j = 1..r2 (Hu et al. Fig. 3), from right-singular vectors."""
    return subspace_similarity_grid(singular_basis(A1, "right"), singular_basis(A2, "right"))


def amplification(W: torch.Tensor, dW: torch.Tensor, r: int, seed: int = 0) -> dict:
    """Hu et al. §7.3: how much ΔW amplifies the directions it shares with W.

    U (out × r), V (in × r) from ΔW's top-r SVD; factor = ‖ΔW‖_F / ‖Uᵀ W V‖_F. Also ‖Uᵀ W V‖_F
    for U, V from W's own top-r SVD and for random orthonormal U, V (for comparison). W: out × in.
    """
    W, dW = W.double(), dW.double()
    r = min(r, *W.shape)
    U, _, Vh = truncated_svd(dW, r)
    Uw, _, Vhw = truncated_svd(W, r)
    Ur, Vr = random_orthonormal(W.shape[0], r, seed), random_orthonormal(W.shape[1], r, seed + 1)
    proj = float(torch.linalg.matrix_norm(U.T @ W @ Vh.T))
    return {"factor": float(torch.linalg.matrix_norm(dW)) / proj, "dW_fro": float(torch.linalg.matrix_norm(dW)),
            "proj_dW": proj, "proj_W": float(torch.linalg.matrix_norm(Uw.T @ W @ Vhw.T)),
            "proj_random": float(torch.linalg.matrix_norm(Ur.T @ W @ Vr))}


def subspace_runs(records, scale=None):
    """The three saved-adapter runs (r=8 seed 0, r=64 seed 0, r=64 seed 1) or None."""
    def find(r, seed):
        key = cond(scale, method="lora", rank=r, save=True, seed=seed)
        return next((x for x in records if condition_of(x["config"]) == key and "adapter_file" in x), None)
    return find(8, 0), find(64, 0), find(64, 1)


def subspace_stats(records, folder, model=None, scale=None) -> dict | None:
    """Overlaps (claim 6) and amplification factors (claim 7) over the saved modules.
    model: the base model, for W (claim 7 is skipped without it)."""
    r8, r64, r64b = subspace_runs(records, scale)
    if r8 is None or r64 is None:
        return None
    a8, s8 = load_adapter_file(Path(folder) / r8["adapter_file"])
    a64, s64 = load_adapter_file(Path(folder) / r64["adapter_file"])
    a64b = load_adapter_file(Path(folder) / r64b["adapter_file"])[0] if r64b else None
    out = {"modules": sorted(a8), "overlap": {}, "overlap_seed": {}, "amp8": {}, "amp64": {}, "lr": r8["config"]["lr"]}
    mods = dict(model.named_modules()) if model is not None else {}
    for name in out["modules"]:
        (A8, B8), (A64, B64) = a8[name], a64[name]
        out["overlap"][name] = direction_overlap(A8, A64)
        if a64b is not None:
            out["overlap_seed"][name] = direction_overlap(A64, a64b[name][0])
        if name in mods:
            m = mods[name]
            W = (m.base.weight if hasattr(m, "base") else m.weight).detach().float().cpu()
            out["amp8"][name] = amplification(W, s8 * B8 @ A8, 8)
            out["amp64"][name] = amplification(W, s64 * B64 @ A64, 64)
    out["n_in"] = {n: a8[n][0].shape[1] for n in out["modules"]}
    return out


def claim6(stats) -> dict:
    if stats is None:
        return _missing(6, "adapters saved at r=8 and r=64")
    top = [ov[0] for ov in stats["overlap"].values()]
    rest = [x for ov in stats["overlap"].values() for x in ov[1:]]
    med_top, med_rest = st.median(top), st.median(rest)
    noise = st.median(8 / n for n in stats["n_in"].values())
    seed = [ov[0] for ov in stats["overlap_seed"].values()]
    text = (f"overlap of A(r=8)'s top direction with A(r=64)'s top 8: median {med_top:.2f} over "
            f"{len(top)} modules (claimed > {OVERLAP}); directions 2-8: median {med_rest:.2f}, "
            f"{med_rest / noise:.0f}x the random level {noise:.3f}; "
            + (f"r=64 seed 0 vs seed 1: median {st.median(seed):.2f}" if seed else "no second r=64 seed was run"))
    return {"claim": 6, "verdict": _verdict(med_top > OVERLAP and med_rest < OVERLAP, med_top > OVERLAP or med_top > 2 * med_rest),
            "numbers": {"top": med_top, "rest": med_rest, "noise": noise,
                        "seed_top": st.median(seed) if seed else None}, "text": text}


def claim7(stats) -> dict:
    if stats is None or not stats["amp8"]:
        return _missing(7, "adapters saved at r=8 (and the base model for W)")
    f8 = st.median(a["factor"] for a in stats["amp8"].values())
    f64 = st.median(a["factor"] for a in stats["amp64"].values())
    pw = st.median(a["proj_W"] for a in stats["amp8"].values())
    pd = st.median(a["proj_dW"] for a in stats["amp8"].values())
    pr = st.median(a["proj_random"] for a in stats["amp8"].values())
    q8 = [a["factor"] for n, a in stats["amp8"].items() if n.endswith("q_proj")]
    fq = st.median(q8) if q8 else math.nan
    dw = st.median(a["dW_fro"] for a in stats["amp8"].values())
    text = (f"amplification ‖ΔW‖_F / ‖Uᵀ W V‖_F: median {f8:.1f} at r=8 (q_proj alone {fq:.1f}), {f64:.1f} at r=64 "
            f"(Hu et al., W_q of GPT-3: 21.5 at r=4, 1.9 at r=64); ‖Uᵀ W V‖_F with U, V from ΔW {pd:.2f}, "
            f"from W itself {pw:.2f}, random {pr:.2f}; ‖ΔW‖_F {dw:.2f}")
    return {"claim": 7, "verdict": _verdict(f8 >= AMPLIFY[0], f8 >= AMPLIFY[1]),
            "numbers": {"factor_r8": f8, "factor_r8_q": fq, "factor_r64": f64, "proj_dW": pd, "proj_W": pw,
                        "proj_random": pr, "dW_fro": dw},
            "text": text}


# --------------------------------------------------------------------------- figures
def _save(fig, path):
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def fig_curves(curves: dict, path=None, title="held-out loss during training"):
    """Held-out loss vs step (log x) for {label: (steps, losses)} (claims 2-3)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, (s, l) in curves.items():
        pts = [(a, b) for a, b in zip(s, l) if a > 0]
        ax.plot(*zip(*pts), "k--" if name == "full FT" else "-", marker=".", label=name)
    ax.set(xscale="log", xlabel="step", ylabel="held-out loss (nats/token)", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def fig_layers(records, path=None, scale=None):
    """Claim 4: best loss per layer choice at a matched parameter count."""
    import matplotlib.pyplot as plt
    fig, a1 = plt.subplots(figsize=(5.2, 3.6))
    res = {f"{L} r={r}": best(records, scale, method="lora", layers=L, rank=r) for L, r in LAYER_RUNS}
    res = {k: v["loss"] for k, v in res.items() if v}
    if res:
        a1.bar(list(res), list(res.values()), color=["tab:orange", "tab:blue", "tab:green"][: len(res)])
        lo, hi = min(res.values()), max(res.values())
        a1.set_ylim(lo - (hi - lo + 1e-3), hi + 0.5 * (hi - lo + 1e-3))
    a1.set(ylabel="best held-out loss", title="LoRA at matched parameter count")
    fig.tight_layout()
    return _save(fig, path)


def fig_subspace(A8: torch.Tensor, A64: torch.Tensor, path=None, title=""):
    """Claim 6: φ(A_r=8, A_r=64, i, j) heatmap (Hu et al. Fig. 3)."""
    import matplotlib.pyplot as plt
    G = phi_grid(A8, A64)
    fig, ax = plt.subplots(figsize=(7, 2.6))
    im = ax.imshow(G.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1,
                   extent=(0.5, G.shape[1] + 0.5, G.shape[0] + 0.5, 0.5))
    ax.set(xlabel="j (top-j directions of A, r=64)", ylabel="i (r=8)", title=title or "φ(A_8, A_64, i, j)")
    fig.colorbar(im, ax=ax)
    return _save(fig, path)


# --------------------------------------------------------------------------- two seeds (regret_c)
SEEDS = (0, 1)


def seed_points(records, seeds=SEEDS, grid_only=True, scale=None, **kw) -> dict:
    """{seed: {lr: final held-out loss}} of one condition (kw without seed). grid_only keeps the
    half-decade LR_GRID points, so every seed is read on the same grid (quarter points left out)."""
    from .sweep import on_grid
    return {s: {lr: loss for lr, loss in lr_results(records, cond(scale, **kw, seed=s)).items()
                if on_grid(lr) or not grid_only} for s in seeds}


def as_runs(points: dict, method: str = "x") -> list[dict]:
    """{seed: {lr: loss}} -> brackets.bracket's runs (val = -loss: the rule maximises), at the LRs
    that every seed ran without diverging."""
    common = set.intersection(*(set(p) for p in points.values())) if points else set()
    ok = [lr for lr in sorted(common) if all(math.isfinite(p[lr]) for p in points.values())]
    return [{"method": method, "lr": lr, "seed": s, "val": -p[lr], "test": None}
            for s, p in points.items() for lr in ok]


def lr_search(records, scale=None, **kw) -> dict:
    """One condition's LR search over the seeds: brackets.bracket on the shared grid LRs (best LR,
    plateau, bracketed), and each seed's parabola best LR ("interp"); "interp_mean" and
    "interp_sigma" are the mean and population std of log10(parabola LR) over the seeds whose
    parabola has a neighbour on both sides."""
    from .brackets import bracket
    pts = seed_points(records, scale=scale, **kw)
    if not all(pts.values()):
        raise ValueError(f"no runs for {kw} at seeds {[s for s, p in pts.items() if not p]}: "
                         "run the regret_c plan (lora_mini.lab.sweep.plan_regret_c) first")
    out = bracket(as_runs(pts), "x")
    out["interp"] = {s: interp_best_lr(p) for s, p in pts.items()}
    logs = [math.log10(b["lr"]) for b in out["interp"].values() if b and not b["edge"]]
    out["interp_mean"] = 10 ** st.fmean(logs) if logs else math.nan
    out["interp_sigma"] = st.pstdev(logs) if len(logs) > 1 else math.nan
    out["interp_seeds"] = [s for s, b in out["interp"].items() if b and not b["edge"]]
    return out


def claim1_seeds(records, scale=None) -> dict:
    """Claim 1 on the code corpus with two seeds. Per rank: the ratio of best grid LRs (LoRA / full)
    with the interval the two plateaus allow (brackets.lr_ratio), the ratio of the parabola LRs per
    seed, and brackets.verdict (inconclusive unless both optima are bracketed)."""
    from .brackets import lr_ratio, verdict
    full = lr_search(records, scale, method="full")
    ranks = {}
    for r in RANKS:
        lo = lr_search(records, scale, method="lora", rank=r)
        iv = lr_ratio(lo, full)
        interp = {s: lo["interp"][s]["lr"] / full["interp"][s]["lr"] for s in SEEDS
                  if s in lo["interp_seeds"] and s in full["interp_seeds"]}
        ranks[r] = {"search": lo, "grid": iv["ratio"], "low": iv["low"], "high": iv["high"],
                    "interp": interp, "verdict": verdict(lo, full)}
    return {"full": full, "ranks": ranks}


def rank_spread(c1: dict, ranks=(4, 16, 64, 256)) -> dict:
    """Claim 2 (LR): how much the parabola best LR moves across ranks, max / min of the per-rank
    means over seeds, against the seed noise: twice the largest per-rank seed spread, as a factor."""
    means = {r: c1["ranks"][r]["search"]["interp_mean"] for r in ranks}
    sig = [c1["ranks"][r]["search"]["interp_sigma"] for r in ranks]
    sig = [x for x in sig if math.isfinite(x)]
    return {"means": means, "spread": max(means.values()) / min(means.values()),
            "noise": 10 ** (2 * max(sig)) if sig else math.nan,
            "one_seed": [r for r in ranks if len(c1["ranks"][r]["search"]["interp_seeds"]) < 2]}


def batch_cells(records, ranks=(4, 64), scale=None) -> list[dict]:
    """Claim 5's cells at equal sequences seen (batch 8: 800 steps, 32: 200, 128: 50): one row per
    method, batch and seed that ran: best grid LR, its loss, and whether that LR has a tried, worse
    neighbour on both sides (bracketed)."""
    rows = []
    for method, rank in (("full", None),) + tuple(("lora", r) for r in ranks):
        for b in BATCHES:
            kw = dict(method=method, batch_size=b, steps=200 * 32 // b) | ({"rank": rank} if rank else {})
            for s, pts in seed_points(records, scale=scale, **kw).items():
                best_ = interp_best_lr(pts)            # a diverged LR counts as a worse neighbour
                if best_:
                    rows.append({"method": method, "rank": rank, "batch": b, "seed": s, "lr": best_["grid_lr"],
                                 "loss": best_["loss"], "bracketed": min(pts) < best_["grid_lr"] < max(pts)})
    return rows


def batch_gaps(rows: list[dict], rank: int) -> dict:
    """{batch: {"gaps": {seed: LoRA loss - full FT loss}, "mean", "spread", "bracketed"}} for the seeds
    where both cells ran; spread is the population std over those seeds (0 with one seed)."""
    cell = {(r["method"], r["rank"], r["batch"], r["seed"]): r for r in rows}
    out = {}
    for b in BATCHES:
        pairs = {s: (cell[("full", None, b, s)], cell[("lora", rank, b, s)]) for s in SEEDS
                 if ("full", None, b, s) in cell and ("lora", rank, b, s) in cell}
        if pairs:
            g = {s: lo["loss"] - f["loss"] for s, (f, lo) in pairs.items()}
            out[b] = {"gaps": g, "mean": st.fmean(g.values()), "spread": st.pstdev(g.values()),
                      "bracketed": all(f["bracketed"] and lo["bracketed"] for f, lo in pairs.values())}
    return out


def fig_batch(rows: list[dict], path=None):
    """Claim 5: best held-out loss against batch size at equal data, one marker per seed; open
    markers are cells whose best LR is at the edge of what ran (not bracketed)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for (method, rank), style, marker in ((("full", None), "ks--", "s"), (("lora", 4), "o-", "o"),
                                          (("lora", 64), "^-", "^")):
        mine = [r for r in rows if r["method"] == method and r["rank"] == rank]
        bs = sorted({r["batch"] for r in mine})
        mean = [st.fmean(r["loss"] for r in mine if r["batch"] == b) for b in bs]
        line, = ax.plot(bs, mean, style, label="full FT" if rank is None else f"LoRA r={rank}", alpha=0.6)
        for r in mine:
            ax.plot(r["batch"], r["loss"], marker, color=line.get_color(), ls="none",
                    mfc=line.get_color() if r["bracketed"] else "none")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="batch size (sequences), 6,400 sequences in all", ylabel="best held-out loss",
           title="line: mean over seeds; open marker: best LR at the edge")
    ax.legend(fontsize=8)
    return _save(fig, path)


def adapter_run(records, rank: int, seed: int, scale=None) -> dict | None:
    """The saved-adapter run at (rank, seed), or None."""
    key = cond(scale, method="lora", rank=rank, save=True, seed=seed)
    return next((x for x in records if condition_of(x["config"]) == key and "adapter_file" in x), None)


OVERLAP_PAIRS = {"across rank, same seed": [((8, 0), (64, 0)), ((8, 1), (64, 1))],
                 "across rank and seed": [((8, 0), (64, 1)), ((8, 1), (64, 0))],
                 "r=8, across seed": [((8, 0), (8, 1))],
                 "r=64, across seed": [((64, 0), (64, 1))]}


def overlap_control(records, folder, scale=None) -> dict:
    """Claim 6 with its control: for each pair of saved adapters, the median over modules of the first
    one's top direction inside the second's top 8 (direction_overlap), and of directions 2-8.
    {kind: [{"pair", "top", "rest"}]}, kinds as in OVERLAP_PAIRS."""
    runs = {(r, s): adapter_run(records, r, s, scale) for r in (8, 64) for s in SEEDS}
    missing = [k for k, v in runs.items() if v is None]
    if missing:
        raise ValueError(f"no saved adapters for (rank, seed) {missing}: run plans regret_a and regret_c")
    A = {k: load_adapter_file(Path(folder) / v["adapter_file"])[0] for k, v in runs.items()}
    out = {}
    for kind, pairs in OVERLAP_PAIRS.items():
        out[kind] = []
        for p, q in pairs:
            ov = [direction_overlap(A[p][m][0], A[q][m][0]) for m in sorted(A[p])]
            out[kind].append({"pair": (p, q), "top": st.median(o[0] for o in ov),
                              "rest": st.median(x for o in ov for x in o[1:])})
    return out


def fig_lr_seeds(c1: dict, path=None):
    """Claims 1-2 (two seeds): mean final held-out loss against LR at the LRs both seeds ran, bars =
    seed spread; the dotted verticals are full FT's and LoRA r=16's parabola best LRs (mean over seeds)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    lines = [("full FT", c1["full"], "ks--")] + [(f"LoRA r={r}", x["search"], "o-") for r, x in c1["ranks"].items()]
    for label, b, style in lines:
        line = ax.errorbar([x["lr"] for x in b["rows"]], [-x["mean"] for x in b["rows"]],
                           yerr=[x["spread"] for x in b["rows"]], fmt=style, capsize=3, ms=4, label=label)
        if label in ("full FT", "LoRA r=16"):
            ax.axvline(b["interp_mean"], color=line[0].get_color(), ls=":", lw=1)
    ax.set(xscale="log", xlabel="learning rate", ylabel="final held-out loss (nats/token)",
           title="200 steps, mean of seeds 0 and 1 (bars: spread)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def fig_overlap_control(oc: dict, noise: float, path=None):
    """Claim 6 with its control: top-direction overlap for each kind of adapter pair (one dot per pair)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for i, (kind, pairs) in enumerate(oc.items()):
        ax.plot([i] * len(pairs), [p["top"] for p in pairs], "o", ms=8)
    ax.axhline(OVERLAP, color="k", ls="--", lw=1, label=f"Hu et al.'s threshold {OVERLAP}")
    ax.axhline(noise, color="gray", ls=":", lw=1, label=f"random, {noise:.3f}")
    ax.set_xticks(range(len(oc)), list(oc), fontsize=8)
    ax.set(ylim=(0, 1), ylabel="top direction inside the other's top 8", title="median over 12 modules")
    ax.legend(fontsize=8)
    return _save(fig, path)
