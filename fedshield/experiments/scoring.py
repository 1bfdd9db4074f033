"""Scoring a reconstruction against what an attacker knows without the update.

A PSNR means little on its own: near the floor, a constant image that ignores the shared update
can score more than an attack that ran away from a noisy target. Every attack row is therefore scored by

- ``psnr_floor``: the PSNR of the best guess made without the update (the better of the best
  constant image and the public class mean, :func:`fedshield.metrics.psnr_floor`; the public set
  is the dataset's training split, the victims come from its test split);
- ``psnr_gain = psnr - psnr_floor``: what the attack got out of the update (negative: the attack
  failed, it did not measure the defense);
- ``rank`` and ``identified``: the rank of the victim among itself and ``N - 1 = 99`` other test
  images of its class by :func:`fedshield.metrics.identification_rank` (1 = identified, chance
  ``1/N``). The candidates are a seeded draw that depends only on the victim's test index, so
  every attack on the same victim is judged against the same crowd.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..data import load_dataset
from ..errors import FedshieldError
from ..metrics import identification_rank, psnr, psnr_floor
from ..utils import make_generator
from .attack import convert_images

__all__ = ["N_CANDIDATES", "SCORE_COLUMNS", "candidates_for", "score_reconstruction"]

#: the crowd a victim is hidden in: itself and 99 other test images of its class (chance 1 %)
N_CANDIDATES = 100
#: the columns :func:`score_reconstruction` adds to an attack row
SCORE_COLUMNS = ("psnr_floor", "psnr_gain", "rank", "identified", "n_candidates")


@lru_cache(maxsize=8)
def _split(dataset: str, split: str, shape: tuple, data_dir) -> tuple[Tensor, Tensor]:
    x, y = load_dataset(dataset, split, data_dir)
    if tuple(x.shape[1:]) != tuple(shape):
        like = {(1, 28, 28): "mnist", (3, 32, 32): "cifar10"}.get(tuple(shape))
        if like is None:
            raise FedshieldError(f"no dataset has images of shape {shape}")
        x = convert_images(x, like)
    return x, y


def candidates_for(dataset: str, index: int, label: int, *, n: int = N_CANDIDATES, shape=None,
                   data_dir=None) -> Tensor:
    """``[n - 1, C, H, W]``: other test images of class ``label`` (never test image ``index``), a
    draw seeded by ``index`` alone; all of them when the class has fewer (the CIFAR-100 subset)."""
    if int(n) < 2:
        raise FedshieldError(f"n must be >= 2 (the victim and at least one other image), got {n}")
    xte, yte = _split(dataset, "test", tuple(shape) if shape is not None else _native_shape(dataset, data_dir), data_dir)
    pool = torch.nonzero(yte == int(label)).flatten()
    pool = pool[pool != int(index)]
    if len(pool) == 0:
        raise FedshieldError(f"class {label} of {dataset} has no other test image to hide the victim among")
    pick = torch.randperm(len(pool), generator=make_generator(int(index) * 7919 + 17))[:int(n) - 1]
    return xte[pool[pick]]


@lru_cache(maxsize=8)
def _class_means(dataset: str, shape: tuple, data_dir) -> tuple[Tensor, Tensor]:
    """The public class means (training split) as a public set of one image per class: the
    class-mean guess of :func:`fedshield.metrics.floor_images` is the same from it as from the
    whole split, without re-reading 50-60k images for every victim."""
    x, y = _split(dataset, "train", shape, data_dir)
    classes = torch.unique(y)
    return torch.stack([x[y == c].mean(0) for c in classes]), classes


@lru_cache(maxsize=8)
def _native_shape(dataset: str, data_dir) -> tuple:
    x, _ = load_dataset(dataset, "test", data_dir)
    return tuple(x.shape[1:])


def score_reconstruction(dataset: str, x_true, x_rec, index, label, *, psnr_value: Optional[float] = None,
                         n: int = N_CANDIDATES, shape=None, data_dir=None) -> dict:
    """The :data:`SCORE_COLUMNS` of one attacked victim: ``x_true`` / ``x_rec`` ``[B, C, H, W]``
    (or ``[C, H, W]``), its test ``index`` and ``label`` (one each, or ``B`` each). ``psnr_value``:
    the attack's own PSNR (default: recomputed from ``x_rec``). For ``B > 1`` the floor and the
    PSNR are means over the images, ``rank`` the median and ``identified`` the fraction.

    ``x_true=None`` takes the victim from the test split by ``index`` (in ``shape``, default the
    dataset's own); ``x_rec=None`` (a row stored without its reconstruction) leaves ``rank`` and
    ``identified`` NaN and needs ``psnr_value``."""
    idx = np.atleast_1d(np.asarray(index)).astype(int).tolist()
    lab = np.atleast_1d(np.asarray(label)).astype(int).tolist()
    if x_true is None:
        shape = tuple(shape) if shape is not None else _native_shape(dataset, data_dir)
        xt = _split(dataset, "test", shape, data_dir)[0][torch.tensor(idx)]
    else:
        xt = torch.as_tensor(np.asarray(x_true, dtype=np.float32))
        xt = xt.unsqueeze(0) if xt.dim() == 3 else xt
    if xt.dim() != 4:
        raise FedshieldError(f"x_true must be [C, H, W] or [B, C, H, W], got shape {tuple(xt.shape)}")
    if not (len(idx) == len(lab) == xt.shape[0]):
        raise FedshieldError(f"{xt.shape[0]} images but {len(idx)} indices and {len(lab)} labels")
    shape = tuple(xt.shape[1:])
    public = _class_means(dataset, shape, data_dir)
    floor = float(psnr_floor(xt, label=torch.tensor(lab), public=public).mean())
    if x_rec is None:
        if psnr_value is None:
            raise FedshieldError("without a reconstruction the attack's psnr_value is needed")
        return {"psnr_floor": floor, "psnr_gain": float(psnr_value) - floor, "rank": float("nan"),
                "identified": float("nan"), "n_candidates": int(n)}
    xr = torch.as_tensor(np.asarray(x_rec, dtype=np.float32))
    xr = xr.unsqueeze(0) if xr.dim() == 3 else xr
    per = [candidates_for(dataset, i, c, n=n, shape=shape, data_dir=data_dir) for i, c in zip(idx, lab)]
    m = min(len(c) for c in per)
    cands = torch.stack([c[:m] for c in per])
    rank = identification_rank(xr, xt, cands).to(torch.float64)
    p = float(psnr(xr, xt).mean()) if psnr_value is None else float(psnr_value)
    return {"psnr_floor": floor, "psnr_gain": p - floor, "rank": float(rank.median()),
            "identified": float((rank == 1).to(torch.float64).mean()), "n_candidates": int(cands.shape[1]) + 1}
