"""What formal differential privacy the defenses' Gaussian noise gives (beyond the paper).

The paper, and the DP-G / DP-L baselines it compares with, add Gaussian noise to a client's shared
update and measure privacy empirically, as an attack's PSNR. A reviewer asks the other question:
which (epsilon, delta)-DP guarantee does that noise give? The answer here uses Gaussian differential
privacy (Dong, Roth and Su, "Gaussian differential privacy", 2019/2022), which is exact for the
Gaussian mechanism and composes exactly:

- the update is clipped to L2 norm ``C`` (the paper's local clipping, Sec. 5); the server sees each
  client's update on its own, so the guarantee is *local*, for the client's whole update: two
  updates of one client differ by at most the diameter ``2 C`` of the clipping ball;
- Gaussian noise of per-entry std ``s_i`` makes one release ``mu``-GDP with
  ``mu = 2 C / min_i s_i`` (the worst direction of a difference is along the least noised entry;
  an entry without noise gives ``mu = inf``: no guarantee at all, which is the paper's defense at
  any ratio below 1);
- ``k`` releases (the rounds a client takes part in) compose to ``sqrt(k) mu``-GDP; the server
  knows whom it sampled, so there is no amplification by sub-sampling against it;
- ``mu``-GDP is (epsilon, delta)-DP for every epsilon >= 0 with
  ``delta(epsilon) = Phi(-epsilon/mu + mu/2) - e^epsilon Phi(-epsilon/mu - mu/2)``.

``tests/test_accounting.py`` checks this against Google's ``dp-accounting`` where it is installed:
its closed form of the Gaussian mechanism (the same formula) and its privacy loss distribution
composed ``k`` times (a discretised approximation, so the closed form here stays the reference).
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import log_ndtr, ndtr

from .errors import FedshieldError

Number = Union[float, int]


def _finite_nonneg(name: str, x: float, *, allow_inf: bool = False) -> float:
    x = float(x)
    if math.isnan(x) or x < 0 or (math.isinf(x) and not allow_inf):
        raise FedshieldError(f"{name} must be a {'non-negative number' if allow_inf else 'finite number >= 0'}, got {x}")
    return x


def gaussian_mu(clip_norm: Number, noise_std: Union[Number, torch.Tensor, np.ndarray], releases: int = 1) -> float:
    """``mu`` of ``releases`` releases of an update clipped to L2 norm ``clip_norm`` with Gaussian
    noise of std ``noise_std`` per entry (a number, or one std per entry): ``sqrt(releases) * 2 C /
    min(std)``, local DP for the whole update (module docstring). ``inf`` where some entry has no
    noise or the update is not clipped (``clip_norm = inf``); ``0`` where ``clip_norm = 0``."""
    c = _finite_nonneg("clip_norm", clip_norm, allow_inf=True)
    s = torch.as_tensor(noise_std, dtype=torch.float64).flatten()
    if not len(s) or not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise FedshieldError("noise_std must be finite and >= 0 (one number, or one std per entry)")
    if isinstance(releases, bool) or int(releases) != releases or releases < 1:
        raise FedshieldError(f"releases must be an integer >= 1, got {releases}")
    if c == 0:
        return 0.0
    lo = float(s.min())
    if lo == 0 or math.isinf(c):
        return math.inf
    return math.sqrt(int(releases)) * 2 * c / lo


def gdp_delta(mu: Number, epsilon: Number) -> float:
    """The smallest ``delta`` for which ``mu``-GDP is (``epsilon``, ``delta``)-DP."""
    mu, eps = _finite_nonneg("mu", mu, allow_inf=True), _finite_nonneg("epsilon", epsilon, allow_inf=True)
    if mu == 0:
        return 0.0
    if math.isinf(mu):
        return 1.0
    if math.isinf(eps):
        return 0.0
    # e^eps Phi(b) in log space: for large mu and epsilon both terms are tiny differences of huge numbers
    a, b = -eps / mu + mu / 2, -eps / mu - mu / 2
    d = ndtr(a) - math.exp(eps + log_ndtr(b))
    return float(min(1.0, max(0.0, d)))


def gdp_epsilon(mu: Number, delta: Number) -> float:
    """The smallest ``epsilon`` for which ``mu``-GDP is (``epsilon``, ``delta``)-DP, ``0 < delta < 1``
    (``inf`` for ``mu = inf``)."""
    mu = _finite_nonneg("mu", mu, allow_inf=True)
    delta = float(delta)
    if not 0 < delta < 1:
        raise FedshieldError(f"delta must be in (0, 1), got {delta}")
    if math.isinf(mu):
        return math.inf
    if gdp_delta(mu, 0.0) <= delta:
        return 0.0
    hi = max(1.0, mu * mu / 2 + 10 * mu)       # the privacy loss is N(mu^2/2, mu^2): far past its bulk
    while gdp_delta(mu, hi) > delta:
        hi *= 2
    return float(brentq(lambda e: gdp_delta(mu, e) - delta, 0.0, hi, xtol=1e-10, rtol=1e-12))


def noise_for_epsilon(epsilon: Number, delta: Number, clip_norm: Number, releases: int = 1) -> float:
    """The per-entry noise std that makes ``releases`` releases of an update clipped to
    ``clip_norm`` (``epsilon``, ``delta``)-DP (the inverse of :func:`gaussian_mu` and
    :func:`gdp_epsilon`)."""
    eps = _finite_nonneg("epsilon", epsilon)
    if eps == 0:
        raise FedshieldError("epsilon must be > 0 (epsilon = 0 needs infinite noise)")
    c = _finite_nonneg("clip_norm", clip_norm)
    if not 0 < float(delta) < 1:
        raise FedshieldError(f"delta must be in (0, 1), got {delta}")
    lo, hi = 1e-9, 1.0
    while gdp_epsilon(hi, delta) < eps:          # epsilon grows with mu: bracket the mu that reaches it
        lo, hi = hi, hi * 2
    mu = brentq(lambda m: gdp_epsilon(m, delta) - eps, lo, hi, xtol=1e-12, rtol=1e-12)
    return gaussian_mu(c, 1.0, releases) / mu
