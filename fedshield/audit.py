"""An empirical audit of the Gaussian mechanism on a clipped update (beyond the paper).

:mod:`fedshield.accounting` says which (epsilon, delta) the noise *should* give. The audit measures
how much privacy an attacker demonstrably *breaks*: it runs the mechanism (the DP-G baseline's
Gaussian noise on an update clipped by :func:`fedshield.defense.clip`) many times on two
neighbouring updates of one client and turns the best distinguishing test into a statistically
valid lower bound on epsilon (Jagielski, Ullman and Oprea, "Auditing differentially private machine
learning", NeurIPS 2020; Nasr et al., "Adversary instantiation", IEEE S&P 2021). A correct
accounting has ``lower bound <= computed epsilon``; a mechanism that adds less noise than it claims
is caught by a lower bound above its claimed epsilon.

- **Neighbours.** The worst case of the accounting's sensitivity ``2 C``: two updates in opposite
  directions, beyond the clipping bound (:func:`worst_case_pair`), so that their clipped versions
  sit at ``+C v`` and ``-C v`` and ``||clip(u1) - clip(u0)|| = 2 C``.
- **Test.** The likelihood ratio of ``N(clip(u0), s^2 I)`` against ``N(clip(u1), s^2 I)`` is a
  monotone function of the projection ``T = <y, e>`` of the output ``y`` on
  ``e = (u1 - u0) / ||u1 - u0||``; the test says "u1" when ``T > t``. Its false-positive rate is
  ``FPR(t) = P(T > t | u0)``, its false-negative rate ``FNR(t) = P(T <= t | u1)``. ``T`` is
  one-dimensional Gaussian, so :func:`projected_samples` draws it directly (the full
  ``P``-dimensional mechanism, :func:`clip_and_noise` and :func:`project`, gives the same
  distribution; the tests check it).
- **Bound.** (epsilon, delta)-DP forces, for every rejection region ``S = {T > t}``,
  ``1 - FNR <= e^eps FPR + delta`` and ``1 - FPR <= e^eps FNR + delta``. With ``FPR_u``, ``FNR_u``
  one-sided Clopper-Pearson upper confidence bounds on the two rates (counts out of ``n`` trials
  from each side), the audit reports

      eps_lb = max over t of max( log((1 - delta - FNR_u(t)) / FPR_u(t)),
                                  log((1 - delta - FPR_u(t)) / FNR_u(t)) ),  floored at 0,

  over a grid of ``m`` thresholds fixed before sampling (in units of the *claimed* noise std).
  Each of the ``2 m`` upper bounds is taken at level ``alpha / (2 m)`` (Bonferroni), so with
  probability at least ``1 - alpha`` every one holds at once and ``eps_lb`` is a valid lower bound
  on the mechanism's true epsilon at ``delta``, the maximum over thresholds included.

With ``n`` trials a side, no audit certifies more than about ``log(n / log(2 m / alpha))``: the
smallest upper bound a rate can have is that of zero events. The bound is tight only where the
optimal threshold's rates are well above ``1 / n``: small ``mu`` audits close to the accounting,
large ``mu`` needs many more trials.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from scipy.stats import beta as beta_dist
from torch import Tensor

from .accounting import gdp_epsilon
from .defense import clip
from .errors import FedshieldError


def _positive(name: str, x: float) -> float:
    x = float(x)
    if not math.isfinite(x) or x <= 0:
        raise FedshieldError(f"{name} must be a positive finite number, got {x}")
    return x


def _count(name: str, n: int, low: int = 1) -> int:
    if isinstance(n, bool) or int(n) != n or n < low:
        raise FedshieldError(f"{name} must be an integer >= {low}, got {n}")
    return int(n)


def worst_case_pair(clip_norm: float, dim: int, *, generator: torch.Generator, scale: float = 2.0) -> tuple[Tensor, Tensor]:
    """Two neighbouring updates ``u0 = -scale C v``, ``u1 = +scale C v`` (float64 ``[dim]``) for a
    random unit vector ``v`` drawn from ``generator``: opposite directions, ``scale >= 1`` times the
    clipping bound ``C``, so clipping puts them at distance exactly ``2 C`` (the accounting's
    sensitivity)."""
    c = _positive("clip_norm", clip_norm)
    dim = _count("dim", dim)
    if not float(scale) >= 1.0:
        raise FedshieldError(f"scale must be >= 1 (updates at or beyond the clipping bound), got {scale}")
    v = torch.randn(dim, generator=generator, dtype=torch.float64)
    v = v / v.norm()
    return -float(scale) * c * v, float(scale) * c * v


def clip_and_noise(update: Tensor, clip_norm: float, noise_std: float, trials: int, *,
                   generator: torch.Generator) -> Tensor:
    """``trials`` independent outputs ``clip(update, C) + N(0, noise_std^2 I)`` of the mechanism,
    ``[trials, P]`` (the update's dtype)."""
    if not isinstance(update, Tensor) or update.dim() != 1:
        raise FedshieldError("update must be a flat [P] tensor")
    s = _positive("noise_std", noise_std)
    trials = _count("trials", trials)
    c = clip(update, _positive("clip_norm", clip_norm))
    z = torch.randn((trials, c.numel()), generator=generator, dtype=c.dtype)
    return c + s * z


def _direction(u0: Tensor, u1: Tensor) -> Tensor:
    if not (isinstance(u0, Tensor) and isinstance(u1, Tensor)) or u0.shape != u1.shape or u0.dim() != 1:
        raise FedshieldError("u0 and u1 must be flat [P] tensors of one shape")
    d = (u1 - u0).to(torch.float64)
    n = d.norm()
    if not n > 0:
        raise FedshieldError("u0 and u1 must differ")
    return d / n


def project(outputs: Tensor, u0: Tensor, u1: Tensor) -> Tensor:
    """The test statistic ``T = <y, (u1 - u0) / ||u1 - u0||>`` of each output row ``y`` (float64)."""
    e = _direction(u0, u1)
    if not isinstance(outputs, Tensor) or outputs.dim() != 2 or outputs.shape[1] != e.numel():
        raise FedshieldError(f"outputs must be [trials, {e.numel()}]")
    return outputs.to(torch.float64) @ e


def projected_samples(u0: Tensor, u1: Tensor, clip_norm: float, noise_std: float, trials: int, *,
                      generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(T0, T1)``, ``trials`` draws each of the statistic :func:`project` of the mechanism's
    output on ``u0`` and on ``u1``, sampled in one dimension: ``<clip(u_b), e> + noise_std Z``
    (the projection of isotropic Gaussian noise on a unit vector is ``N(0, noise_std^2)``)."""
    e = _direction(u0, u1)
    s = _positive("noise_std", noise_std)
    trials = _count("trials", trials)
    c = _positive("clip_norm", clip_norm)
    p0 = float(clip(u0.to(torch.float64), c) @ e)
    p1 = float(clip(u1.to(torch.float64), c) @ e)
    z = torch.randn((2, trials), generator=generator, dtype=torch.float64)
    return p0 + s * z[0], p1 + s * z[1]


def clopper_pearson_upper(k, n: int, level: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper confidence bound at confidence ``1 - level`` on a rate with
    ``k`` events in ``n`` trials (``k`` an array): ``Beta^-1(1 - level; k + 1, n - k)``, 1 where
    ``k = n``."""
    k = np.asarray(k, dtype=np.float64)
    n = _count("n", n)
    if not 0 < float(level) < 1:
        raise FedshieldError(f"level must be in (0, 1), got {level}")
    if (k < 0).any() or (k > n).any():
        raise FedshieldError("event counts must lie in [0, n]")
    out = np.ones_like(k)
    m = k < n
    out[m] = beta_dist.ppf(1.0 - float(level), k[m] + 1.0, n - k[m])
    return out


def epsilon_lower_bound(t0: Tensor, t1: Tensor, delta: float, thresholds, *, alpha: float = 0.05) -> dict:
    """The audit's lower bound on epsilon at ``delta`` (module docstring) from statistics ``t0``
    (outputs on ``u0``) and ``t1`` (on ``u1``), same number of trials each, over ``thresholds``
    fixed before sampling, at confidence ``1 - alpha`` (Bonferroni over the ``2 m`` rate bounds).

    Returns ``eps_lower_bound``, the ``threshold`` reaching it and its ``fpr``, ``fnr`` (observed)
    and ``fpr_upper``, ``fnr_upper`` (Clopper-Pearson)."""
    if not 0 < float(delta) < 1:
        raise FedshieldError(f"delta must be in (0, 1), got {delta}")
    if not 0 < float(alpha) < 1:
        raise FedshieldError(f"alpha must be in (0, 1), got {alpha}")
    if t0.dim() != 1 or t1.shape != t0.shape or t0.numel() == 0:
        raise FedshieldError("t0 and t1 must be non-empty [n] tensors of one length")
    th = torch.as_tensor(np.asarray(thresholds, dtype=np.float64)).flatten()
    if th.numel() == 0 or not bool(torch.isfinite(th).all()):
        raise FedshieldError("thresholds must be a non-empty set of finite numbers")
    n = t0.numel()
    s0, s1 = torch.sort(t0.to(torch.float64)).values, torch.sort(t1.to(torch.float64)).values
    fp = (n - torch.searchsorted(s0, th, right=True)).numpy()    # T0 > t: said "u1" on u0
    fn = torch.searchsorted(s1, th, right=True).numpy()          # T1 <= t: said "u0" on u1
    level = float(alpha) / (2 * th.numel())
    fpu, fnu = clopper_pearson_upper(fp, n, level), clopper_pearson_upper(fn, n, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(1 - delta - fnu > 0, np.log(np.maximum(1 - delta - fnu, 1e-300)) - np.log(fpu), -np.inf)
        b = np.where(1 - delta - fpu > 0, np.log(np.maximum(1 - delta - fpu, 1e-300)) - np.log(fnu), -np.inf)
    cand = np.maximum(a, b)
    i = int(np.argmax(cand))
    return {"eps_lower_bound": float(max(0.0, cand[i])), "threshold": float(th[i]), "fpr": fp[i] / n,
            "fnr": fn[i] / n, "fpr_upper": float(fpu[i]), "fnr_upper": float(fnu[i])}


def audit_gaussian(clip_norm: float, noise_std: float, delta: float, trials: int, *, generator: torch.Generator,
                   actual_noise_std: Optional[float] = None, dim: int = 64, alpha: float = 0.05,
                   n_thresholds: int = 400) -> dict:
    """Audit the mechanism that claims noise std ``noise_std`` on updates clipped to ``clip_norm``
    (epsilon computed by Gaussian DP, ``mu = 2 C / noise_std``) and adds ``actual_noise_std``
    (default: the claimed one). ``trials`` draws of the projected statistic a side
    (:func:`projected_samples`) on the worst-case pair (:func:`worst_case_pair`, ``dim``
    entries); ``n_thresholds`` thresholds evenly spaced over the claimed means ``+- (8 + mu / 2)``
    claimed stds around their midpoint.

    Returns one row: ``mu``, ``sigma`` (claimed std), ``C``, ``delta``, ``trials``,
    ``eps_lower_bound``, ``eps_computed`` (:func:`fedshield.accounting.gdp_epsilon`), ``ratio``
    (lower bound / computed), and the best threshold's rates (:func:`epsilon_lower_bound`)."""
    c, s = _positive("clip_norm", clip_norm), _positive("noise_std", noise_std)
    actual = s if actual_noise_std is None else _positive("actual_noise_std", actual_noise_std)
    n_thresholds = _count("n_thresholds", n_thresholds)
    mu = 2 * c / s
    u0, u1 = worst_case_pair(c, dim, generator=generator)
    t0, t1 = projected_samples(u0, u1, c, actual, trials, generator=generator)
    half = 8.0 + mu / 2
    grid = np.linspace(-half * s, half * s, n_thresholds)   # midpoint of <clip(u_b), e> = +-C is 0
    res = epsilon_lower_bound(t0, t1, delta, grid, alpha=alpha)
    eps = gdp_epsilon(mu, delta)
    return {"mu": mu, "sigma": s, "C": c, "delta": float(delta), "trials": int(trials),
            "eps_lower_bound": res["eps_lower_bound"], "eps_computed": eps,
            "ratio": res["eps_lower_bound"] / eps if eps > 0 else math.nan,
            **{k: v for k, v in res.items() if k != "eps_lower_bound"}}
