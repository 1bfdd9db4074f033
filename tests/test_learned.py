"""The learned-inversion attacker: the inverter on a problem with a known answer, its input checks,
determinism, the fresh noise of the training pairs, and the experiment on a tiny config."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from fedshield.attacks.learned import LearnedInversion, invert, train_inverter
from fedshield.baselines import make_defense
from fedshield.errors import FedshieldError
from fedshield.experiments.attack_campaign import dlg_config
from fedshield.experiments.learned import LearnedOptions, defended_pairs, learned_key, run_learned
from fedshield.utils import make_generator

pytestmark = pytest.mark.usefixtures("one_thread")


def linear_problem(n: int, seed: int = 0, noise: float = 0.0):
    """Images in [0, 1] on a 6-dimensional manifold of 4 x 4 pictures (a sigmoid of a random mix of
    6 patterns), and a "model" whose update is a fixed linear map of the image: ``u = A x`` (+ noise)."""
    g = make_generator(seed)
    basis = torch.randn(6, 16, generator=make_generator(123))
    A = torch.randn(40, 16, generator=make_generator(456))
    z = torch.randn(n, 6, generator=g)
    x = torch.sigmoid(z @ basis).view(n, 1, 4, 4)
    u = x.flatten(1) @ A.T
    if noise:
        u = u + noise * torch.randn(u.shape, generator=g)
    return u, x


def test_inverter_recovers_held_out_images_far_better_than_the_mean_image():
    u, x = linear_problem(1200)
    ut, xt = u[:1000], x[:1000]
    uh, xh = u[1000:], x[1000:]
    inv = train_inverter(ut, xt, hidden=64, epochs=40, lr=3e-3, batch_size=64, generator=make_generator(0))
    res = invert(inv, uh)
    assert res.x.shape == (200, 1, 1, 4, 4)
    assert 0 <= res.x.min() and res.x.max() <= 1
    mse = (res.x[:, 0] - xh).pow(2).mean().item()
    mse_mean = (xt.mean(0, keepdim=True) - xh).pow(2).mean().item()
    assert mse < 0.05 * mse_mean, (mse, mse_mean)
    assert inv.history[-1] < inv.history[0]
    assert res.label.shape == (200, 1) and (res.label == -1).all()
    assert res.history.shape == (40, 200) and torch.isnan(res.loss).all()


def test_resample_redraws_the_noise_each_epoch_and_beats_one_draw():
    """Noise of the size of the signal, redrawn for every batch after the first epoch: the network
    cannot memorise one draw, and inverts held-out noisy updates better than when trained on one."""
    u, x = linear_problem(300)
    g = make_generator(9)
    noisy = lambda idx: u[idx] + 3.0 * torch.randn(len(idx), u.shape[1], generator=g)   # noqa: E731
    calls = []

    def resample(idx):
        calls.append(len(idx))
        return noisy(idx)

    first = noisy(torch.arange(200))
    kw = dict(hidden=256, epochs=60, lr=3e-3, batch_size=50)
    fresh = train_inverter(first, x[:200], resample=resample, generator=make_generator(1), **kw)
    fixed = train_inverter(first, x[:200], generator=make_generator(1), **kw)
    assert sum(calls) == 59 * 200
    held = noisy(torch.arange(200, 300))
    err = {k: (invert(m, held).x[:, 0] - x[200:]).pow(2).mean().item() for k, m in (("fresh", fresh), ("fixed", fixed))}
    assert err["fresh"] < 0.8 * err["fixed"], err


def test_same_generator_seed_same_inverter():
    u, x = linear_problem(200)
    kw = dict(hidden=16, epochs=3, batch_size=32)
    a = invert(train_inverter(u, x, generator=make_generator(5), **kw), u[:10]).x
    b = invert(train_inverter(u, x, generator=make_generator(5), **kw), u[:10]).x
    c = invert(train_inverter(u, x, generator=make_generator(6), **kw), u[:10]).x
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_constant_entries_are_centred_not_blown_up():
    u, x = linear_problem(100)
    u = torch.cat([u, torch.zeros(100, 5)], 1)   # always pruned entries
    inv = train_inverter(u, x, hidden=8, epochs=1, generator=make_generator(0))
    assert torch.equal(inv.scale[-5:], torch.ones(5))
    assert torch.isfinite(invert(inv, u).x).all()


@pytest.mark.parametrize("bad, match", [
    (lambda u, x: (u.numpy(), x), "torch.Tensor"),
    (lambda u, x: (u[0], x), r"\[N, P\]"),
    (lambda u, x: (u.long(), x), "floating point"),
    (lambda u, x: (torch.where(torch.arange(u.shape[1]) == 3, float("nan"), u), x), "NaN or Inf"),
    (lambda u, x: (torch.where(torch.arange(u.shape[1]) == 3, float("inf"), u), x), "NaN or Inf"),
    (lambda u, x: (u, x[:-1]), "one image per update"),
    (lambda u, x: (u, x.flatten(1)), r"\[N, C, H, W\]"),
    (lambda u, x: (u, x * 2), r"\[0, 1\]"),
    (lambda u, x: (u[:1], x[:1]), "at least 2 pairs"),
])
def test_bad_training_input_is_refused(bad, match):
    u, x = linear_problem(20)
    u2, x2 = bad(u, x)
    with pytest.raises(FedshieldError, match=match):
        train_inverter(u2, x2, hidden=4, epochs=1)


@pytest.mark.parametrize("kw, match", [(dict(hidden=0), "hidden"), (dict(epochs=1.5), "epochs"),
                                       (dict(batch_size=True), "batch_size"), (dict(lr=0.0), "lr"),
                                       (dict(lr=float("nan")), "lr"), (dict(weight_decay=-1.0), "weight_decay"),
                                       (dict(resample=3), "resample")])
def test_bad_training_options_are_refused(kw, match):
    u, x = linear_problem(20)
    with pytest.raises(FedshieldError, match=match):
        train_inverter(u, x, **{"hidden": 4, "epochs": 1, **kw})


def test_bad_resample_output_and_bad_victims_are_refused():
    u, x = linear_problem(20)
    with pytest.raises(FedshieldError, match="resample returned shape"):
        train_inverter(u, x, hidden=4, epochs=2, batch_size=10, resample=lambda idx: u[idx][:, :-1])
    with pytest.raises(FedshieldError, match="NaN or Inf"):
        train_inverter(u, x, hidden=4, epochs=2, batch_size=10, resample=lambda idx: u[idx] * float("nan"))
    inv = train_inverter(u, x, hidden=4, epochs=1)
    assert isinstance(inv, LearnedInversion)
    with pytest.raises(FedshieldError, match="trained on 40"):
        invert(inv, u[:, :-1])
    with pytest.raises(FedshieldError, match="NaN or Inf"):
        invert(inv, u * float("nan"))
    with pytest.raises(FedshieldError, match="LearnedInversion"):
        invert(nn.Linear(40, 16), u)


def test_training_pairs_get_fresh_noise_per_seed_and_the_same_for_the_same_seed():
    model = nn.Linear(3, 2)
    g = torch.zeros(4, 30)
    x, y = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
    d = make_defense("dp-g", seed=1009)
    a, b, c = (defended_pairs(d, model, g, x, y, s) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])   # every row (client) its own draw
    gc = make_defense("gc", p=0.5)   # no noise: the seed changes nothing
    u = torch.randn(4, 30, generator=make_generator(0))
    assert torch.equal(defended_pairs(gc, model, u, x, y, 3), defended_pairs(gc, model, u, x, y, 4))
    assert (defended_pairs(gc, model, u, x, y, 3) == 0).sum(1).tolist() == [15] * 4


def test_options_and_configs_are_checked():
    with pytest.raises(FedshieldError, match="train"):
        LearnedOptions(train=1).validate()
    with pytest.raises(FedshieldError, match="epochs"):
        LearnedOptions(epochs=0).validate()
    with pytest.raises(FedshieldError, match="batch_size must be 1"):
        learned_key(dlg_config("mnist", "none", batch_size=2), LearnedOptions())
    with pytest.raises(FedshieldError, match="victim must be 'gradient'"):
        learned_key(dlg_config("mnist", "none", victim="fedavg"), LearnedOptions())
    # the learned attacker ignores the DLG attacker's mask: the muted and plain cells share a result
    assert learned_key(dlg_config("mnist", "ours", True), LearnedOptions()) == \
        learned_key(dlg_config("mnist", "ours", False), LearnedOptions())
    assert learned_key(dlg_config("mnist", "ours"), LearnedOptions()) != \
        learned_key(dlg_config("mnist", "ours"), LearnedOptions(epochs=3))


def test_run_learned_on_a_tiny_config(data_root, tmp_path):
    cfg = dlg_config("mnist", "ours", True, images=2)
    opts = LearnedOptions(train=24, hidden=8, epochs=2, batch_size=8)
    r = run_learned(cfg, opts, data_dir=data_root, progress=False, cache_dir=tmp_path)
    assert r["x_rec"].shape == r["x_true"].shape == (2, 1, 1, 28, 28)
    assert r["x_rec"].dtype == np.float32 and 0 <= r["x_rec"].min() and r["x_rec"].max() <= 1
    assert [row["victim"] for row in r["rows"]] == [0, 1]
    assert set(r["rows"][0]) >= {"victim", "index", "label", "psnr", "ssim", "seconds"}
    assert all(np.isfinite(row["psnr"]) and row["seconds"] > 0 for row in r["rows"])
    assert r["train"] == 24 and len(r["history"]) == 2 and not r["cached"]
    assert r["config"]["muted"] is False
    again = run_learned(cfg, opts, data_dir=data_root, progress=False, cache_dir=tmp_path)
    assert again["cached"] and again["rows"] == r["rows"] and np.array_equal(again["x_rec"], r["x_rec"])
    other = run_learned(dataclasses.replace(cfg, defense="none", muted=False), opts, data_dir=data_root,
                        progress=False, cache=False)
    assert other["key"] != r["key"]
    # the victims are the DLG experiment's: the same test images
    assert [row["index"] for row in other["rows"]] == [row["index"] for row in r["rows"]]
