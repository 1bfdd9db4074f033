"""fedshield.accounting: the (epsilon, delta) the defenses' Gaussian noise gives, by Gaussian DP."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from fedshield import FedshieldError
from fedshield.accounting import gaussian_mu, gdp_delta, gdp_epsilon, noise_for_epsilon


def _delta_by_integration(mu, eps):
    """An independent reading of the same quantity: the privacy loss of N(0,1) against N(mu,1) at an
    output drawn from N(mu,1) is L ~ N(mu^2/2, mu^2), and delta(eps) = E[(1 - e^(eps - L))_+]."""
    f = lambda l: -math.expm1(eps - l) * stats.norm.pdf(l, mu * mu / 2, mu)
    return integrate.quad(f, eps, mu * mu / 2 + 40 * mu, limit=400, epsabs=1e-14)[0]


@pytest.mark.parametrize("mu, eps", [(0.5, 0.1), (1.0, 1.0), (2.0, 3.0), (5.0, 10.0), (0.3, 0.0)])
def test_gdp_delta_is_the_gaussian_privacy_profile(mu, eps):
    assert gdp_delta(mu, eps) == pytest.approx(_delta_by_integration(mu, eps), rel=1e-6, abs=1e-13)


def test_gdp_epsilon_inverts_delta_and_grows_with_mu():
    for mu in (0.1, 0.5, 1.0, 3.0, 30.0, 300.0):
        for delta in (1e-3, 1e-5, 1e-9):
            e = gdp_epsilon(mu, delta)
            assert e > 0 and gdp_delta(mu, e) == pytest.approx(delta, rel=1e-6)
    es = [gdp_epsilon(m, 1e-5) for m in (0.5, 1, 2, 4, 8, 100)]
    assert all(a < b for a, b in zip(es, es[1:]))
    # large mu: the loss is N(mu^2/2, mu^2), so epsilon is mu^2/2 plus a few mu
    assert 300 ** 2 / 2 < gdp_epsilon(300.0, 1e-5) < 300 ** 2 / 2 + 5 * 300
    assert gdp_epsilon(1e-6, 1e-5) == 0.0 and gdp_epsilon(math.inf, 1e-5) == math.inf


def test_the_exact_epsilon_is_never_worse_than_the_classical_gaussian_mechanism():
    # classical: std sqrt(2 ln(1.25/delta)) * sensitivity / eps is (eps, delta)-DP for eps < 1
    for eps in (0.1, 0.5, 0.9):
        for delta in (1e-3, 1e-5):
            mu = eps / math.sqrt(2 * math.log(1.25 / delta))
            assert gdp_epsilon(mu, delta) <= eps


def test_gaussian_mu_composes_and_takes_the_least_noised_entry():
    assert gaussian_mu(1.0, 0.5) == pytest.approx(4.0)              # sensitivity 2C over the std
    assert gaussian_mu(1.0, 0.5, releases=9) == pytest.approx(gaussian_mu(1.0, 0.5 / 3))
    # per-entry stds: the worst direction is the least noised entry
    assert gaussian_mu(2.0, torch.tensor([0.1, 0.5, 1.0])) == pytest.approx(40.0)
    assert gaussian_mu(2.0, np.array([0.1, 0.0])) == math.inf     # an entry without noise: no guarantee
    assert gaussian_mu(math.inf, 0.1) == math.inf                   # no clipping: no guarantee
    assert gaussian_mu(0.0, 0.0) == 0.0
    for bad in (dict(clip_norm=-1.0, noise_std=1.0), dict(clip_norm=1.0, noise_std=-0.1),
                dict(clip_norm=1.0, noise_std=float("nan")), dict(clip_norm=1.0, noise_std=1.0, releases=0),
                dict(clip_norm=float("nan"), noise_std=1.0)):
        with pytest.raises(FedshieldError):
            gaussian_mu(**bad)


def test_noise_for_epsilon_inverts_the_accounting():
    for eps, delta, c, k in ((1.0, 1e-5, 13.05, 200), (8.0, 1e-5, 1.0, 1), (0.5, 1e-6, 0.1, 400)):
        s = noise_for_epsilon(eps, delta, c, k)
        assert gdp_epsilon(gaussian_mu(c, s, k), delta) == pytest.approx(eps, rel=1e-6)
    with pytest.raises(FedshieldError, match="epsilon must be > 0"):
        noise_for_epsilon(0.0, 1e-5, 1.0)
    with pytest.raises(FedshieldError, match="delta must be in"):
        gdp_epsilon(1.0, 1.0)


# ------------------------------------------------------------------- against Google's dp-accounting
# dp-accounting is not in the pinned environment: every release with privacy loss distributions
# requires attrs < 24 (0.6.0) or numpy ~= 1.21 (0.4.x), against constraints.txt's attrs 26.1.0 and
# numpy 2.4.6. These tests run where it is importable (a separate environment, or PYTHONPATH).
GRID = [(c, ratio, k, delta) for c in (0.1, 13.05) for ratio in (0.5, 8.0) for k in (1, 100)
        for delta in (1e-5, 1e-9)]


def test_the_library_mechanism_gives_the_same_privacy_profile():
    """dp-accounting's closed form of one Gaussian mechanism (k releases of std s are one release
    of std s / sqrt(k)) against gdp_delta, at the epsilon gdp_epsilon returns."""
    plm = pytest.importorskip("dp_accounting.pld.privacy_loss_mechanism",
                              reason="dp-accounting is not installed (it conflicts with the pinned attrs)")
    for c, ratio, k, delta in GRID + [(1.0, 0.1, 1, 1e-5), (1.0, 0.02, 1, 1e-5)]:
        s = ratio * 2 * c
        e = gdp_epsilon(gaussian_mu(c, s, k), delta)
        d = plm.GaussianPrivacyLoss(s / math.sqrt(k), sensitivity=2 * c).get_delta_for_epsilon(e)
        assert d == pytest.approx(delta, rel=1e-8)
        for eps in (0.0, 0.5, 3.0):
            d = plm.GaussianPrivacyLoss(s / math.sqrt(k), sensitivity=2 * c).get_delta_for_epsilon(eps)
            assert gdp_delta(gaussian_mu(c, s, k), eps) == pytest.approx(d, rel=1e-9, abs=1e-300)


def test_the_library_pld_composition_agrees_with_the_exact_epsilon():
    """The privacy loss distribution composed k times (a discretised approximation of the privacy
    loss: interval 1e-4, pessimistic rounding, tail mass below e^-50 truncated) agrees with the exact
    Gaussian-DP epsilon to a small relative difference, in either direction (the truncated tail can
    put it a little below at large mu)."""
    pld = pytest.importorskip("dp_accounting.pld.privacy_loss_distribution",
                              reason="dp-accounting is not installed (it conflicts with the pinned attrs)")
    worst = 0.0
    for c, ratio, k, delta in GRID:
        s = ratio * 2 * c
        e = gdp_epsilon(gaussian_mu(c, s, k), delta)
        e_pld = pld.from_gaussian_mechanism(s, sensitivity=2 * c).self_compose(k).get_epsilon_for_delta(delta)
        worst = max(worst, abs(e_pld - e) / e)
    assert worst < 1e-5
