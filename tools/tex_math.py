"""Turn the Unicode formulas of chapters 1 and 2 into TeX math, as the other chapters write them.

    python tools/tex_math.py            # edit the notebooks in place (idempotent)
    python tools/tex_math.py --check    # only report what would change; exit 1 if anything would

Each chapter has a list of exact (old -> new) replacements for its markdown cells (the notation is
chapters/notation.md: W, ΔW = BA, A: r × in, B: out × r, scale α/r). They apply to
chapters/solutions/NN_*.ipynb (the source the student edition is built from) and chapters/NN_*.ipynb.
`old` matches with any whitespace in place of its spaces (the cells wrap lines); fenced and indented
code blocks are never touched. If a text of R is missing from the chapter's source notebook (the
solutions one when it exists) and its TeX form is missing too, the script stops with the notebook
and the text, before anything is written: the chapter changed and the list needs updating. The
exercise texts (OPTIONAL, still being rewritten) apply where found. Run it again: nothing changes.
Notebooks are read and written with nbformat.
"""
import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent

R = {  # chapter number -> [(old Unicode text, new TeX text)]
    1: [
        ("ΔW = B·A. Whether", r"$\Delta W = BA$. Whether"),
        ("rotates again: W = U Σ Vᵀ;", r"rotates again: $W = U \Sigma V^\top$;"),
        ("the best rank-r approximation of W is the truncated SVD (Eckart–Young)",
         r"the best rank-$r$ approximation of $W$ is the truncated SVD (Eckart–Young)"),
        ("‖W − W_r‖_F = √(σ²_{r+1} + σ²_{r+2} + …), ‖W − W_r‖₂ = σ_{r+1};",
         r"$\lVert W - W_r \rVert_F = \sqrt{\sigma_{r+1}^2 + \sigma_{r+2}^2 + \dots}$, "
         r"$\lVert W - W_r \rVert_2 = \sigma_{r+1}$;"),
        ("(cumulative share of Σσ²)", r"(cumulative share of $\sum_i \sigma_i^2$)"),
        ("about the *update* ΔW, not about W;", r"about the *update* $\Delta W$, not about $W$;"),
        ("a rank-r factorization stores: r·(d + k) instead of d·k.",
         r"a rank-$r$ factorization stores: $r(d + k)$ instead of $dk$."),
        ("A 2 × 2 matrix W sends every point x of the plane to W x.",
         r"A $2 \times 2$ matrix $W$ sends every point $x$ of the plane to $Wx$."),
        ("W = U Σ Vᵀ explains the ellipse: Vᵀ rotates (or reflects), Σ = diag(σ₁, σ₂) stretches along the "
         "axes, U rotates again. The right singular vectors v_i are",
         r"$W = U \Sigma V^\top$ explains the ellipse: $V^\top$ rotates (or reflects), "
         r"$\Sigma = \operatorname{diag}(\sigma_1, \sigma_2)$ stretches along the axes, $U$ rotates again. "
         r"The right singular vectors $v_i$ are"),
        ("with lengths σ_i: W v_i = σ_i u_i.", r"with lengths $\sigma_i$: $W v_i = \sigma_i u_i$."),
        ("W = Σ_i σ_i u_i v_iᵀ, largest σ first. Keeping the first r pieces gives a rank-r matrix W_r. "
         "The Eckart–Young theorem says no rank-r matrix is closer to W,",
         r"$W = \sum_i \sigma_i u_i v_i^\top$, largest $\sigma$ first. Keeping the first $r$ pieces gives "
         r"a rank-$r$ matrix $W_r$. The Eckart–Young theorem says no rank-$r$ matrix is closer to $W$,"),
        ("We test it on a 120 × 80 matrix", r"We test it on a $120 \times 80$ matrix"),
        ("pick a random r-dimensional subspace Q (d × r, orthonormal columns)",
         r"pick a random $r$-dimensional subspace $Q$ ($d \times r$, orthonormal columns)"),
        ("whose columns lie in it, Q Qᵀ W (this", r"whose columns lie in it, $Q Q^\top W$ (this"),
        ("Gaussian B (d × r) and A (r × k), with the best overall scale c for c·B·A.",
         r"Gaussian $B$ ($d \times r$) and $A$ ($r \times k$), with the best overall scale $c$ for $c\,BA$."),
        ("Since ‖W‖_F² = Σσ_i², the share of Σσ² kept by the top r singular values, "
         "e_r = (σ₁² + … + σ_r²)/Σσ², says how much of W a rank-r approximation keeps: "
         "the relative squared error is exactly 1 − e_r.",
         r"Since $\lVert W \rVert_F^2 = \sum_i \sigma_i^2$, the share of $\sum_i \sigma_i^2$ kept by the "
         r"top $r$ singular values, $e_r = (\sigma_1^2 + \dots + \sigma_r^2) / \sum_i \sigma_i^2$, says how "
         r"much of $W$ a rank-$r$ approximation keeps: the relative squared error is exactly $1 - e_r$."),
        ('"the r that keeps 90 % of the energy"', r'"the $r$ that keeps 90 % of the energy"'),
        ("(r₉₀), next to", r"($r_{90}$), next to"),
        ("full rank min(d, k) that r₉₀ is:", r"full rank $\min(d, k)$ that $r_{90}$ is:"),
        ('ΔW = W_finetuned − W, has low "intrinsic rank". W stays frozen and full-rank; only ΔW = B·A is '
         "low-rank.",
         r'$\Delta W = W_{\text{finetuned}} - W$, has low "intrinsic rank". $W$ stays frozen and full-rank; '
         r"only $\Delta W = BA$ is low-rank."),
        ("chapter 7 measures ΔW of a real fine-tune.", r"chapter 7 measures $\Delta W$ of a real fine-tune."),
        ("A dense d × k update stores d·k numbers; B (d × r) and A (r × k) store r·(d + k). The ratio "
         "d·k / (r·(d + k)) is the compression.",
         r"A dense $d \times k$ update stores $dk$ numbers; $B$ ($d \times r$) and $A$ ($r \times k$) "
         r"store $r(d + k)$. The ratio $dk / (r(d + k))$ is the compression."),
        ("- SVD: W = U Σ Vᵀ = Σ σ_i u_i v_iᵀ; truncating it is the best rank-r approximation, with error "
         "√(Σ_{i>r} σ_i²) (Frobenius) and σ_{r+1} (spectral)",
         r"- SVD: $W = U \Sigma V^\top = \sum_i \sigma_i u_i v_i^\top$; truncating it is the best rank-$r$ "
         r"approximation, with error $\sqrt{\sum_{i>r} \sigma_i^2}$ (Frobenius) and $\sigma_{r+1}$ (spectral)"),
        ("- The energy curve e_r reads off how much of W a rank keeps: relative squared error = 1 − e_r.",
         r"- The energy curve $e_r$ reads off how much of $W$ a rank keeps: relative squared error "
         r"$= 1 - e_r$."),
        ("LoRA's low-rank bet is on the update ΔW.", r"LoRA's low-rank bet is on the update $\Delta W$."),
        ("- Rank r costs r·(d + k) numbers: ~36× fewer than d·k for a 576 × 576 matrix at r = 8.",
         r"- Rank $r$ costs $r(d + k)$ numbers: ~36× fewer than $dk$ for a $576 \times 576$ matrix at $r = 8$."),
    ],
    2: [
        ("pretrained weights W are", r"pretrained weights $W$ are"),
        ("fine-tune changes W to W + ΔW, and ΔW is learned as B·A with B (d × r) and A (r × k).",
         r"fine-tune changes $W$ to $W + \Delta W$, and $\Delta W$ is learned as $BA$ with $B$ ($d \times r$) "
         r"and $A$ ($r \times k$)."),
        ("- when the needed ΔW is low-rank plus noise, B·A at rank r gets as close as Eckart–Young allows",
         r"- when the needed $\Delta W$ is low-rank plus noise, $BA$ at rank $r$ gets as close as "
         r"Eckart–Young allows"),
        ("and a full ΔW is only needed for the noise;", r"and a full $\Delta W$ is only needed for the noise;"),
        ("- why B starts at zero: the model starts exactly as the base model, and only B gets a gradient",
         r"- why $B$ starts at zero: the model starts exactly as the base model, and only $B$ gets a gradient"),
        ("- why the update is scaled by α/r:", r"- why the update is scaled by $\alpha/r$:"),
        ('A frozen "pretrained" layer W₀ (d × k, random) and a target layer W* = W₀ + ΔW*, where the update '
         "ΔW* is rank 8",
         r'A frozen "pretrained" layer $W_0$ ($d \times k$, random) and a target layer '
         r"$W^* = W_0 + \Delta W^*$, where the update $\Delta W^*$ is rank 8"),
        ("are inputs x and the target outputs W* x. We use n = 256 inputs that are *whitened* "
         "(XᵀX / n = I), so the mean squared error of any update ΔW is exactly ‖ΔW − ΔW*‖²_F / d.",
         r"are inputs $x$ and the target outputs $W^* x$. We use $n = 256$ inputs that are *whitened* "
         r"($X^\top X / n = I$), so the mean squared error of any update $\Delta W$ is exactly "
         r"$\lVert \Delta W - \Delta W^* \rVert_F^2 / d$."),
        ("Because the loss is ‖ΔW − ΔW*‖²_F / d, chapter 1 tells us the best any rank-r update can do: the "
         "Eckart–Young **floor** (Σ_{i>r} σ_i²) / d, with σ the singular values of ΔW*.",
         r"Because the loss is $\lVert \Delta W - \Delta W^* \rVert_F^2 / d$, chapter 1 tells us the best any "
         r"rank-$r$ update can do: the Eckart–Young **floor** $\sum_{i>r} \sigma_i^2 / d$, with $\sigma$ the "
         r"singular values of $\Delta W^*$."),
        ("The update is ΔW = (α/r)·B·A, initialized", r"The update is $\Delta W = \frac{\alpha}{r} BA$, initialized"),
        ("A kaiming-uniform (entries uniform in ±1/√k), **B = 0**.",
         r"$A$ kaiming-uniform (entries uniform in $\pm 1/\sqrt{k}$), **$B = 0$**."),
        ("trains a full d × k matrix instead", r"trains a full $d \times k$ matrix instead"),
        ("With B = 0 the update B·A is exactly zero", r"With $B = 0$ the update $BA$ is exactly zero"),
        ("∂L/∂A = (α/r)·Bᵀ·∂L/∂ΔW, A gets no gradient at step 0; B does (∂L/∂B = (α/r)·∂L/∂ΔW·Aᵀ, with A "
         "random).",
         r"$\partial L / \partial A = \frac{\alpha}{r} B^\top \, \partial L / \partial \Delta W$, $A$ gets no "
         r"gradient at step 0; $B$ does ($\partial L / \partial B = \frac{\alpha}{r} \, "
         r"(\partial L / \partial \Delta W) \, A^\top$, with $A$ random)."),
        ("(lr = 0.005 for B·A, inside", r"(lr = 0.005 for $BA$, inside"),
        ("Rank 8 holds r·(d + k) = 1,024 numbers", r"Rank 8 holds $r(d + k) = 1{,}024$ numbers"),
        ("LoRA multiplies B·A by α/r. With Adam every entry of B moves by about lr per step whatever the "
         "gradient's size, so after a few steps the r columns of B contribute r roughly aligned pieces to ΔW: "
         "the change of ΔW grows like (scale)·r·lr. Scale α/r cancels the r:",
         r"LoRA multiplies $BA$ by $\alpha/r$. With Adam every entry of $B$ moves by about lr per step "
         r"whatever the gradient's size, so after a few steps the $r$ columns of $B$ contribute $r$ roughly "
         r"aligned pieces to $\Delta W$: the change of $\Delta W$ grows like "
         r"$\text{scale} \cdot r \cdot \text{lr}$. Scale $\alpha/r$ cancels the $r$:"),
        ("optimal lr varies < 2× between r = 4 and r = 512). Without the 1/r,",
         r"optimal lr varies < 2× between $r = 4$ and $r = 512$). Without the $1/r$,"),
        ('with a fixed scale α/8 for "no 1/r" (the two agree at r = 8).',
         r'with a fixed scale $\alpha/8$ for "no 1/r" (the two agree at $r = 8$).'),
        ("With α/r all ranks start down", r"With $\alpha/r$ all ranks start down"),
        ("without the 1/r, each doubling of r speeds up", r"without the $1/r$, each doubling of $r$ speeds up"),
        ('a random A of rank r only "sees" an r-dimensional slice',
         r'a random $A$ of rank $r$ only "sees" an $r$-dimensional slice'),
        ("until A has learned where to look.", r"until $A$ has learned where to look."),
        ("(L₅₀ − floor_r) / (L₀ − floor_r)", r"$(L_{50} - \text{floor}_r) / (L_0 - \text{floor}_r)$"),
        ("With α/r the best lr stays within a factor of about 2 from r = 1 to r = 64; without the 1/r it "
         "falls by about 10× once r grows past 16",
         r"With $\alpha/r$ the best lr stays within a factor of about 2 from $r = 1$ to $r = 64$; without the "
         r"$1/r$ it falls by about 10× once $r$ grows past 16"),
        ("The argument above is about B doing the moving while A stays near its random start — the regime "
         "of real fine-tunes, where lr (~10⁻⁴) is small next to A's entries (~1/√k).",
         r"The argument above is about $B$ doing the moving while $A$ stays near its random start — the "
         r"regime of real fine-tunes, where lr ($\sim 10^{-4}$) is small next to $A$'s entries "
         r"($\sim 1/\sqrt{k}$)."),
        ("that regime needs a large α (we use α = 512,", r"that regime needs a large $\alpha$ (we use $\alpha = 512$,"),
        ("small next to A's entries ≈ 0.07). With a small α the best lr is large, A moves as much as B,",
         r"small next to $A$'s entries $\approx 0.07$). With a small $\alpha$ the best lr is large, $A$ moves "
         r"as much as $B$,"),
        ("train only a random d-dimensional subspace of the parameters, θ = θ₀ + P·z with P fixed and "
         "random, and find the smallest d that reaches",
         r"train only a random $d$-dimensional subspace of the parameters, $\theta = \theta_0 + P z$ with $P$ "
         r"fixed and random, and find the smallest $d$ that reaches"),
        ("the update ΔW has a low *intrinsic rank* and learns it directly as B·A, per matrix,",
         r"the update $\Delta W$ has a low *intrinsic rank* and learns it directly as $BA$, per matrix,"),
        ("- When the needed ΔW is low-rank plus noise, rank-r B·A trained by gradient descent reaches the "
         "Eckart–Young floor (Σ_{i>r} σ_i²)/d;",
         r"- When the needed $\Delta W$ is low-rank plus noise, rank-$r$ $BA$ trained by gradient descent "
         r"reaches the Eckart–Young floor $\sum_{i>r} \sigma_i^2 / d$;"),
        ("- B = 0 at the start makes the model equal to the base model; only B gets a gradient at step 0.",
         r"- $B = 0$ at the start makes the model equal to the base model; only $B$ gets a gradient at step 0."),
        ("- With Adam, α/r makes the early curves", r"- With Adam, $\alpha/r$ makes the early curves"),
        ("best lr falls as r grows.", r"best lr falls as $r$ grows."),
    ],
}

# Exercise texts are still being rewritten: these apply where found and are never required.
# Both the earlier and the current wording are listed.
OPTIONAL = {
    1: [
        ("returns the closest rank-r matrix to W, using", r"returns the closest rank-$r$ matrix to $W$, using"),
        ("the smallest r whose top-r singular values keep at least `frac` of Σσ²",
         r"the smallest $r$ whose top-$r$ singular values keep at least `frac` of $\sum_i \sigma_i^2$"),
        ("What is the largest rank r at which B·A for one such matrix",
         r"What is the largest rank $r$ at which $BA$ for one such matrix"),
        ("what is ‖W − W₂‖_F for W = diag(5, 4, 3, 2, 1) and W₂ its best rank-2 approximation?",
         r"what is $\lVert W - W_2 \rVert_F$ for $W = \operatorname{diag}(5, 4, 3, 2, 1)$ and $W_2$ its "
         r"best rank-2 approximation?"),
        ("the rank-r matrix closest to `W` (d × k) in the Frobenius norm",
         r"the rank-$r$ matrix closest to `W` ($d \times k$) in the Frobenius norm"),
        ("smallest r such that the top-r singular values keep at least `frac` of the energy Σσᵢ²",
         r"smallest $r$ such that the top-$r$ singular values keep at least `frac` of the energy $\sum_i \sigma_i^2$"),
        ("A LoRA update B·A for one d × k matrix W has a parameter count that grows with r.",
         r"A LoRA update $BA$ for one $d \times k$ matrix $W$ has a parameter count that grows with $r$."),
        ("the largest r (at most min(d, k)) at which B·A has *strictly fewer*",
         r"the largest $r$ (at most $\min(d, k)$) at which $BA$ has *strictly fewer*"),
        ("(0 if even r = 1 does not fit)", r"(0 if even $r = 1$ does not fit)"),
        ("count the entries of A (r × k) and B (d × r).", r"count the entries of $A$ ($r \times k$) and $B$ ($d \times r$)."),
    ],
    2: [
        ("re-running the sweep with α = 32.", r"re-running the sweep with $\alpha = 32$."),
        ("for x (n × k), W0 (d × k), B (d × r), A (r × k): the base output plus the scaled low-rank path. "
         "Bonus: never form the d × k matrix B·A.",
         r"for `x` ($n \times k$), `W0` ($d \times k$), `B` ($d \times r$), `A` ($r \times k$): the base "
         r"output plus the scaled low-rank path. Bonus: never form the $d \times k$ matrix $BA$."),
        ("the lowest loss ‖ΔW − ΔW*‖²_F / d a rank-r update can reach in our whitened setup, for "
         "ΔW* = `delta_w` (d × k).",
         r"the lowest loss $\lVert \Delta W - \Delta W^* \rVert_F^2 / d$ a rank-$r$ update can reach in our "
         r"whitened setup, for $\Delta W^*$ = `delta_w` ($d \times k$)."),
        ("At step 0 (B = 0, A random), which of A and B receives",
         r"At step 0 ($B = 0$, $A$ random), which of $A$ and $B$ receives"),
        ("After one step, B₁ = −lr·s·G·Aᵀ with G = ∂L/∂ΔW, so ΔW₁ = s·B₁·A. Which scale s makes the size "
         "of ΔW₁ independent of r:",
         r"After one step, $B_1 = -\text{lr} \cdot s \, G A^\top$ with $G = \partial L / \partial \Delta W$, "
         r"so $\Delta W_1 = s \, B_1 A$. Which scale $s$ makes the size of $\Delta W_1$ independent of $r$:"),
        ("(Hint: E[AᵀA] = (r / 3k)·I for A uniform in ±1/√k.)",
         r"(Hint: $\mathbb{E}[A^\top A] = \frac{r}{3k} I$ for $A$ uniform in $\pm 1/\sqrt{k}$.)"),
        ("compared with A's entries (≈ 0.07)? Which assumption of the α/r argument breaks?",
         r"compared with $A$'s entries ($\approx 0.07$)? Which assumption of the $\alpha/r$ argument breaks?"),
        ("for x (n × k), W0 (d × k), B (d × r), A (r × k): the base output x W0ᵀ plus the low-rank path, "
         "scaled by α/r where r is the rank of the update.",
         r"for `x` ($n \times k$), `W0` ($d \times k$), `B` ($d \times r$), `A` ($r \times k$): the base output "
         r"$x W_0^\top$ plus the low-rank path, scaled by $\alpha/r$ where $r$ is the rank of the update."),
        ("Bonus: never form the d × k matrix B·A.", r"Bonus: never form the $d \times k$ matrix $BA$."),
        ("**Hint:** read r off A's shape; α may be an int or a float.",
         r"**Hint:** read $r$ off `A`'s shape; $\alpha$ may be an int or a float."),
        ("the loss of an update ΔW is ‖ΔW − ΔW*‖²_F / d.",
         r"the loss of an update $\Delta W$ is $\lVert \Delta W - \Delta W^* \rVert_F^2 / d$."),
        ("the lowest loss any rank-r ΔW can reach, for ΔW* = `delta_w` (d × k),",
         r"the lowest loss any rank-$r$ $\Delta W$ can reach, for $\Delta W^*$ = `delta_w` ($d \times k$),"),
        ("For the loss L = ½ ‖x W0ᵀ + (α/r) x Aᵀ Bᵀ − y‖²_F (x: n × k, y: n × d, W0: d × k, A: r × k, "
         "B: d × r),",
         r"For the loss $L = \tfrac{1}{2} \lVert x W_0^\top + \tfrac{\alpha}{r} x A^\top B^\top - y \rVert_F^2$ "
         r"($x$: $n \times k$, $y$: $n \times d$, $W_0$: $d \times k$, $A$: $r \times k$, $B$: $d \times r$),"),
        ("= (∂L/∂A, ∂L/∂B)", r"$= (\partial L / \partial A, \partial L / \partial B)$"),
        ("at the start of training, when B = 0?", r"at the start of training, when $B = 0$?"),
        ("write G = ∂L/∂ŷ (n × d) for the output ŷ;",
         r"write $G = \partial L / \partial \hat y$ ($n \times d$) for the output $\hat y$;"),
        ("start from B = 0, A with entries uniform in ±1/√k.",
         r"start from $B = 0$, $A$ with entries uniform in $\pm 1/\sqrt{k}$."),
        ("After one step, B₁ = −lr·s·G·Aᵀ with G = ∂L/∂ΔW, so ΔW₁ = s·B₁·A. Derive how the size of ΔW₁ "
         "depends on r and on the scale s, and say which s — 1, α/r or α/√r — makes it independent of r.",
         r"After one step, $B_1 = -\text{lr} \cdot s \, G A^\top$ with $G = \partial L / \partial \Delta W$, "
         r"so $\Delta W_1 = s \, B_1 A$. Derive how the size of $\Delta W_1$ depends on $r$ and on the scale "
         r"$s$, and say which $s$ — $1$, $\alpha/r$ or $\alpha/\sqrt{r}$ — makes it independent of $r$."),
        ("(3–6 sentences; E[AᵀA] = (r / 3k)·I helps.)",
         r"(3–6 sentences; $\mathbb{E}[A^\top A] = \frac{r}{3k} I$ helps.)"),
    ],
}

FENCE = re.compile(r"^(```|~~~)")


class MissingText(Exception):
    pass


def split_code(text: str) -> list[tuple[bool, str]]:
    """Split markdown into (is_code, chunk): fenced blocks and 4-space indented lines are code."""
    chunks, in_fence = [], False
    for line in text.splitlines(keepends=True):
        fence = bool(FENCE.match(line.lstrip()))
        code = in_fence or fence or line.startswith("    ")
        if fence:
            in_fence = not in_fence
        if chunks and chunks[-1][0] == code:
            chunks[-1] = (code, chunks[-1][1] + line)
        else:
            chunks.append((code, line))
    return chunks


def pattern(old: str) -> re.Pattern:
    return re.compile(r"\s+".join(re.escape(word) for word in old.split()))


def replace_once_safe(text: str, old: str, new: str) -> tuple[str, bool]:
    """Replace `old` (any whitespace) by `new` in prose, leaving text that already is `new` alone."""
    keep = "\x00KEEP\x00"
    out, found = [], new in text
    for code, chunk in split_code(text):
        if not code:
            protected = chunk.replace(new, keep)
            protected, n = pattern(old).subn(lambda m: new, protected)
            found = found or n > 0
            chunk = protected.replace(keep, new)
        out.append(chunk)
    return "".join(out), found


def convert(nb, chapter: int, where: str, required: bool = True) -> int:
    """Apply the chapter's replacements to nb's markdown cells in memory; return how many cells
    changed. With `required`, every text of R[chapter] must be there (as Unicode or as TeX)."""
    cells = [c for c in nb.cells if c.cell_type == "markdown"]
    sources = [c.source for c in cells]
    pairs = [(old, new, required) for old, new in R[chapter]] + \
            [(old, new, False) for old, new in OPTIONAL.get(chapter, [])]
    for old, new, must in pairs:
        found = False
        for i, text in enumerate(sources):
            sources[i], hit = replace_once_safe(text, old, new)
            found = found or hit
        if must and not found:
            raise MissingText(f"{where}: expected text not found (nor its TeX form):\n  {old!r}\n"
                              f"The chapter changed: update tools/tex_math.py's list for chapter {chapter}.")
    changed = 0
    for cell, text in zip(cells, sources):
        if cell.source != text:
            cell.source, changed = text, changed + 1
    return changed


def notebooks(root: Path, chapter: int) -> list[Path]:
    """The chapter's notebooks, its source first: chapters/solutions/NN_*.ipynb when it exists
    (the student edition is built from it), else chapters/NN_*.ipynb."""
    found = []
    for folder in (root / "chapters" / "solutions", root / "chapters"):
        found += sorted(folder.glob(f"{chapter:02d}_*.ipynb"))
    return found


def main(argv=None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything would")
    parser.add_argument("--only", type=int, nargs="*", help="only these chapter numbers")
    parser.add_argument("--root", type=Path, default=root, help="the repository (default: this one)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    edits = []
    for chapter in R:
        paths = notebooks(root, chapter)
        if args.only and chapter not in args.only:
            continue
        if not paths:
            raise SystemExit(f"no chapters/{chapter:02d}_*.ipynb under {root}")
        for k, path in enumerate(paths):
            nb = nbformat.read(path, as_version=4)
            try:
                changed = convert(nb, chapter, str(path.relative_to(root)), required=k == 0)
            except MissingText as err:
                raise SystemExit(str(err)) from None
            edits.append((path, nb, changed))
    for path, nb, changed in edits:               # all checked before anything is written
        print(f"{path.relative_to(root)}: {changed} markdown cells {'would change' if args.check else 'changed'}")
        if changed and not args.check:
            tmp = path.with_suffix(".ipynb.tmp")
            nbformat.write(nb, tmp)
            tmp.replace(path)
    return 1 if args.check and any(c for _, _, c in edits) else 0


if __name__ == "__main__":
    sys.exit(main())
