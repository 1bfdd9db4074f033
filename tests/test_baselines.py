"""The comparison defenses change exactly what they claim, and the registry builds them."""
import math

import pytest
import torch
import torch.nn.functional as F

from fedshield.attacks import param_ranges, victim_gradients
from fedshield.baselines import (DEFENSES, DPGaussian, DPLaplace, GradientCompression, PLD, feature_scores,
                                 make_defense, paper_defense_kwargs)
from fedshield.errors import FedshieldError
from fedshield.hooks import Defense, RoundContext
from fedshield.models import ConvNet, LeNet


pytestmark = pytest.mark.usefixtures("one_thread")



def _ctx(model, data=None, m=1):
    return RoundContext(round=0, model=model, weights=torch.full((m,), 1.0 / m), client_data=data)


# --------------------------------------------------------------------------------------------- GC
@pytest.mark.parametrize("p", [0.8, 0.9, 0.35])
def test_gc_prunes_exactly_the_smallest_fraction(p):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(5, 1003, generator=g) * torch.logspace(-3, 0, 1003)
    out = GradientCompression(p).client(u, None)
    k = math.floor(p * 1003 + 1e-9)
    zeroed = out == 0
    assert (zeroed.sum(1) == k).all()
    kept = ~zeroed
    assert torch.equal(out[kept], u[kept])  # survivors are bit-identical
    for r in range(5):  # every survivor is at least as large as every pruned entry
        assert u[r][kept[r]].abs().min() >= u[r][zeroed[r]].abs().max()


def test_gc_rejects_bad_rate_and_shape():
    with pytest.raises(FedshieldError):
        GradientCompression(1.0)
    with pytest.raises(FedshieldError):
        GradientCompression(-0.1)
    with pytest.raises(FedshieldError):
        GradientCompression(0.5).client(torch.zeros(10), None)


# --------------------------------------------------------------------------------------------- DP
@pytest.mark.parametrize("cls", [DPGaussian, DPLaplace])
@pytest.mark.parametrize("variance", [1e-2, 4e-4])
def test_dp_noise_has_the_stated_variance(cls, variance):
    u = torch.linspace(-1, 1, 200_000).view(2, -1)
    noise = cls(variance, seed=1).client(u, None) - u
    n = noise.reshape(-1).double()
    # sample std within 1% (N = 2e5: the standard error of the std is ~0.2-0.4%)
    assert abs(n.std().item() / math.sqrt(variance) - 1) < 0.01
    assert abs(n.mean().item()) < 5 * math.sqrt(variance / n.numel())


def test_laplace_is_laplace_and_gaussian_is_gaussian():
    u = torch.zeros(1, 400_000)
    lap = DPLaplace(1e-2, seed=3).client(u, None).double().view(-1)
    gau = DPGaussian(1e-2, seed=3).client(u, None).double().view(-1)
    b = math.sqrt(1e-2 / 2)

    def kurt(z):
        z = z - z.mean()
        return ((z ** 4).mean() / (z ** 2).mean() ** 2).item()

    assert abs(kurt(lap) - 6.0) < 0.3  # Laplace kurtosis 6
    assert abs(kurt(gau) - 3.0) < 0.1  # Gaussian 3
    assert abs(lap.abs().mean().item() / b - 1) < 0.01  # E|L| = b


def test_dp_randomness_is_seeded_and_unpredictable_without_seed():
    u = torch.zeros(3, 100)
    a = DPGaussian(seed=5).client(u, None)
    assert torch.equal(a, DPGaussian(seed=5).client(u, None))
    assert not torch.equal(a, DPGaussian(seed=6).client(u, None))
    assert not torch.equal(DPLaplace().client(u, None), DPLaplace().client(u, None))
    assert (a[0] != a[1]).all()  # every row gets its own noise


# --------------------------------------------------------------------------------------------- PLD
def _lenet16():
    torch.manual_seed(0)
    return LeNet(in_channels=1, num_classes=4, image_size=16, n_conv=2, channels=4, dlg_init=True).eval()


def test_pld_feature_scores_match_a_per_feature_autograd_loop():
    m = _lenet16()
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    s = feature_scores(m, x)
    xr = x.clone().requires_grad_(True)
    r = m.features(xr)
    ref = torch.zeros_like(r)
    for j in range(r.shape[1]):  # Soteria's loop: one backward per feature
        (gx,) = torch.autograd.grad(r[:, j].sum(), xr, retain_graph=True)
        ref[:, j] = gx.flatten(1).norm(dim=1) / r[:, j].detach().abs()
    assert torch.allclose(s, ref, rtol=1e-4, atol=1e-6)


def test_pld_feature_scores_of_a_wide_model_in_pieces_are_the_same(monkeypatch):
    import fedshield.baselines as B
    m = _lenet16()
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    whole = feature_scores(m, x)
    monkeypatch.setattr(B, "_WIDE_FEATURES", 1)   # this small model counts as wide: the chunked path
    monkeypatch.setattr(B, "_JAC_CHUNK", 7)
    assert torch.allclose(feature_scores(m, x), whole, rtol=1e-5, atol=1e-7)


def test_pld_prunes_only_fc_weight_columns_of_the_smallest_scores():
    m = _lenet16()
    gen = torch.Generator().manual_seed(2)
    xs = [torch.rand(2, 1, 16, 16, generator=gen), torch.rand(1, 1, 16, 16, generator=gen)]
    ys = [torch.tensor([0, 3]), torch.tensor([1])]
    upd = torch.stack([victim_gradients(m, x.unsqueeze(0), y.unsqueeze(0))[0] for x, y in zip(xs, ys)])
    p = 0.6
    ctx = _ctx(m, list(zip(xs, ys)), 2)
    out = PLD(p).client(upd, ctx)
    (w0, w1) = param_ranges(m)["fc.weight"]
    K, Fd = m.fc.out_features, m.fc.in_features
    changed = out != upd
    assert not changed[:, :w0].any() and not changed[:, w1:].any()  # FC bias and all else untouched
    cols_zero = (out[:, w0:w1].view(2, K, Fd) == 0).all(1)  # [m, F]
    k = math.floor(p * Fd + 1e-9)
    assert (cols_zero.sum(1) == k).all()
    for c in range(2):
        sc = feature_scores(m, xs[c]).sum(0)
        assert sc[cols_zero[c]].max() <= sc[~cols_zero[c]].min()  # the smallest-ratio features
    assert not torch.equal(cols_zero[0], cols_zero[1])  # masks are per client
    assert torch.equal(ctx.extra["pld_kept_features"], ~cols_zero)


def test_pld_probe_scores_estimate_the_exact_ones():
    m = _lenet16()
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    exact = feature_scores(m, x)
    est = feature_scores(m, x, probes=4000, generator=torch.Generator().manual_seed(2))
    rel = (est / exact - 1).abs()
    assert rel.max() < 0.1 and rel.mean() < 0.03  # sqrt(2/K)/2 ~ 1.1% per entry
    few = feature_scores(m, x, probes=8, generator=torch.Generator().manual_seed(2))
    assert (few / exact - 1).abs().mean() > rel.mean()  # fewer probes, noisier: it is an estimate
    torch.manual_seed(0)
    c = ConvNet(width=2).eval()
    xc = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ec = feature_scores(c, xc, eps=0.1)
    pc = feature_scores(c, xc, eps=0.1, probes=1000, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(pc, ec, rtol=0.15, atol=1e-6)  # ~2.2% relative std per entry
    with pytest.raises(FedshieldError, match="probes"):
        PLD(0.5, probes=0)
    assert "probes=16" in repr(PLD(0.5, probes=16, seed=1))


def test_pld_max_samples_scores_a_seeded_subset():
    m = _lenet16()
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(5, 1, 16, 16, generator=gen)
    y = torch.tensor([0, 1, 2, 3, 0])
    keep = [PLD(0.5, max_samples=1, seed=7).masks(m, [(x, y)])[0] for _ in range(2)]
    assert torch.equal(keep[0], keep[1])  # same seed, same subset
    per_image = feature_scores(m, x)  # [5, F]
    k = math.floor(0.5 * per_image.shape[1] + 1e-9)
    single = [torch.ones(per_image.shape[1], dtype=torch.bool).scatter_(0, s.topk(k, largest=False).indices, False)
              for s in per_image]
    assert any(torch.equal(keep[0], s) for s in single)  # the mask of exactly one of the images
    full = PLD(0.5).masks(m, [(x, y)])[0]
    assert torch.equal(PLD(0.5, max_samples=5, seed=0).masks(m, [(x, y)])[0], full)  # cap >= size: all samples
    for bad in (0, "a", 2.5):
        with pytest.raises(FedshieldError, match="max_samples"):
            PLD(0.5, max_samples=bad)
    assert "max_samples=1" in repr(PLD(0.5, max_samples=1, seed=7)) and repr(PLD(0.5)) == "PLD(p=0.5)"


def test_pld_needs_client_data():
    m = _lenet16()
    upd = torch.zeros(1, sum(p.numel() for p in m.parameters()))
    with pytest.raises(FedshieldError, match="client_data"):
        PLD(0.5).client(upd, _ctx(m, None))


def test_pld_on_convnet_touches_only_fc_weight():
    torch.manual_seed(0)
    m = ConvNet(width=2).eval()
    x = torch.rand(1, 3, 32, 32)
    y = torch.tensor([4])
    upd = victim_gradients(m, x.unsqueeze(0), y.unsqueeze(0))
    out = PLD(0.8, eps=0.1).client(upd, _ctx(m, [(x, y)]))
    (w0, w1) = param_ranges(m)["fc.weight"]
    ch = (out != upd)[0]
    assert ch[w0:w1].any() and not ch[:w0].any() and not ch[w1:].any()


# --------------------------------------------------------------------------------------------- registry
def test_registry_and_paper_settings():
    assert set(DEFENSES) == {"none", "ours", "gc", "dp-g", "dp-l", "pld"}
    assert make_defense("gc").p == 0.8 and make_defense("gc", attack="ig").p == 0.9
    assert make_defense("pld").p == 0.6 and make_defense("pld", attack="ig").p == 0.8
    assert make_defense("dp-g").variance == 1e-2 and make_defense("dp-l", attack="ig").variance == 1e-2
    assert paper_defense_kwargs("ours", "dlg")["ratio"] == 0.2 and paper_defense_kwargs("ours", "ig")["ratio"] == 0.3
    assert make_defense("gc", p=0.5).p == 0.5
    assert type(make_defense("none")) is Defense
    with pytest.raises(FedshieldError, match="choose from"):
        make_defense("soteria")
    with pytest.raises(FedshieldError, match="bad option"):
        make_defense("gc", q=3)
    with pytest.raises(FedshieldError, match="root"):
        make_defense("ours")


def test_registry_builds_the_papers_defense():
    from fedshield.defense import PaperDefense

    m = _lenet16()
    rx, ry = torch.rand(8, 1, 16, 16), torch.randint(0, 4, (8,))
    d = make_defense("ours", model=m, root=(rx, ry), attack="ig", seed=0)
    assert isinstance(d, PaperDefense) and d.ratio == 0.3 and abs(d.sigma - 0.1) < 1e-12
    d.on_round_start(m, 0)
    upd = torch.zeros(2, sum(p.numel() for p in m.parameters()))
    ctx = _ctx(m, None, 2)
    out = d.client(upd, ctx)
    assert out.shape == upd.shape and (out != 0).any()


def test_dp_noise_on_every_local_step():
    """``where="step"``: the shared update is left alone, each local step's gradient of an active
    client gets noise of the stated variance, an inactive client's stays zero."""
    import torch

    from fedshield.baselines import DPGaussian, DPLaplace
    from fedshield.errors import FedshieldError

    for cls in (DPGaussian, DPLaplace):
        d = cls(variance=0.04, seed=0, where="step")
        assert d.on_local_steps and "where='step'" in repr(d)
        u = torch.randn(3, 50)
        assert torch.equal(d.client(u, None), u)
        grads = {"w": torch.zeros(4, 20_000), "b": torch.zeros(4, 3, 2)}
        active = torch.tensor([True, False, True, True])
        out = d.local_step(grads, active)
        assert bool((out["w"][1] == 0).all()) and bool((out["b"][1] == 0).all())
        assert abs(float(out["w"][[0, 2, 3]].std()) / 0.2 - 1) < 0.02
        assert not cls(variance=0.04).on_local_steps
    with pytest.raises(FedshieldError, match="where"):
        DPGaussian(where="round")
