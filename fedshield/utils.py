"""Small shared helpers: generators, flattening parameters, input checks."""
from __future__ import annotations

import os
import secrets
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from .errors import FedshieldError


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


def param_sizes(model: nn.Module) -> list[int]:
    """Number of entries of each trainable parameter tensor, in ``model.parameters()`` order."""
    return [p.numel() for p in model.parameters() if p.requires_grad]


def flatten(tensors: Iterable[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector (the 'flattened gradient' of the paper)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector back into tensors shaped like ``like``."""
    out, i = [], 0
    for t in like:
        n = t.numel()
        out.append(flat[i:i + n].view_as(t))
        i += n
    if i != flat.numel():
        raise FedshieldError(f"flat vector has {flat.numel()} entries, the tensors need {i}")
    return out


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
    """Raise one clear error when ``x`` holds NaN or Inf."""
    if not torch.isfinite(x).all():
        raise FedshieldError(f"{name} contains NaN or Inf")


def check_ratio(ratio: float, name: str = "ratio") -> None:
    if not (0.0 < float(ratio) <= 1.0):
        raise FedshieldError(f"{name} must be in (0, 1], got {ratio}")


def check_nonneg(x: float, name: str) -> None:
    if not float(x) >= 0.0:
        raise FedshieldError(f"{name} must be >= 0, got {x}")
