"""fedshield.audit: the empirical lower bound on epsilon of clip-and-noise against Gaussian DP."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from fedshield import FedshieldError
from fedshield.accounting import gdp_epsilon
from fedshield.audit import (audit_gaussian, clip_and_noise, clopper_pearson_upper, epsilon_lower_bound, project,
                             projected_samples, worst_case_pair)
from fedshield.defense import clip
from fedshield.utils import make_generator

C = 13.05


def test_the_worst_case_pair_is_at_the_sensitivity_after_clipping():
    u0, u1 = worst_case_pair(C, 50, generator=make_generator(0))
    assert float((u1 - u0).norm()) == pytest.approx(4 * C)                 # beyond the bound before
    assert float((clip(u1, C) - clip(u0, C)).norm()) == pytest.approx(2 * C)  # exactly 2C after
    with pytest.raises(FedshieldError):
        worst_case_pair(C, 50, generator=make_generator(0), scale=0.5)


def test_the_full_mechanism_projects_to_the_one_dimensional_statistic():
    """Sampling clip + noise in P dimensions and projecting gives the distribution the audit samples
    directly; a mechanism with 30% more noise is told apart at the same sample size."""
    sigma, n = 2 * C / 2, 20000
    u0, u1 = worst_case_pair(C, 300, generator=make_generator(1))
    full0 = project(clip_and_noise(u0, C, sigma, n, generator=make_generator(2)), u0, u1)
    full1 = project(clip_and_noise(u1, C, sigma, n, generator=make_generator(3)), u0, u1)
    d0, d1 = projected_samples(u0, u1, C, sigma, n, generator=make_generator(4))
    for full, direct, mean in ((full0, d0, -C), (full1, d1, C)):
        assert stats.ks_2samp(full.numpy(), direct.numpy()).pvalue > 1e-3
        assert float(full.mean()) == pytest.approx(mean, abs=5 * sigma / math.sqrt(n))
        assert float(full.std()) == pytest.approx(sigma, rel=0.03)
    louder, _ = projected_samples(u0, u1, C, 1.3 * sigma, n, generator=make_generator(5))
    assert stats.ks_2samp(full0.numpy(), louder.numpy()).pvalue < 1e-6


def test_clopper_pearson_upper_bound():
    # zero events: the bound solves (1 - p)^n = level
    assert clopper_pearson_upper([0], 1000, 0.05)[0] == pytest.approx(1 - 0.05 ** (1 / 1000), rel=1e-9)
    assert clopper_pearson_upper([1000], 1000, 0.05)[0] == 1.0
    # coverage: over many binomial draws the upper bound falls below the true rate at most `level` of the time
    rng = np.random.default_rng(0)
    k = rng.binomial(200, 0.1, size=20000)
    miss = float((clopper_pearson_upper(k, 200, 0.05) < 0.1).mean())
    assert miss <= 0.05
    with pytest.raises(FedshieldError):
        clopper_pearson_upper([3], 2, 0.05)


def test_perfectly_separated_outputs_certify_only_what_the_trials_allow():
    n = 1000
    res = epsilon_lower_bound(torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64), 1e-5,
                              [0.5], alpha=0.05)
    # both rates are 0: each upper bound is 1 - (alpha/2)^(1/n), so eps_lb = log((1 - delta - u) / u)
    u = 1 - 0.025 ** (1 / n)
    assert res["fpr"] == 0 and res["fnr"] == 0
    assert res["eps_lower_bound"] == pytest.approx(math.log((1 - 1e-5 - u) / u), rel=1e-9)
    # identical distributions: nothing is certified
    z = torch.randn(2, 50000, generator=make_generator(0), dtype=torch.float64)
    assert epsilon_lower_bound(z[0], z[1], 1e-5, np.linspace(-3, 3, 50))["eps_lower_bound"] == 0.0


@pytest.mark.parametrize("mu", [1.0, 2.0, 3.0, 4.0])
def test_the_lower_bound_stays_below_the_accounting(mu):
    row = audit_gaussian(C, 2 * C / mu, 1e-5, 10 ** 5, generator=make_generator(10 + int(mu)))
    assert row["mu"] == pytest.approx(mu) and row["eps_computed"] == pytest.approx(gdp_epsilon(mu, 1e-5))
    assert 0 < row["eps_lower_bound"] < row["eps_computed"]


def test_the_lower_bound_comes_close_to_the_accounting_with_a_million_trials():
    row = audit_gaussian(C, C, 1e-5, 10 ** 6, generator=make_generator(20))   # mu = 2
    assert 0.5 < row["ratio"] < 1.0


def test_a_mechanism_with_less_noise_than_claimed_is_caught():
    """It claims mu = 1 (epsilon about 4.4 at delta 1e-5) but adds a third of the noise (mu = 3)."""
    claimed = 2 * C
    row = audit_gaussian(C, claimed, 1e-5, 10 ** 5, generator=make_generator(30), actual_noise_std=claimed / 3)
    assert row["eps_lower_bound"] > row["eps_computed"]
    honest = audit_gaussian(C, claimed, 1e-5, 10 ** 5, generator=make_generator(30))
    assert honest["eps_lower_bound"] < honest["eps_computed"]


def test_same_seed_same_audit_and_bad_input():
    a = audit_gaussian(C, C, 1e-5, 1000, generator=make_generator(7))
    b = audit_gaussian(C, C, 1e-5, 1000, generator=make_generator(7))
    assert a == b
    for bad in (dict(clip_norm=0.0), dict(noise_std=-1.0), dict(delta=1.0), dict(trials=0)):
        kw = dict(clip_norm=C, noise_std=C, delta=1e-5, trials=100) | bad
        with pytest.raises(FedshieldError):
            audit_gaussian(generator=make_generator(0), **kw)
    u0, u1 = worst_case_pair(C, 5, generator=make_generator(0))
    with pytest.raises(FedshieldError):
        project(torch.zeros(3, 4), u0, u1)
    with pytest.raises(FedshieldError):
        projected_samples(u0, u0, C, 1.0, 10, generator=make_generator(0))
