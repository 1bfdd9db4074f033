"""Verdicts that survive the spread: paired comparisons over the same victims or seeds.

An attack's PSNR varies a lot from victim to victim (against Ours some victims keep much of their
image and others nothing; the attack tables hold one row per victim), so "ours < baseline" decided
on two medians can flip with the victims drawn. :func:`paired_comparison` compares two defenses on
the *same* victims: the per-victim differences, their median and inter-quartile range, how often
one side wins, and the exact one-sided Wilcoxon signed-rank p-value. With ``n`` victims and no
ties the smallest possible one-sided p is ``2^-n``: 4 victims can never reach ``p < 0.05`` (the minimum is 0.0625), 8 can.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

from .errors import FedshieldError

__all__ = ["PSNR_CAP", "paired_comparison", "paired_victims", "wins_text"]

#: a PSNR above this is an exact reconstruction (float32 rounding); paired tests cap at it, which
#: keeps every victim's order and makes an infinite PSNR (MSE 0) comparable
PSNR_CAP = 100.0


def paired_comparison(a: Sequence[float], b: Sequence[float], *, alternative: str = "less",
                      alpha: float = 0.05) -> dict:
    """``a`` against ``b`` measured on the same victims (``a[i]`` and ``b[i]`` the same victim).

    Returns ``n``, ``median_diff`` (of ``a - b``), ``iqr_diff`` (25th and 75th percentiles),
    ``wins`` (victims where ``a < b`` for ``alternative="less"``, ``a > b`` for ``"greater"``),
    ``p`` (exact Wilcoxon signed-rank, one-sided in the direction of ``alternative``; 1.0 when every
    difference is 0) and ``verdict`` (``p < alpha``)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise FedshieldError(f"a and b must be paired 1-D sequences of the same length, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise FedshieldError("a and b must be finite (NaN or Inf in a paired comparison)")
    if alternative not in ("less", "greater"):
        raise FedshieldError(f"alternative must be 'less' or 'greater', got {alternative!r}")
    d = x - y
    if np.all(d == 0):
        p = 1.0
    else:
        p = float(stats.wilcoxon(d, alternative=alternative, method="exact" if d.size <= 25 else "auto",
                                 zero_method="wilcox").pvalue)
    wins = int((d < 0).sum() if alternative == "less" else (d > 0).sum())
    q25, q75 = np.percentile(d, [25, 75])
    return {"n": int(d.size), "median_diff": float(np.median(d)), "iqr_diff": (float(q25), float(q75)),
            "wins": wins, "p": p, "verdict": bool(p < alpha)}


def paired_victims(a, b, *, alternative: str = "less", metric: str = "psnr", cap: float = PSNR_CAP,
                   alpha: float = 0.05) -> dict | None:
    """:func:`paired_comparison` of two attack cells' per-victim tables ``a`` and ``b`` (DataFrames
    with columns ``victim`` and ``metric``), matched by victim (the same test image) on the victims
    both have; values capped at ``cap`` (:data:`PSNR_CAP`: an exact reconstruction's infinite PSNR
    keeps its rank). ``None`` when they share no victim."""
    for name, t in (("a", a), ("b", b)):
        missing = {"victim", metric} - set(getattr(t, "columns", ()))
        if missing:
            raise FedshieldError(f"paired_victims: {name} needs the columns {sorted(missing)}")
    j = a[["victim", metric]].merge(b[["victim", metric]], on="victim", suffixes=("_a", "_b"))
    if not len(j):
        return None
    x, y = (j[f"{metric}_{k}"].astype(float).clip(upper=cap).tolist() for k in ("a", "b"))
    return paired_comparison(x, y, alternative=alternative, alpha=alpha)


def wins_text(c: dict | None) -> str:
    """A paired comparison in words: ``"7/8 victims, p = 0.0078"`` (``"n/a"`` for None)."""
    return "n/a" if c is None else f"{c['wins']}/{c['n']} victims, p = {c['p']:.3g}"
