"""The noise-aware MAP attacker and its line-searched batched L-BFGS."""
import pytest
import torch

from fedshield.attacks.dlg import dlg_batch
from fedshield.attacks.lbfgs import lbfgs_armijo_batched
from fedshield.attacks.common import victim_gradients
from fedshield.data import load_dataset
from fedshield.attacks.map import map_attack, map_attack_batch, noise_weights, tv_prior_weight
from fedshield.errors import FedshieldError
from fedshield.metrics import psnr, psnr_floor
from fedshield.models import build_model, dlg_init_
from fedshield.utils import make_generator


def _quadratic(A, b):
    def fg(z, idx):
        r = torch.einsum("vij,vj->vi", A[idx], z) - b[idx]
        return 0.5 * (r * r).sum(1), torch.einsum("vji,vj->vi", A[idx], r)
    return fg


def test_lbfgs_armijo_solves_each_row_independently():
    g = torch.Generator().manual_seed(0)
    V, n = 5, 12
    A = torch.randn(V, n, n, generator=g, dtype=torch.float64) + 3 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(V, n, generator=g, dtype=torch.float64)
    z, f, hist, ev = lbfgs_armijo_batched(_quadratic(A, b), torch.zeros(V, n, dtype=torch.float64), iterations=200)
    sol = torch.linalg.solve(A, b.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(z, sol, atol=1e-5)
    for h in hist:   # monotone: the line search never accepts an increase
        assert all(b_ <= a + 1e-12 for a, b_ in zip(h, h[1:]))
    # a row's path does not depend on the other rows
    z1, *_ = lbfgs_armijo_batched(_quadratic(A[2:3], b[2:3]), torch.zeros(1, n, dtype=torch.float64), iterations=200)
    assert torch.allclose(z1[0], z[2], atol=1e-8)


def _lenet_victims(n=2, seed=0, images=None):
    torch.manual_seed(seed)
    model = build_model("lenet", "mnist").eval()
    dlg_init_(model, make_generator(seed))
    if images is None:   # smooth synthetic images (blurred noise), for the tests that do not score against a floor
        g = torch.Generator().manual_seed(seed + 1)
        x = torch.nn.functional.avg_pool2d(torch.rand(n, 1, 32, 32, generator=g), 5, 1)[..., :28, :28].clamp(0, 1)
        y = torch.arange(n) % 10
    else:
        x, y = images
    return model, x, y, victim_gradients(model, x, y)


def _mnist(data_root, n=2):
    xte, yte = load_dataset("mnist", "test", data_root)
    return xte[:n], yte[:n]


def test_map_reconstructs_an_undefended_update(data_root):
    model, x, y, target = _lenet_victims(2, images=_mnist(data_root))
    res = map_attack_batch(model, target, (1, 28, 28), label=y, iterations=100, restarts=1,
                           generator=make_generator(0))
    p = psnr(res.x.flatten(0, 1), x)
    assert bool((p > psnr_floor(x) + 8).all()), p   # far above any guess without the update
    assert res.x.min() >= 0 and res.x.max() <= 1


def test_map_beats_dlg_against_dp_noise_and_clears_the_floor(data_root):
    """DP-G at the paper's variance: DLG runs away from the noisy target and ends below the floor;
    the MAP attacker, which models the noise, ends above it."""
    model, x, y, target = _lenet_victims(2, seed=3, images=_mnist(data_root))
    noisy = target + 0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(9))
    m = map_attack_batch(model, noisy, (1, 28, 28), label=y, noise_var=1e-2, tv=5.0, iterations=100, restarts=1,
                         generator=make_generator(1))
    d = dlg_batch(model, noisy, (1, 28, 28), label=y, iterations=10, generator=make_generator(1))
    pm, pd = psnr(m.x.flatten(0, 1), x), psnr(d.x.flatten(0, 1).clamp(0, 1), x)
    floor = psnr_floor(x)
    assert bool((pm > floor).all()) and bool((pd < floor).all()), (pm, pd, floor)


def test_map_keeps_the_best_start():
    """Of three starts, the one at the true image has the lowest objective: it is the one returned,
    whichever position it has among the starts."""
    model, x, y, target = _lenet_victims(1, seed=5)
    g = torch.Generator().manual_seed(4)
    for pos in (0, 2):
        inits = torch.rand(1, 3, 1, 1, 28, 28, generator=g)
        inits[0, pos] = x[0].clamp(0.03, 0.97)
        res = map_attack_batch(model, target, (1, 28, 28), label=y, restarts=3, init=inits, iterations=5,
                               generator=make_generator(0))
        assert float(psnr(res.x[0], x)) > 25
        alone = map_attack_batch(model, target, (1, 28, 28), label=y, restarts=1, init=inits[:, (pos + 1) % 3:(pos + 1) % 3 + 1],
                                 iterations=5, generator=make_generator(0))
        assert float(res.history[-1, 0]) < float(alone.history[-1, 0])


def test_noise_weights_and_prior():
    t = torch.ones(2, 4)
    w = noise_weights(t, torch.tensor([0.0, 1.0, 0.0, 3.0]), mask=torch.tensor([True, True, False, True]), tau_rel=0.1)
    assert torch.allclose(w[0], torch.tensor([100.0, 1 / 1.01, 0.0, 1 / 3.01]))
    flat = torch.full((3, 1, 8, 8), 0.3)
    with pytest.raises(FedshieldError, match="constant"):
        tv_prior_weight(flat)
    ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    assert tv_prior_weight(ramp) == pytest.approx(2 * 8 * 7 / (8 * 1.0))   # 112 differences, sum |d| = 8


def test_map_errors():
    model, x, y, target = _lenet_victims(1)
    with pytest.raises(FedshieldError, match="labels"):
        map_attack_batch(model, target, (1, 28, 28), label=None)
    with pytest.raises(FedshieldError, match="noise_var"):
        map_attack_batch(model, target, (1, 28, 28), label=y, noise_var=-1.0, iterations=1)
    with pytest.raises(FedshieldError, match="tv"):
        map_attack_batch(model, target, (1, 28, 28), label=y, tv=-1.0, iterations=1)
    with pytest.raises(FedshieldError, match="NaN"):
        map_attack(model, target[0] * float("nan"), (1, 28, 28), label=y)
