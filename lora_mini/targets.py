r"""Which modules get LoRA: one parser for target specs, one matcher, clear errors.

    parse_targets("q_proj,v_proj")     -> ["q_proj", "v_proj"]     module-name suffixes
    parse_targets(["q_proj", "v_proj"]) -> ["q_proj", "v_proj"]
    parse_targets(r".*\.mlp\..*_proj") -> r".*\.mlp\..*_proj"       a regex (full match)
    parse_targets("all-linear")        -> "all-linear"             every Linear/Conv1D but the head
    find_targets(model, spec)          -> the module names, or ValueError naming the closest real names

A string is a regex only if it has a regex character (. * + ? [ ] ( ) { } | ^ $ \); otherwise
it is a comma-separated list of names. A name matches a module whose name equals it or ends
with "." + name (as PEFT). Every name of a list must match at least one module.
"""
from __future__ import annotations

import difflib
import re

import torch.nn as nn

from .layers import LINEAR_TYPES, LoRALinear

REGEX_CHARS = frozenset(".*+?[](){}|^$\\")
EXAMPLES = "module-name suffixes (e.g. 'q_proj,v_proj' or ['q_proj', 'v_proj']), a regex, or 'all-linear'"


def _names(items) -> list[str]:
    names = []
    for t in items:
        if not isinstance(t, str):
            raise TypeError(f"target_modules: every name must be a string, got {t!r} ({type(t).__name__})")
        t = t.strip()
        if not t or set(t) & set(", \t\n"):
            raise ValueError(f"target_modules: {t!r} is not a module name; use {EXAMPLES}")
        names.append(t)
    if not names:
        raise ValueError(f"target_modules is empty; use {EXAMPLES}")
    return names


def parse_targets(spec) -> str | list[str]:
    """A target spec (string, list, tuple or set) -> "all-linear", a regex string, or a list of names."""
    if isinstance(spec, str):
        s = spec.strip()
        if not s:
            raise ValueError(f"target_modules is empty; use {EXAMPLES}")
        if s == "all-linear":
            return s
        if set(s) & REGEX_CHARS:
            try:
                re.compile(s)
            except re.error as e:
                raise ValueError(f"target_modules {s!r} is not a valid regex ({e}); use {EXAMPLES}") from None
            return s
        parts = s.split(",")
        if any(not p.strip() for p in parts):
            raise ValueError(f"target_modules {spec!r} has an empty name; write e.g. 'q_proj,v_proj'")
        return _names(parts)
    if isinstance(spec, (list, tuple, set, frozenset)):
        return _names(sorted(spec) if isinstance(spec, (set, frozenset)) else spec)
    raise TypeError(f"target_modules must be {EXAMPLES}; got {type(spec).__name__}")


def matches(name: str, targets) -> bool:
    """Does module `name` match a parsed spec (a regex string or a list of suffixes)?"""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def closest_names(target: str, names: list[str], n: int = 3) -> list[str]:
    """The real module names nearest to `target`: leaf names (never layer indices), or full names for a dotted target."""
    leaves = sorted({m.split(".")[-1] for m in names if not m.split(".")[-1].isdigit()})
    pool = [m for m in names if not m.split(".")[-1].isdigit()] if "." in target else leaves
    return difflib.get_close_matches(target, pool, n=n, cutoff=0.4)


def _linear_leaves(model: nn.Module) -> list[str]:
    return sorted({n.split(".")[-1] for n, m in model.named_modules() if n and isinstance(m, LINEAR_TYPES)})


def _no_match_error(model: nn.Module, targets, missing: list[str], names: list[str]) -> ValueError:
    what = type(model).__name__
    if isinstance(targets, str):
        return ValueError(f"target_modules {targets!r} (a regex, full match) matched no module in {what}. "
                          f"Its linear layers are named {_linear_leaves(model)}. Use {EXAMPLES}.")
    hints = []
    for t in missing:
        close = closest_names(t, names)
        hints.append(f"{t!r} (closest: {', '.join(map(repr, close))})" if close else repr(t))
    return ValueError(f"target_modules: {len(missing)} of {len(targets)} names match no module in {what}: "
                      f"{'; '.join(hints)}. Its linear layers are named {_linear_leaves(model)}.")


def _shared_with(model: nn.Module, name: str) -> str | None:
    """Another module holding the same weight tensor as module `name` (tied embeddings), if any."""
    w = getattr(model.get_submodule(name), "weight", None)
    if w is None:
        return None
    for other, m in model.named_modules():
        if other != name and any(p is w for p in m.parameters(recurse=False)):
            return other
    return None


def head_names(model: nn.Module) -> set[str]:
    """Names of the output head (excluded from "all-linear", as in PEFT)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {n for n, m in model.named_modules() if head is not None and m is head}
    return names or {n for n, _ in model.named_modules() if n.split(".")[-1] == "lm_head"}


def _check_found(model: nn.Module, found: list[str], modules: dict, inside_lora: set) -> None:
    for n in found:
        m = modules[n]
        if isinstance(m, LoRALinear) or n in inside_lora:
            raise ValueError(f"module {n!r} already has LoRA (applied twice?). Call merge_and_unload(model) "
                             "or start from a fresh model before applying LoRA again.")
        if not isinstance(m, LINEAR_TYPES):
            raise TypeError(f"target {n!r} is a {type(m).__name__}; LoRA here wraps only nn.Linear and GPT-2 "
                            "Conv1D. Target its linear sub-layers instead (e.g. 'q_proj', 'up_proj').")
        tied = _shared_with(model, n)
        if tied is not None:
            raise ValueError(f"module {n!r} shares its weight with {tied!r} (tied embeddings): merging B·A into it "
                             f"would change {tied!r} too. Leave {n!r} out, or untie it first: "
                             f"model.{n}.weight = torch.nn.Parameter(model.{n}.weight.detach().clone()).")


def find_targets(model: nn.Module, targets) -> list[str]:
    """Names of the modules that `targets` selects (any form parse_targets takes).

    Raises ValueError / TypeError, before anything changes, for a bad spec, a listed name that
    matches nothing (with the closest real names), a module that already has LoRA, a module that
    is not linear, or a weight tied to another module.
    """
    targets = parse_targets(targets)
    modules = dict(model.named_modules())
    lora = {n for n, m in modules.items() if isinstance(m, LoRALinear)}
    inside_lora = {n for n in modules if any(n.startswith(p + ".") for p in lora)}
    names = [n for n in modules if n and n not in inside_lora]
    if targets == "all-linear":
        heads = head_names(model)
        found = [n for n in names if isinstance(modules[n], LINEAR_TYPES + (LoRALinear,)) and n not in heads]
        if not found:
            raise ValueError("'all-linear' found no nn.Linear or Conv1D layer (other than the output head)")
    else:
        found = [n for n in names if matches(n, targets)]
        # a target naming the frozen layer inside an existing LoRA layer is "LoRA applied twice"
        found += [n for n in sorted(inside_lora) if matches(n, targets)]
        missing = [] if isinstance(targets, str) else [t for t in targets if not any(matches(n, [t]) for n in found)]
        if not found or missing:
            raise _no_match_error(model, targets, missing or ([] if isinstance(targets, str) else targets), names)
    _check_found(model, found, modules, inside_lora)
    return found
