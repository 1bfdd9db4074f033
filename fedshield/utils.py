"""Small shared helpers: generators, the eval-mode context manager, input checks.

``param_sizes``, ``flatten`` and ``unflatten`` live in :mod:`fedshield.params` (the flat-vector
layout) and are re-exported here because notebooks import them from ``fedshield.utils``.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from typing import Iterator

import torch
from torch import Tensor, nn

from .errors import FedshieldError
from .params import flatten, param_sizes, unflatten  # noqa: F401  (re-exported)


def make_generator(seed: int | None = None, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator``: seeded from ``seed`` when given (reproducible experiments),
    otherwise from OS entropy (``secrets``), so that nobody can predict the defense's noise."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) if seed is not None else secrets.randbits(63))
    return g


def book_threads() -> int:
    """Threads for the book's notebooks: ``OMP_NUM_THREADS`` when set (``make test-variants`` checks
    the notebooks with 1 and 2), else 2 (the book's machine), never more than the CPUs."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    n = int(env) if env.isdigit() and int(env) > 0 else 2
    return max(1, min(n, os.cpu_count() or 1))


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(model):`` runs the block with ``model.eval()`` (BatchNorm on running
    statistics, Dropout off) and restores the previous train/eval mode afterwards, also when the
    block raises."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def check_int(v, name: str, lo: int = 1) -> int:
    """``v`` as an int >= ``lo`` (integral floats accepted, bools refused)."""
    try:
        ok = not isinstance(v, bool) and float(v) == int(v)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise FedshieldError(f"{name} must be an integer, got {v!r}")
    if int(v) < lo:
        raise FedshieldError(f"{name} must be >= {lo}, got {int(v)}")
    return int(v)


def check_finite(x: Tensor, name: str) -> None:
    """Raise one clear error when ``x`` holds NaN or Inf.

    Fast path: a sum is finite only if every term is (a NaN or an infinity propagates; +inf and
    -inf give NaN), so one reduction decides the common case; only a non-finite sum (a non-finite
    entry, or finite entries summing past the float range) pays for the element-wise test, and an
    overflowing sum of finite entries is not an error. Faster than ``isfinite(x).all()`` on a round of
    LeNet updates (``benchmarks/bench_perturb.py`` prints the ratio)."""
    if x.numel() == 0 or not x.is_floating_point() or bool(torch.isfinite(x.sum())):
        return
    if not torch.isfinite(x).all():
        raise FedshieldError(f"{name} contains NaN or Inf")


def check_ratio(ratio: float, name: str = "ratio") -> None:
    if not (0.0 < float(ratio) <= 1.0):
        raise FedshieldError(f"{name} must be in (0, 1], got {ratio}")


def check_jitter(jitter: float) -> float:
    """A slice-boundary jitter (``PaperDefense(jitter=...)``): a number in ``[0, 1)``."""
    if not 0.0 <= float(jitter) < 1.0:
        raise FedshieldError(f"jitter must be in [0, 1), got {jitter}")
    return float(jitter)


def check_nonneg(x: float, name: str) -> None:
    if not float(x) >= 0.0:
        raise FedshieldError(f"{name} must be >= 0, got {x}")
