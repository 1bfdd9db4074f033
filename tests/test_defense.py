"""Tests of fedshield.defense: leakage risk, slicing, perturbation, clipping, noise level,
compensation, the PaperDefense hooks and an end-to-end FedAvg run on MNIST."""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chi2
from torch import nn

from fedshield.defense import (PaperDefense, aggregate_noise_var, clip, compensate, leakage_risk,
                               matrix_shape, mp_bounds, mp_density, n_perturbed, paper_aggregate_noise_var, spectrum,
                               per_sample_clipped_gradient, perturb, risk_slices, size_slices)
from fedshield.errors import FedshieldError
from fedshield.hooks import RoundContext
from fedshield.utils import make_generator, param_sizes


def tiny_cnn(seed: int = 0, norm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Conv2d(1, 2, 3)]
    if norm:
        layers.append(nn.BatchNorm2d(2))
    layers += [nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)]
    return nn.Sequential(*layers)


def tiny_data(n: int = 4, seed: int = 0):
    g = make_generator(seed)
    return torch.rand(n, 1, 6, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def chi2_pvalue(counts: torch.Tensor) -> float:
    counts = counts.to(torch.float64)
    expected = counts.sum() / counts.numel()
    stat = float(((counts - expected) ** 2 / expected).sum())
    return float(chi2.sf(stat, counts.numel() - 1))


# ------------------------------------------------------------------------------ leakage risk
def brute_force_jacobian_norms(model, x, y):
    """||d g_l / d x_i||_F per tensor and sample via torch.autograd.functional.jacobian."""
    params = list(model.parameters())
    out = torch.zeros(len(x), len(params))
    for i in range(len(x)):
        def grads(xi):
            loss = F.cross_entropy(model(xi.unsqueeze(0)), y[i:i + 1])
            return tuple(torch.autograd.grad(loss, params, create_graph=True))
        jac = torch.autograd.functional.jacobian(grads, x[i])
        out[i] = torch.stack([j.pow(2).sum().sqrt() for j in jac])
    return out


def test_exact_risk_matches_brute_force_jacobian():
    model, (x, y) = tiny_cnn(), tiny_data()
    exact = leakage_risk(model, x, y, exact=True)
    brute = brute_force_jacobian_norms(model, x, y).mean(0)
    torch.testing.assert_close(exact, brute, rtol=1e-4, atol=1e-7)


def test_risk_estimator_within_10_percent_of_exact_per_tensor():
    model, (x, y) = tiny_cnn(), tiny_data(6)
    exact = leakage_risk(model, x, y, exact=True)
    est = leakage_risk(model, x, y, probes=512, generator=make_generator(0))
    assert est.shape == (len(list(model.parameters())),)
    rel = (est - exact).abs() / exact
    assert bool((rel < 0.10).all()), rel
    # few probes: a different (noisier) estimate, still unbiased-ish, never negative
    few = leakage_risk(model, x, y, probes=2, generator=make_generator(0))
    assert bool((few >= 0).all()) and not torch.allclose(few, est)


def test_last_layer_risk_is_not_zero_while_a_ones_probe_says_it_is():
    model, (x, y) = tiny_cnn(), tiny_data()
    risk = leakage_risk(model, x, y, probes=64, generator=make_generator(1))
    fc_w, fc_b = risk[-2], risk[-1]
    assert fc_w > 0.05 * risk.max() and fc_b > 0.0
    # the authors' ones-vector probe: d(sum of the last layer's gradient)/dx == 0 for CE
    ones = leakage_risk(model, x, y, probe="ones")
    assert float(ones[-2]) < 1e-6 * float(fc_w) and float(ones[-1]) < 1e-6 * float(fc_w)
    assert bool((ones[:-2] > 0).all())


def test_ones_probe_matches_a_per_sample_autograd_loop():
    """probe='ones' is the authors' sensitivity ||d(sum g_l)/dx||, mean over samples; the loop is
    the reference it is checked against (the book's Chapter 2 has the same loop)."""
    model, (x, y) = tiny_cnn(), tiny_data()
    model.eval()
    params = list(model.parameters())
    rows = []
    for xi, yi in zip(x, y):
        xi = xi.unsqueeze(0).clone().requires_grad_(True)
        g = torch.autograd.grad(F.cross_entropy(model(xi), yi.view(1)), params, create_graph=True)
        rows.append([torch.autograd.grad(gl.sum(), xi, retain_graph=True)[0].norm() for gl in g])
    ref = torch.tensor(rows).mean(0)
    torch.testing.assert_close(leakage_risk(model, x, y, probe="ones"), ref, rtol=1e-4, atol=1e-7)
    with pytest.raises(FedshieldError, match="probe"):
        leakage_risk(model, x, y, probe="twos")


def test_risk_is_reproducible_and_restores_model_mode():
    model, (x, y) = tiny_cnn(norm=True), tiny_data()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = leakage_risk(model, x, y, probes=4, generator=make_generator(5))
    b = leakage_risk(model, x, y, probes=4, generator=make_generator(5))
    assert torch.equal(a, b) and model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # soft labels (DLG's one-hot targets) give the same risk as integer labels
    soft = leakage_risk(model, x, F.one_hot(y, 3).float(), probes=4, generator=make_generator(5))
    torch.testing.assert_close(soft, a)


# ------------------------------------------------------------------------------ slicing
def _check_partition(b: torch.Tensor, n_entries: int, s: int) -> None:
    assert b.dtype == torch.long and b.numel() == s + 1
    assert int(b[0]) == 0 and int(b[-1]) == n_entries
    assert bool((b[1:] > b[:-1]).all())  # non-empty, disjoint, contiguous, covering


def _slice_risks(sizes, risk, b):
    dens = torch.repeat_interleave(torch.as_tensor(risk, dtype=torch.float64) / torch.tensor(sizes),
                                   torch.tensor(sizes))
    c = torch.cat([torch.zeros(1, dtype=torch.float64), dens.cumsum(0)])
    return c[b[1:]] - c[b[:-1]], float(dens.max())


def test_risk_slices_partition_and_bounded_imbalance_random_cases():
    g = make_generator(123)
    checked = 0
    for _ in range(120):
        L = int(torch.randint(1, 9, (1,), generator=g))
        sizes = torch.randint(1, 400, (L,), generator=g).tolist()
        risk = torch.rand(L, generator=g, dtype=torch.float64)
        risk[torch.rand(L, generator=g) < 0.2] = 0.0
        s = int(torch.randint(1, min(sum(sizes), 40) + 1, (1,), generator=g))
        b = risk_slices(sizes, risk, s)
        _check_partition(b, sum(sizes), s)
        if risk.sum() == 0:
            assert torch.equal(b, size_slices(sizes, s))
            continue
        sr, dmax = _slice_risks(sizes, risk, b)
        if dmax <= float(risk.sum()) / s / 2:  # no fix-up can be needed: bound of the docstring
            assert float((sr - risk.sum() / s).abs().max()) <= dmax + 1e-9
            checked += 1
    assert checked > 30


def test_risk_slices_hand_example_and_risky_layers_get_more_slices():
    # 2 layers of 4 entries, risk 3 and 1: half the risk (2) is reached 2/0.75 = 2.67 entries in
    assert risk_slices([4, 4], torch.tensor([3.0, 1.0]), 2).tolist() == [0, 3, 8]
    sizes = [1000, 10, 1000, 100]
    b = risk_slices(sizes, torch.tensor([1.0, 0.1, 1.0, 8.0]), 10)
    _check_partition(b, 2110, 10)
    # the last layer (entries 2010..2109) holds 8 / 10.1 of the risk = 7.9 slices' worth: 7 cuts
    # fall strictly inside it, slices there are ~12.6 entries long against ~1000 in layer 0
    inside = b[(b > 2010) & (b < 2110)]
    assert inside.numel() == 7
    assert bool(((inside[1:] - inside[:-1]) <= 14).all()) and int(b[1]) > 900


def test_risk_slices_fix_up_when_single_entries_exceed_the_share():
    b = risk_slices([1000, 3], torch.tensor([1.0, 9.0]), 10)  # 3 entries carry 90%: 9 slices cannot fit
    _check_partition(b, 1003, 10)
    b = risk_slices([5], torch.tensor([1.0]), 5)
    assert b.tolist() == [0, 1, 2, 3, 4, 5]


def test_size_slices_equal_entries_the_layer_size_baseline():
    sizes = [456, 12, 3600, 12, 7680, 10]
    for s in (1, 3, 10, 37):
        b = size_slices(sizes, s)
        _check_partition(b, sum(sizes), s)
        counts = b[1:] - b[:-1]
        assert int(counts.max() - counts.min()) <= 1
        # = equal-risk slicing when every entry carries the same risk
        assert torch.equal(b, risk_slices(sizes, torch.tensor(sizes, dtype=torch.float64), s))


# ------------------------------------------------------------------------------ perturbation
@pytest.mark.parametrize("s,ratio", [(10, 0.2), (10, 0.3), (7, 0.5), (10, 0.05), (6, 1.0)])
def test_perturb_changes_exactly_k_whole_slices_and_nothing_else(s, ratio):
    P = 3000
    g = make_generator(7)
    flat = torch.randn(P, generator=g)
    flat[::5] = -0.0  # bit-identity must also hold for negative zeros
    bounds = size_slices([P], s)
    for rows in (None, 4):
        x = flat if rows is None else flat.expand(rows, P).clone()
        out, ids = perturb(x, bounds, ratio, 0.5, generator=g)
        k = max(1, math.floor(s * ratio + 1e-9))
        assert ids.shape == ((k,) if rows is None else (rows, k))
        same = (out.view(torch.int32) == x.view(torch.int32)).reshape(-1, P)
        for r, row_ids in enumerate(ids.reshape(-1, k)):
            for j in range(s):
                seg = same[r, bounds[j]:bounds[j + 1]]
                if j in row_ids.tolist():
                    assert not bool(seg.any())   # noise on every entry of a chosen slice
                else:
                    assert bool(seg.all())       # everything else bit-identical


def test_perturb_noise_has_std_sigma():
    P, sigma = 200_000, 0.37
    flat = torch.randn(P, generator=make_generator(1))
    bounds = size_slices([P], 10)
    out, ids = perturb(flat, bounds, 0.5, sigma, generator=make_generator(2))
    mask = torch.zeros(P, dtype=torch.bool)
    for j in ids.tolist():
        mask[bounds[j]:bounds[j + 1]] = True
    noise = (out - flat)[mask]
    assert noise.numel() == P // 2
    assert abs(float(noise.std()) / sigma - 1) < 0.01      # ~ 5 standard errors
    assert abs(float(noise.mean())) < 5 * sigma / math.sqrt(noise.numel())


def test_reservoir_sampling_is_uniform_over_slices_and_subsets():
    s, k, draws = 6, 2, 3000
    bounds = size_slices([12], s)
    g = make_generator(11)
    subsets = {c: i for i, c in enumerate(combinations(range(s), k))}
    per_slice, per_subset = torch.zeros(s), torch.zeros(len(subsets))
    flat = torch.zeros(12)
    for _ in range(draws):
        _, ids = perturb(flat, bounds, k / s, 1.0, generator=g)
        per_slice[ids] += 1
        per_subset[subsets[tuple(ids.tolist())]] += 1
    assert chi2_pvalue(per_slice) > 1e-3 and chi2_pvalue(per_subset) > 1e-3
    # the test has power: a biased sampler (slice 0 twice as likely) is rejected
    biased = per_slice.clone()
    biased[0] *= 1.5
    assert chi2_pvalue(biased) < 1e-6


def test_batched_draws_are_uniform_and_independent_across_clients():
    s, k, m, draws = 6, 2, 50, 60
    bounds = size_slices([12], s)
    g = make_generator(12)
    subsets = {c: i for i, c in enumerate(combinations(range(s), k))}
    per_subset = torch.zeros(len(subsets))
    same_as_row0 = 0
    for _ in range(draws):
        _, ids = perturb(torch.zeros(m, 12), bounds, k / s, 1.0, generator=g)
        for row in ids.tolist():
            per_subset[subsets[tuple(row)]] += 1
        same_as_row0 += int((ids == ids[0]).all(1).sum()) - 1
    assert chi2_pvalue(per_subset) > 1e-3
    # independent rows: P(row == row 0) = 1/15, expected 49 * 60 / 15 = 196
    assert 120 < same_as_row0 < 280


def test_perturb_randomness_seeded_and_os_entropy():
    flat, bounds = torch.zeros(1000), size_slices([1000], 10)
    a = perturb(flat, bounds, 0.2, 1.0, generator=make_generator(3))[0]
    b = perturb(flat, bounds, 0.2, 1.0, generator=make_generator(3))[0]
    c = perturb(flat, bounds, 0.2, 1.0)[0]
    d = perturb(flat, bounds, 0.2, 1.0)[0]
    assert torch.equal(a, b) and not torch.equal(c, d)


def test_n_perturbed():
    assert n_perturbed(10, 0.2) == 2 and n_perturbed(10, 0.3) == 3 and n_perturbed(10, 0.05) == 1
    assert n_perturbed(10, 1.0) == 10 and n_perturbed(3, 0.5) == 1


# ------------------------------------------------------------------------------ clipping
def test_clip_bounds_norm_and_keeps_small_vectors():
    g = make_generator(4)
    big = torch.randn(500, generator=g) * 10
    out = clip(big, 2.5)
    assert float(out.norm()) <= 2.5 * (1 + 1e-6)
    torch.testing.assert_close(out / out.norm(), big / big.norm())
    small = big / big.norm() * 0.5
    assert torch.equal(clip(small, 2.5), small)
    rows = torch.stack([big, small, -big * 3])
    outr = clip(rows, 2.5)
    assert bool((outr.norm(dim=1) <= 2.5 * (1 + 1e-6)).all())
    assert torch.equal(outr[1], small)


def test_per_sample_clipped_gradient_matches_a_loop():
    model, (x, y) = tiny_cnn(), tiny_data(5)
    got = per_sample_clipped_gradient(model, x, y, 0.05)
    rows = []
    for i in range(len(x)):
        gi = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), list(model.parameters()))
        gi = torch.cat([t.reshape(-1) for t in gi])
        rows.append(gi / max(1.0, float(gi.norm()) / 0.05))
    torch.testing.assert_close(got, torch.stack(rows).mean(0), rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------------------ noise level
def test_aggregate_noise_var_matches_monte_carlo():
    m, P, s, ratio, sigma = 5, 7000, 7, 0.2, 0.3   # k = 1 of 7 slices: k/s = 0.143 != ratio
    w = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05])
    bounds = size_slices([P], s)
    g = make_generator(9)
    aggs = torch.stack([w @ perturb(torch.zeros(m, P), bounds, ratio, sigma, generator=g)[0]
                        for _ in range(60)])
    emp = float(aggs.var())
    want = aggregate_noise_var(w, ratio, sigma, n_slices=s)
    assert want == pytest.approx(sigma ** 2 / 7 * float((w ** 2).sum()), rel=1e-6)
    assert emp == pytest.approx(want, rel=0.05)
    assert abs(emp / aggregate_noise_var(w, ratio, sigma) - 1) > 0.2   # ratio instead of k/s is off
    # equal weights: sigma^2 p / m, m^2 smaller than the paper's m p sigma^2
    assert aggregate_noise_var(torch.full((10,), 0.1), 0.2, 0.1) == pytest.approx(0.01 * 0.2 / 10)


# ------------------------------------------------------------------------------ compensation
def test_matrix_shape_padding():
    for P in (15826, 20011, 2 * 9719, 1000, 7):
        v, w = matrix_shape(P, 6.0)
        assert v * w >= P and v * w - P < w
        if P > 1000:
            assert abs(v / w - 6.0) < 0.5
    assert mp_bounds(1.0, 4.0) == pytest.approx((0.25, 2.25))


def test_compensate_removes_pure_noise():
    P = 20011  # prime: no exact v x w factorisation with v/w ~ 6
    var = 3e-4
    noise = torch.randn(P, generator=make_generator(0)) * math.sqrt(var)
    out, info = compensate(noise, var, 6.0, return_info=True)
    assert out.shape == noise.shape and out.dtype == noise.dtype
    assert 1 - float(out.pow(2).sum() / noise.pow(2).sum()) >= 0.9
    assert info["removed_energy"] >= 0.9 and info["dropped"] + info["kept"] == info["w"]


def test_compensate_removes_aggregated_perturbation_noise():
    m, P = 10, 15826
    w = torch.full((m,), 1 / m)
    agg = w @ perturb(torch.zeros(m, P), size_slices([P], 10), 0.2, 0.1, generator=make_generator(1))[0]
    out, info = compensate(agg, aggregate_noise_var(w, 0.2, 0.1, n_slices=10), 6.0, return_info=True)
    assert info["removed_energy"] >= 0.9


def _low_rank_case(seed=0):
    P, m, sigma = 15826, 10, 0.1
    v, wd = matrix_shape(P, 6.0)
    g = make_generator(seed)
    signal = ((torch.randn(v, 3, generator=g) @ torch.randn(3, wd, generator=g)).reshape(-1)[:P]) * 0.05
    w = torch.full((m,), 1 / m)
    shared, _ = perturb(signal.expand(m, P).clone(), size_slices([P], 10), 0.2, sigma, generator=g)
    return signal, w @ shared, w, sigma


def test_compensate_lowers_the_error_to_a_low_rank_signal():
    signal, agg, w, sigma = _low_rank_case()
    var = aggregate_noise_var(w, 0.2, sigma, n_slices=10)
    out, info = compensate(agg, var, 6.0, return_info=True)
    before, after = float((agg - signal).norm()), float((out - signal).norm())
    assert after < 0.5 * before
    assert info["dropped"] > info["kept"] >= 3


def test_compensate_with_the_papers_m_squared_variance_removes_nothing():
    """The paper's / authors' m*gamma*sigma^2*sum(w) is the variance of a sum: for the average
    every eigenvalue falls below lambda_minus, is kept, and the error stays where it was."""
    signal, agg, w, sigma = _low_rank_case()
    m = len(w)
    paper_var = paper_aggregate_noise_var(w, 0.2, sigma, n_slices=10)
    assert paper_var == pytest.approx(m * 0.2 * sigma ** 2 * float(w.sum()))
    assert paper_var == pytest.approx(m ** 2 * aggregate_noise_var(w, 0.2, sigma, n_slices=10))
    out, info = compensate(agg, paper_var, 6.0, return_info=True)
    assert info["dropped"] == 0
    torch.testing.assert_close(out, agg, rtol=1e-4, atol=1e-6)
    assert float((out - signal).norm()) > 0.99 * float((agg - signal).norm())


def test_mp_density_integrates_to_one_on_its_support():
    lo, hi = mp_bounds(0.3, 4.0)
    lam = np.linspace(lo, hi, 200001)
    dens = mp_density(lam, 0.3, 4.0)
    assert np.trapezoid(dens, lam) == pytest.approx(1.0, abs=1e-3)
    assert mp_density(np.array([lo / 2, hi * 2]), 0.3, 4.0).tolist() == [0.0, 0.0]
    # its mean is the noise variance (E lambda = sigma^2 for the MP law)
    assert np.trapezoid(lam * dens, lam) == pytest.approx(0.3, rel=1e-3)


def test_compensate_restores_shape_and_keeps_everything_without_noise():
    x = torch.randn(37, 11, dtype=torch.float64, generator=make_generator(2))
    out = compensate(x, 0.0, 2.0)
    assert out.shape == x.shape and out.dtype == torch.float64
    torch.testing.assert_close(out, x)


# ------------------------------------------------------------------------------ bad input
def _bad_inputs():
    model, (x, y) = tiny_cnn(), tiny_data()
    b = size_slices([100], 10)
    v = torch.zeros(100)
    empty = nn.Sequential(nn.ReLU())
    return [
        lambda: leakage_risk(model, x, y[:2]),                               # shape mismatch
        lambda: leakage_risk(model, x * float("nan"), y),                    # NaN
        lambda: leakage_risk(empty, x, y),                                   # empty model
        lambda: leakage_risk(model, x, y, probes=0),
        lambda: risk_slices([10, 10], torch.ones(3), 2),                     # shape mismatch
        lambda: risk_slices([10, 10], torch.tensor([1.0, float("inf")]), 2), # Inf
        lambda: risk_slices([10, 10], torch.tensor([1.0, -1.0]), 2),
        lambda: risk_slices([10, 10], torch.ones(2), 21),                    # n_slices > entries
        lambda: risk_slices([], torch.ones(0), 1),                           # empty model
        lambda: size_slices([5], 6),
        lambda: size_slices([5], 0),
        lambda: perturb(v, b, 0.0, 0.1),                                     # ratio not in (0, 1]
        lambda: perturb(v, b, 1.5, 0.1),
        lambda: perturb(v, b, 0.2, -0.1),                                    # sigma < 0
        lambda: perturb(torch.zeros(99), b, 0.2, 0.1),                       # shape mismatch
        lambda: perturb(torch.full((100,), float("nan")), b, 0.2, 0.1),
        lambda: perturb(v, torch.tensor([0, 50, 50, 100]), 0.2, 0.1),        # empty slice
        lambda: clip(v, 0.0),
        lambda: clip(torch.full((3,), float("inf")), 1.0),
        lambda: aggregate_noise_var(torch.ones(3) / 3, 0.0, 0.1),
        lambda: aggregate_noise_var(torch.ones(3) / 3, 0.2, -1.0),
        lambda: compensate(v, 1e-3, 0.5),                                    # q < 1
        lambda: compensate(v, -1e-3, 6.0),
        lambda: compensate(torch.full((100,), float("nan")), 1e-3, 6.0),
        lambda: PaperDefense(x, y, ratio=0.0),
        lambda: PaperDefense(x, y, q=0.9),
        lambda: PaperDefense(x, y, sigma=-1.0),
        lambda: PaperDefense(x, y[:1]),
        lambda: PaperDefense(x, y, slicing="layers"),
    ]


@pytest.mark.parametrize("i", range(len(_bad_inputs())))
def test_bad_input_raises_one_clear_error(i):
    with pytest.raises(FedshieldError):
        _bad_inputs()[i]()


def test_defense_rejects_updates_of_the_wrong_length():
    model, (x, y) = tiny_cnn(), tiny_data()
    d = PaperDefense(x, y, n_slices=5, seed=0)
    d.on_round_start(model, 0)
    ctx = RoundContext(round=0, model=model, weights=torch.ones(2) / 2)
    with pytest.raises(FedshieldError):
        d.client(torch.zeros(2, sum(param_sizes(model)) + 1), ctx)


# ------------------------------------------------------------------------------ PaperDefense hooks
def _slice_mask(bounds, ids, P):
    mask = torch.zeros(ids.shape[0], P, dtype=torch.bool)
    for r, row in enumerate(ids.tolist()):
        for j in row:
            mask[r, bounds[j]:bounds[j + 1]] = True
    return mask


def test_paper_defense_client_and_server_hooks():
    model, (x, y) = tiny_cnn(), tiny_data(8)
    P = sum(param_sizes(model))
    d = PaperDefense(x, y, n_slices=5, ratio=0.4, sigma=0.05, clip_bound=0.5, seed=0)
    d.on_round_start(model, 0)
    _check_partition(d.bounds, P, 5)
    assert d.risk is not None and d.risk.shape == (len(param_sizes(model)),)
    updates = torch.randn(6, P, generator=make_generator(1))
    ctx = RoundContext(round=0, model=model, weights=torch.full((6,), 1 / 6))
    shared = d.client(updates, ctx)
    ids = ctx.extra["perturbed_slices"]
    assert ids.shape == (6, 2)
    clipped = clip(updates, 0.5)
    diff = shared != clipped
    assert torch.equal(diff, _slice_mask(d.bounds, ids, P))
    assert torch.equal(shared[~diff], clipped[~diff])
    agg = ctx.weights @ shared
    out = d.server(agg, ctx)
    assert out.shape == agg.shape and isinstance(ctx.extra["dropped_directions"], int)
    assert ctx.extra["compensation"]["kept"] + ctx.extra["dropped_directions"] == ctx.extra["compensation"]["w"]
    # same seed -> same numbers; compensate=False -> aggregate untouched
    d2 = PaperDefense(x, y, n_slices=5, ratio=0.4, sigma=0.05, clip_bound=0.5, seed=0, compensate=False)
    d2.on_round_start(model, 0)
    ctx2 = RoundContext(round=0, model=model, weights=torch.full((6,), 1 / 6))
    assert torch.equal(d2.client(updates, ctx2), shared)
    assert d2.server(agg, ctx2) is agg


def test_paper_defense_can_compensate_with_the_papers_variance():
    model, (x, y) = tiny_cnn(), tiny_data(8)
    P = sum(param_sizes(model))
    w = torch.full((6,), 1 / 6)
    agg = torch.randn(P, generator=make_generator(2))
    got = {}
    for nv in ("derived", "paper"):
        d = PaperDefense(x, y, n_slices=5, ratio=0.4, sigma=0.05, seed=0, noise_var=nv)
        d.on_round_start(model, 0)
        ctx = RoundContext(round=0, model=model, weights=w)
        d.server(agg, ctx)
        got[nv] = (ctx.extra["noise_var"], repr(d))
    assert got["derived"][0] == pytest.approx(aggregate_noise_var(w, 0.4, 0.05, n_slices=5))
    assert got["paper"][0] == pytest.approx(paper_aggregate_noise_var(w, 0.4, 0.05, n_slices=5))
    assert got["paper"][0] == pytest.approx(6 ** 2 * got["derived"][0])      # m^2 larger, equal weights
    assert "noise_var" not in got["derived"][1] and "noise_var='paper'" in got["paper"][1]  # default keys kept
    with pytest.raises(FedshieldError, match="noise_var must be one of"):
        PaperDefense(x, y, noise_var="sum")


def test_spectrum_is_the_covariance_spectrum_compensate_uses():
    agg = torch.randn(1000, generator=make_generator(3), dtype=torch.float64)
    ev = spectrum(agg, 6.0)
    v, w = matrix_shape(1000, 6.0)
    m = torch.zeros(v * w, dtype=torch.float64)
    m[:1000] = agg
    ref = torch.linalg.eigvalsh(m.view(v, w).T @ m.view(v, w) / v).numpy()
    assert ev.shape == (w,) and np.allclose(ev, ref)
    lo, hi = mp_bounds(1.0, v / w)
    _, info = compensate(agg, 1.0, 6.0, return_info=True)
    assert info["kept"] == int(((ev > hi) | (ev < lo)).sum())
    with pytest.raises(FedshieldError):
        spectrum(torch.tensor([float("nan")]))


def test_paper_defense_randomness_sources():
    model, (x, y) = tiny_cnn(), tiny_data()
    P = sum(param_sizes(model))
    u = torch.zeros(3, P)

    def shared(d, gen):
        d.on_round_start(model, 0)
        return d.client(u, RoundContext(round=0, model=model, weights=torch.ones(3) / 3, generator=gen))

    # seed=None: OS entropy, and the server's ctx.generator cannot fix the clients' noise
    a = shared(PaperDefense(x, y, n_slices=4), make_generator(5))
    b = shared(PaperDefense(x, y, n_slices=4), make_generator(5))
    assert not torch.equal(a, b)
    # an explicit seed: reproducible, whatever the context's generator
    f = shared(PaperDefense(x, y, n_slices=4, seed=1), make_generator(5))
    h = shared(PaperDefense(x, y, n_slices=4, seed=1), make_generator(6))
    assert torch.equal(f, h)
    # the risk (public, computed by the server) is reproducible even with seed=None
    d1, d2 = PaperDefense(x, y, n_slices=4), PaperDefense(x, y, n_slices=4)
    d1.on_round_start(model, 0)
    d2.on_round_start(model, 0)
    assert torch.equal(d1.risk, d2.risk) and torch.equal(d1.bounds, d2.bounds)


def test_risk_every_and_size_slicing(monkeypatch):
    import fedshield.defense as D

    model, (x, y) = tiny_cnn(), tiny_data()
    calls = []
    real = D.leakage_risk
    monkeypatch.setattr(D, "leakage_risk", lambda *a, **k: calls.append(1) or real(*a, **k))
    d = PaperDefense(x, y, n_slices=4, risk_every=3, seed=0)
    for r in range(7):
        d.on_round_start(model, r)
    assert len(calls) == 3  # rounds 0, 3, 6
    s = PaperDefense(x, y, n_slices=4, slicing="size", seed=0)
    for r in range(3):
        s.on_round_start(model, r)
    assert len(calls) == 3 and torch.equal(s.bounds, size_slices(param_sizes(model), 4))


def test_perturb_gradient_single_client_setting():
    model, (x, y) = tiny_cnn(), tiny_data()
    P = sum(param_sizes(model))
    d = PaperDefense(x, y, n_slices=5, ratio=0.2, seed=3)
    gflat = torch.randn(P, generator=make_generator(0))
    out = d.perturb_gradient(gflat, model)
    ids = d.last_perturbed_slices
    assert ids.shape == (1,)
    assert torch.equal(out != gflat, _slice_mask(d.bounds, ids[None], P)[0])
    with pytest.raises(FedshieldError):
        PaperDefense(x, y).perturb_gradient(gflat)  # no slices and no model


# ------------------------------------------------------------------------------ end to end
def test_end_to_end_defended_fedavg_learns_mnist(data_root):
    """FedAvg (fedshield.fl.Simulator) on MNIST with the paper's non-IID partition and the full
    defense (risk slicing on a root set, perturbation, compensation) still learns; every shared
    update differs from the client's clean update exactly on its chosen slices.

    A small ReLU CNN is used: the sigmoid LeNet does not leave chance level within a few dozen
    rounds at the paper's lr even undefended. sigma = 0.01 is of the order of these FedAvg updates'
    entries (the paper's sigma = 0.1 is ~10x the update and swamps learning at this scale)."""
    from fedshield.data import load_dataset, partition_noniid
    from fedshield.fl import FLConfig, Simulator

    xtr, ytr = load_dataset("mnist", "train", data_root, progress=False)
    xte, yte = load_dataset("mnist", "test", data_root, progress=False)
    root = torch.randperm(len(ytr), generator=make_generator(1))[:32]
    parts = partition_noniid(ytr, 100, seed=0, exclude=root)

    class Recording(PaperDefense):
        def client(self, updates, ctx):
            shared = super().client(updates, ctx)
            self.log.append((updates.clone(), shared.clone(), ctx.extra["perturbed_slices"].clone(),
                             self.bounds.clone()))
            return shared

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 5, stride=2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    defense = Recording(xtr[root], ytr[root], sigma=0.01, risk_every=10, seed=0)
    defense.log = []
    cfg = FLConfig(dataset="mnist", rounds=30, n_clients=100, per_round=10, local_epochs=2,
                   local_lr=0.1, seed=0, eval_every=30)
    sim = Simulator.from_partition(model, xtr, ytr, parts, (xte[:2000], yte[:2000]), cfg, defense)
    res = sim.run(progress=False)
    assert res["final_accuracy"] > 0.3, res["accuracy"]          # chance: 0.1
    assert len(defense.log) == 30
    P = sum(param_sizes(model))
    for clean, shared, ids, bounds in defense.log[::7]:
        assert ids.shape == (10, 2)
        assert torch.equal(shared != clean, _slice_mask(bounds, ids, P))


def test_batched_perturb_noise_has_std_sigma_on_chosen_slices_only():
    m, P, sigma = 6, 40_000, 0.3
    flat = torch.randn(m, P, generator=make_generator(3))
    bounds = size_slices([P], 10)
    out, ids = perturb(flat, bounds, 0.3, sigma, generator=make_generator(4))
    d = out - flat
    for r in range(m):
        mask = torch.zeros(P, dtype=torch.bool)
        for j in ids[r].tolist():
            mask[bounds[j]:bounds[j + 1]] = True
        assert bool((d[r][~mask] == 0).all())
        assert abs(float(d[r][mask].std()) / sigma - 1) < 0.03
    # rows draw independent noise
    assert abs(float(torch.corrcoef(torch.stack([d[0][d[0] != 0][:1000], d[1][d[1] != 0][:1000]]))[0, 1])) < 0.15


def test_risk_warmup_doubles_the_refresh_period_up_to_risk_every(monkeypatch):
    model, (x, y) = tiny_cnn(), tiny_data()
    calls = []
    d = PaperDefense(x, y, n_slices=4, risk_every=20, risk_warmup=True, seed=0, probes=1)
    orig = d.update_slices
    monkeypatch.setattr(d, "update_slices", lambda model, generator=None: calls.append(r) or orig(model))
    for r in range(80):
        d.on_round_start(model, r)
    assert calls == [0, 1, 2, 4, 8, 16, 32, 52, 72]
    assert "risk_warmup=True" in repr(d) and "risk_warmup" not in repr(PaperDefense(x, y, seed=0))


def test_check_finite_fast_path_is_exact():
    from fedshield.errors import FedshieldError
    from fedshield.utils import check_finite

    x = torch.randn(1000)
    check_finite(x, "x")
    for bad in (float("nan"), float("inf"), -float("inf")):
        y = x.clone()
        y[17] = bad
        with pytest.raises(FedshieldError, match="NaN or Inf"):
            check_finite(y, "y")
    y = x.clone()
    y[0], y[1] = float("inf"), -float("inf")   # the sum is NaN
    with pytest.raises(FedshieldError):
        check_finite(y, "y")
    check_finite(torch.full((10,), 3e38), "big")   # finite entries whose sum overflows: not an error


# ---------------------------------------------------------------- per-layer compensation (beyond the paper)
from fedshield.defense import compensate_layers, optimal_shrinkage  # noqa: E402

LENET_SHAPES = [(12, 1, 5, 5), (12,), (12, 12, 5, 5), (12,), (12, 12, 5, 5), (12,), (12, 12, 5, 5), (12,), (10, 588), (10,)]


def _low_rank(shapes, rank, strength, gen):
    parts = []
    for sh in shapes:
        if len(sh) >= 2:
            m, n = sh[0], math.prod(sh[1:])
            u = torch.linalg.qr(torch.randn(m, rank, generator=gen, dtype=torch.float64))[0]
            v = torch.linalg.qr(torch.randn(n, rank, generator=gen, dtype=torch.float64))[0]
            s = strength * math.sqrt(n) * torch.linspace(3.0, 2.0, rank, dtype=torch.float64)
            parts.append(((u * s) @ v.T).reshape(-1))
        else:
            parts.append(torch.randn(sh[0], generator=gen, dtype=torch.float64))
    return torch.cat(parts)


def test_optimal_shrinkage_values():
    beta = 0.25
    edge = 1 + math.sqrt(beta)
    y = torch.tensor([0.5, 1.0, edge, edge + 1e-9, 3.0, 100.0], dtype=torch.float64)
    eta = optimal_shrinkage(y, beta)
    assert bool((eta[:3] == 0).all()) and float(eta[3]) < 1e-3
    assert float(eta[4]) == pytest.approx(math.sqrt((9 - beta - 1) ** 2 - 4 * beta) / 3)
    assert float(eta[5]) == pytest.approx(100 - (1 + beta) / 100, rel=1e-6)
    assert bool((eta <= y).all())
    with pytest.raises(FedshieldError, match="beta"):
        optimal_shrinkage(y, 1.5)


def test_compensate_layers_removes_pure_noise_and_keeps_vectors():
    gen = make_generator(0)
    P = sum(math.prod(s) for s in LENET_SHAPES)
    sigma = 0.05
    noise = sigma * torch.randn(P, generator=gen, dtype=torch.float64)
    out, info = compensate_layers(noise, LENET_SHAPES, sigma ** 2, rule="shrink", return_info=True)
    i = 0
    for sh in LENET_SHAPES:
        n = math.prod(sh)
        if len(sh) == 1:
            assert torch.equal(out[i:i + n], noise[i:i + n])            # biases untouched
        else:
            assert float(out[i:i + n].norm()) < 0.1 * float(noise[i:i + n].norm())
        i += n
    assert len(info["kept"]) == 5 and info["removed_energy"] > 0.5
    hard = compensate_layers(noise, LENET_SHAPES, sigma ** 2, rule="hard")
    assert float(hard.norm()) < 0.5 * float(noise.norm())
    assert torch.equal(compensate_layers(noise, LENET_SHAPES, 0.0), noise)   # no noise: nothing changes


def test_compensate_layers_recovers_a_low_rank_signal_better_than_the_global_projection():
    gen = make_generator(1)
    sigma = 0.05
    signal = _low_rank(LENET_SHAPES, 2, sigma, gen)
    noisy = signal + sigma * torch.randn(signal.shape, generator=gen, dtype=torch.float64)
    err = lambda x: float((x - signal).norm() / signal.norm())
    shrink = compensate_layers(noisy, LENET_SHAPES, sigma ** 2, rule="shrink")
    hard = compensate_layers(noisy, LENET_SHAPES, sigma ** 2, rule="hard")
    glob = compensate(noisy, sigma ** 2, 6.0)
    assert err(shrink) < 0.5 * err(noisy)
    assert err(shrink) <= err(hard) < err(noisy)
    assert err(shrink) < err(glob)
    assert noisy.dtype == shrink.dtype and noisy.shape == shrink.shape
    f32 = compensate_layers(noisy.float(), LENET_SHAPES, sigma ** 2)
    assert f32.dtype == torch.float32


@pytest.mark.parametrize("args,kw,match", [
    ((torch.zeros(10), [(2, 3)], 0.1), {}, "shapes hold 6 entries"),
    ((torch.zeros(6), [(2, 3)], -1.0), {}, "noise_var"),
    ((torch.zeros(6), [(2, 3)], 0.1), {"rule": "soft"}, "rule"),
    ((torch.tensor([1.0, float("nan"), 0, 0, 0, 0]), [(2, 3)], 0.1), {}, "NaN"),
    ((torch.zeros(6), [(2, 0, 3)], 0.1), {}, "positive dimension"),
    ((torch.zeros(0), [], 0.1), {}, "non-empty"),
])
def test_compensate_layers_bad_input(args, kw, match):
    with pytest.raises(FedshieldError, match=match):
        compensate_layers(*args, **kw)


def test_paper_defense_per_layer_compensation_option():
    model, (x, y) = tiny_cnn(), tiny_data()
    P = sum(param_sizes(model))
    for rule in ("hard", "shrink"):
        d = PaperDefense(x, y, n_slices=4, seed=0, compensation=rule)
        assert f"compensation='{rule}'" in repr(d)
        d.on_round_start(model, 0)
        w = torch.full((3,), 1 / 3)
        ctx = RoundContext(round=0, model=model, weights=w)
        agg = w @ d.client(torch.randn(3, P, generator=make_generator(2)), ctx)
        out = d.server(agg, ctx)
        assert out.shape == agg.shape and ctx.extra["noise_var"] > 0
        with pytest.raises(FedshieldError, match="parameter shapes"):
            d.server(agg, RoundContext(round=0, model=None, weights=w))
    assert "compensation" not in repr(PaperDefense(x, y, seed=0))
    with pytest.raises(FedshieldError, match="compensation"):
        PaperDefense(x, y, compensation="global")


def test_noise_floor_on_every_entry_and_in_the_compensation_variance():
    from fedshield.defense import clip_and_perturb

    P, sigma, floor = 40_000, 0.3, 0.05
    u = torch.zeros(3, P)
    b = size_slices([P], 10)
    out, ids = clip_and_perturb(u, b, ratio=0.2, sigma=sigma, floor=floor, generator=make_generator(0))
    for r in range(3):
        mask = torch.zeros(P, dtype=torch.bool)
        for j in ids[r].tolist():
            mask[b[j]:b[j + 1]] = True
        assert abs(float(out[r][~mask].std()) / floor - 1) < 0.03                    # the floor everywhere else
        assert abs(float(out[r][mask].std()) / math.hypot(sigma, floor) - 1) < 0.03  # both on the chosen slices
    plain, _ = clip_and_perturb(u, b, ratio=0.2, sigma=sigma, generator=make_generator(0))
    assert float((plain == 0).double().mean()) == pytest.approx(0.8, abs=1e-3)   # no floor: the rest exact
    with pytest.raises(FedshieldError, match="floor"):
        clip_and_perturb(u, b, ratio=0.2, sigma=sigma, floor=-1.0)
    model, (x, y) = tiny_cnn(), tiny_data()
    d = PaperDefense(x, y, n_slices=4, seed=0, floor=0.02)
    assert "floor=0.02" in repr(d) and "floor" not in repr(PaperDefense(x, y, seed=0))
    d.on_round_start(model, 0)
    w = torch.full((4,), 0.25)
    ctx = RoundContext(round=0, model=model, weights=w)
    d.server(torch.zeros(sum(param_sizes(model))), ctx)
    assert ctx.extra["noise_var"] == pytest.approx(aggregate_noise_var(w, 0.2, 0.1, n_slices=4) + 0.02 ** 2 * 0.25)


# ------------------------------------------------------------------ randomised boundaries
def test_jitter_bounds_keep_every_slice_inside_the_middle_halves_of_its_neighbours():
    from fedshield.defense import jitter_bounds

    b = torch.tensor([0, 10, 30, 31, 60, 100, 101, 400])
    J = jitter_bounds(b, 500, 0.9, generator=make_generator(3))
    assert J.shape == (500, 8) and (J[:, 0] == 0).all() and (J[:, -1] == 400).all()
    assert (J[:, 1:] > J[:, :-1]).all()                       # no slice empties
    ln = b.diff().double()
    step = (J[:, 1:-1] - b[1:-1]).double()
    assert (step >= -torch.floor(0.45 * ln[:-1])).all() and (step <= torch.floor(0.45 * ln[1:])).all()
    assert (step != 0).float().mean() > 0.5 and len({tuple(r) for r in J.tolist()}) > 400   # they do move
    assert torch.equal(jitter_bounds(b, 3, 0.0), b.repeat(3, 1))
    assert torch.equal(J, jitter_bounds(b, 500, 0.9, generator=make_generator(3)))   # same seed, same draw
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(FedshieldError, match="jitter"):
            jitter_bounds(b, 2, bad)


def test_perturb_with_per_client_bounds_noises_each_clients_own_slices():
    from fedshield.defense import jitter_bounds

    b = torch.tensor([0, 50, 120, 200, 260, 300])
    J = jitter_bounds(b, 7, 0.5, generator=make_generator(0))
    out, ids = perturb(torch.zeros(7, 300), J, 0.4, 1.0, generator=make_generator(1))
    for r in range(7):
        want = torch.zeros(300, dtype=torch.bool)
        for j in ids[r].tolist():
            want[int(J[r, j]):int(J[r, j + 1])] = True
        assert torch.equal(out[r] != 0, want)
    with pytest.raises(FedshieldError, match="per-client"):
        perturb(torch.zeros(7, 300), J[:3], 0.4, 1.0)
    with pytest.raises(FedshieldError, match="per-client"):
        perturb(torch.zeros(300), J, 0.4, 1.0)
    bad = J.clone(); bad[2, 3] = bad[2, 2]
    with pytest.raises(FedshieldError, match="increasing"):
        perturb(torch.zeros(7, 300), bad, 0.4, 1.0)


def test_clip_and_perturb_jitters_each_rows_boundaries_before_the_noise():
    """The jitter is drawn first from the generator, then the slices and the noise: the same as
    moving the boundaries by hand and perturbing with the moved ones."""
    from fedshield.defense import clip_and_perturb, jitter_bounds

    b = torch.tensor([0, 50, 120, 200, 260, 300])
    x = torch.randn(6, 300, generator=make_generator(2))
    out, ids, J = clip_and_perturb(x, b, ratio=0.4, sigma=1.0, floor=0.1, jitter=0.5, generator=make_generator(5),
                                   return_bounds=True)
    gen = make_generator(5)
    want_J = jitter_bounds(b, 6, 0.5, generator=gen)
    want, want_ids = clip_and_perturb(x, want_J, ratio=0.4, sigma=1.0, floor=0.1, generator=gen)
    assert torch.equal(J, want_J) and torch.equal(ids, want_ids) and torch.equal(out, want)
    one, _, J1 = clip_and_perturb(x[0], b, ratio=0.4, sigma=1.0, jitter=0.5, generator=make_generator(5),
                                  return_bounds=True)
    assert J1.shape == (6,) and torch.equal(J1, want_J[0])
    assert clip_and_perturb(x, b, ratio=0.4, sigma=1.0, return_bounds=True)[2] is b   # no jitter: the bounds given
    with pytest.raises(FedshieldError, match="jitter"):
        clip_and_perturb(x, b, ratio=0.4, sigma=1.0, jitter=1.0)


def test_paper_defense_with_jitter_draws_its_boundaries_per_client_and_keeps_the_noise_level():
    d = PaperDefense(None, None, slicing="size", n_slices=10, ratio=0.2, sigma=1.0, jitter=0.5, seed=0,
                     compensate=False)
    model = nn.Linear(40, 25)
    d.on_round_start(model, 0)
    m, P = 400, 40 * 25 + 25
    ctx = RoundContext(round=0, model=model, weights=torch.full((m,), 1.0 / m), client_ids=list(range(m)))
    out = d.client(torch.zeros(m, P), ctx)
    J = ctx.extra["slice_bounds"]
    assert J.shape == (m, 11) and not (J == d.bounds).all(1).all()
    # every entry is noised with probability k / s, edges included: the variance the compensation assumes
    frac = (out != 0).double().mean(0)
    assert abs(frac.mean().item() - 0.2) < 0.01 and frac.min().item() > 0.12 and frac.max().item() < 0.28
    assert "jitter=0.5" in repr(d) and "jitter" not in repr(PaperDefense(None, None, slicing="size"))
    g = d.perturb_gradient(torch.zeros(P), model)
    assert 0 < int((g != 0).sum()) < P
    with pytest.raises(FedshieldError, match="jitter"):
        PaperDefense(None, None, slicing="size", jitter=1.5)
