"""fedshield.bounds: the Fisher information of an image in noised updates and its Cramér-Rao bound."""
import math

import pytest
import torch
from torch import nn

from fedshield import FedshieldError
from fedshield.attacks.common import victim_gradient
from fedshield.bounds import (bound_rows, cramer_rao, fisher_information, gram, spread_rounds, update_jacobian)
from fedshield.models import LeNet, dlg_init_
from fedshield.utils import make_generator


def _random(shape, seed):
    return torch.randn(*shape, generator=make_generator(seed), dtype=torch.float64)


def test_a_linear_release_has_the_textbook_bound():
    """Release A x + N(0, s2 I): F = A^T A / s2 and the bound is s2 trace((A^T A)^-1) / D."""
    A, s2 = _random((40, 12), 0), 0.3
    res = cramer_rao(fisher_information([A], s2))
    exact = s2 * float(torch.linalg.inv(A.T @ A).trace()) / 12
    assert res["mse_bound"] == pytest.approx(exact, rel=1e-10)
    assert res["psnr_bound"] == pytest.approx(10 * math.log10(1 / exact), rel=1e-10)
    assert res["n_null"] == 0
    # two different releases add their information
    B = _random((40, 12), 1)
    two = cramer_rao(fisher_information([A, B], s2))["mse_bound"]
    assert two == pytest.approx(s2 * float(torch.linalg.inv(A.T @ A + B.T @ B).trace()) / 12, rel=1e-10)


def test_a_linear_model_through_the_jacobian():
    """A linear layer W x + b with loss <logits, v>: the shared gradient is (v x^T, v), linear in
    x with J^T J = ||v||^2 I, so the bound is s2 / ||v||^2 per pixel."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    v = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    loss = lambda logits, y: (logits * v).sum()
    J = update_jacobian(model, _random((1, 4, 4), 3), 0, loss_fn=loss)
    assert J.shape == (3 * 16 + 3, 16)
    res = cramer_rao(fisher_information([J], 1e-2))
    assert res["mse_bound"] == pytest.approx(1e-2 / float(v @ v), rel=1e-10)


def test_doubling_the_releases_at_a_fixed_model_halves_the_bound():
    G = gram(_random((30, 10), 4))
    rows = {(r["sigma2"], r["k"]): r for r in bound_rows(G, [1e-2, 2e-2], [10, 20])}
    assert rows[(1e-2, 20)]["mse_bound"] == pytest.approx(rows[(1e-2, 10)]["mse_bound"] / 2, rel=1e-10)
    assert rows[(1e-2, 20)]["psnr_bound"] - rows[(1e-2, 10)]["psnr_bound"] == pytest.approx(10 * math.log10(2))
    assert rows[(2e-2, 10)]["mse_bound"] == pytest.approx(2 * rows[(1e-2, 10)]["mse_bound"], rel=1e-10)
    # k copies of one release are k times its information
    assert rows[(1e-2, 10)]["mse_bound"] == pytest.approx(
        cramer_rao(fisher_information([_random((30, 10), 4)] * 10, 1e-2))["mse_bound"], rel=1e-10)


def test_the_jacobian_matches_finite_differences_on_a_tiny_lenet():
    model = LeNet(in_channels=1, num_classes=4, image_size=6, n_conv=2, channels=3).double()
    dlg_init_(model, make_generator(5))
    x = torch.rand(1, 1, 6, 6, generator=make_generator(6), dtype=torch.float64)
    y = torch.tensor([2])
    J = update_jacobian(model, x, y, chunk_size=7)
    P = sum(p.numel() for p in model.parameters())
    assert J.shape == (P, 36)
    h = 1e-6
    fd = torch.stack([(victim_gradient(model, x + h * e, y) - victim_gradient(model, x - h * e, y)) / (2 * h)
                      for e in torch.eye(36, dtype=torch.float64).view(36, 1, 1, 6, 6)], dim=1)
    assert float((fd - J).abs().max()) < 1e-7 * float(J.abs().max())
    assert float(J.abs().max()) > 0
    # float32 gives the same Jacobian to its precision; the model is untouched
    J32 = update_jacobian(model, x, y, dtype=torch.float32)
    assert J32.dtype == torch.float32 and float((J32.double() - J).abs().max()) < 1e-4 * float(J.abs().max())
    assert next(model.parameters()).dtype == torch.float64


def test_a_singular_information_counts_its_null_directions():
    """Fewer released numbers than pixels: D - P directions carry nothing; the pseudo-inverse bound
    covers the identifiable part (and is below any bound that adds information-poor directions)."""
    A, s2 = _random((5, 9), 7), 0.1
    res = cramer_rao(fisher_information([A], s2))
    assert res["n_null"] == 4
    assert res["mse_bound"] == pytest.approx(s2 * float(torch.linalg.pinv(A.T @ A).trace()) / 9, rel=1e-8)
    assert cramer_rao(torch.zeros(3, 3))["mse_bound"] == math.inf


def test_rounds_spread_over_a_run_and_nest():
    assert spread_rounds(2000, 1) == [0]
    assert spread_rounds(2000, 40) == list(range(0, 2000, 50))
    for k1, k2 in ((1, 10), (10, 40), (40, 200), (100, 200)):
        assert set(spread_rounds(2000, k1)) <= set(spread_rounds(2000, k2))
    grams = {r: gram(_random((6, 4), 100 + r)) for r in spread_rounds(20, 4)}
    (row,) = bound_rows(grams, [0.5], [2], rounds=20)
    assert row["mse_bound"] == pytest.approx(cramer_rao((grams[0] + grams[10]) / 0.5)["mse_bound"], rel=1e-12)
    with pytest.raises(FedshieldError, match="lacks"):
        bound_rows(grams, [0.5], [3], rounds=20)
    with pytest.raises(FedshieldError):
        spread_rounds(20, 21)


def test_bad_input():
    with pytest.raises(FedshieldError):
        fisher_information([], 1.0)
    with pytest.raises(FedshieldError):
        fisher_information([_random((3, 2), 0)], 0.0)
    with pytest.raises(FedshieldError):
        cramer_rao(torch.ones(2, 3))
    model = LeNet(in_channels=1, num_classes=4, image_size=6, n_conv=2, channels=3)
    with pytest.raises(FedshieldError):
        update_jacobian(model, torch.rand(2, 1, 6, 6), [0, 1])
    with pytest.raises(FedshieldError):
        update_jacobian(model, torch.full((1, 6, 6), float("nan")), 0)
