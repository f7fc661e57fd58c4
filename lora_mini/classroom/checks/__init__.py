"""Helpers for the chapters' checks (chNN.py): one test per exercise, two ways to call it.

Write a test that raises AssertionError with a hint naming what is wrong, and returns the ✓ line:

    @exercise("1.1")
    def best_rank_r_test(best_rank_r):
        ...
        return "best_rank_r reaches the Eckart–Young error"

`exercise` defines `check_1_1` (prints ✓, a hint, or "not attempted yet"; never raises) and
`grade_1_1` (raises; the grader calls it between the hidden-test markers) in the test's module.
Pass `strict=` a second test to make `grade_N_k` stricter than the visible check.

Rules for a check: try several inputs (α, r, shapes, dtypes) so a hard-coded value or an unused
argument fails; name the usual mistakes in the hint (without printing the answer); compute what you
expect from independent means (the library function with the student blocked from calling it,
autograd, a measurement, the shapes of a real model), never a literal answer; accept every right
form (`number()` for ints/floats/numpy/0-d tensors; `close()` with a tolerance for the dtype).
"""
import contextlib
import functools
import math
import sys
from pathlib import Path

import torch

PACKAGE = Path(__file__).resolve().parents[2]          # lora_mini/
CLASSROOM = Path(__file__).resolve().parents[1]


def exercise(key, strict=None):
    """Decorator: register test(answer) as check_<key> and grade_<key> in the caller's module."""
    tag = key.replace(".", "_")

    def wrap(test):
        module = sys.modules[test.__module__]

        @functools.wraps(test)
        def check(answer, *args, **kwargs):
            try:
                msg = test(answer, *args, **kwargs)
            except NotImplementedError:
                print(f"Exercise {key}: not attempted yet (replace the `raise NotImplementedError` line).")
                return
            except AssertionError as err:
                print(f"✗ Exercise {key}: {err}")
                return
            except Exception as err:   # the answer crashed: say so, never raise in a check cell
                print(f"✗ Exercise {key}: your answer raised {type(err).__name__}: {err}")
                return
            print(f"✓ Exercise {key}: {msg}")

        def grade(answer, *args, **kwargs):
            test(answer, *args, **kwargs)
            if strict is not None:
                strict(answer, *args, **kwargs)

        check.__name__, grade.__name__ = f"check_{tag}", f"grade_{tag}"
        check.__doc__ = f"Exercise {key}'s self-check: prints ✓ or a hint; never raises.\n\n{test.__doc__ or ''}"
        grade.__doc__ = f"Exercise {key}'s grader test: raises AssertionError if the answer is wrong."
        setattr(module, check.__name__, check)
        setattr(module, grade.__name__, grade)
        module.__dict__.setdefault("__all__", []).extend([check.__name__, grade.__name__])
        return test
    return wrap


def number(x, what="your answer"):
    """x as a Python float, for any right form: int, float, numpy scalar, 0-d or 1-element tensor."""
    if isinstance(x, bool) or x is None:
        raise AssertionError(f"{what} should be a number, got {x!r}")
    if torch.is_tensor(x):
        assert x.numel() == 1, f"{what} should be one number, got a tensor of shape {tuple(x.shape)}"
        return float(x.item())
    try:
        return float(x)
    except (TypeError, ValueError):
        raise AssertionError(f"{what} should be a number, got {type(x).__name__}") from None


def integer(x, what="your answer"):
    """x as a Python int; 12, 12.0, np.int64(12), torch.tensor(12) are all 12. 12.5 is refused."""
    v = number(x, what)
    assert math.isfinite(v) and v == round(v), f"{what} should be a whole number, got {v}"
    return int(round(v))


def tensor(x, what="your function's result"):
    assert torch.is_tensor(x), f"{what} should be a torch tensor, got {type(x).__name__}"
    return x


TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def close(got, want, what="the result", tol=None):
    """Assert got ≈ want (same shape), relative to want's size, with a tolerance for the dtype."""
    got = tensor(got, what)
    assert tuple(got.shape) == tuple(want.shape), f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    tol = tol if tol is not None else TOL.get(want.dtype, 1e-5)
    scale = max(1.0, float(want.double().abs().max()))
    err = float((got.detach().double() - want.detach().double()).abs().max())
    assert err <= tol * scale, f"{what} is off by up to {err:.3g}"
    return err


def same(got, want, tol=None):
    """True when got has want's shape and values (no assertion): for spotting a known mistake."""
    try:
        close(got, want, tol=tol)
        return True
    except AssertionError:
        return False


@contextlib.contextmanager
def no_library(allow=()):
    """Inside, any call into lora_mini (except the classroom and the modules in allow) is recorded;
    on exit an AssertionError says which function was called. For exercises that ask you to build
    something yourself: a check wraps the student's function call in it."""
    allowed = [str(CLASSROOM)] + [str(PACKAGE / m) for m in allow]
    called = []

    def profile(frame, event, arg):
        if event == "call":
            f = frame.f_code.co_filename
            if f.startswith(str(PACKAGE)) and not any(f.startswith(a) for a in allowed):
                called.append(f"{Path(f).stem}.{frame.f_code.co_name}")

    old = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(old)
    assert not called, (f"this exercise asks you to write it yourself, but your code called lora_mini's "
                        f"{called[0]}: use torch only")


@contextlib.contextmanager
def no_autograd():
    """Inside, autograd's backward is unavailable (for exercises that ask for gradients by hand)."""
    def refuse(*a, **k):
        raise AssertionError("compute the gradients by hand (matrix products), without .backward() or torch.autograd")
    saved = torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad
    torch.Tensor.backward = torch.autograd.backward = torch.autograd.grad = refuse
    try:
        yield
    finally:
        torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad = saved


def call(fn, *args, allow=(), what=None):
    """fn(*args) with lora_mini blocked, on copies of tensor arguments; asserts fn did not modify them."""
    assert callable(fn), f"pass your function itself (e.g. check(my_function)), not {type(fn).__name__}"
    copies = [a.detach().clone() if torch.is_tensor(a) else a for a in args]
    with no_library(allow):
        out = fn(*args)
    for a, c in zip(args, copies):
        if torch.is_tensor(a):
            assert torch.equal(a, c), f"{what or fn.__name__} modified its input in place; return a new tensor"
    return out


def rand(*shape, seed=0, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)
