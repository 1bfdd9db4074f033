"""Attacks: victims, label inference, DLG / Inverting Gradients (batched == per-image), muted
attackers, the experiment runner and its CLI."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

import fedshield.attacks as A
import fedshield.experiments.attack as XA
from fedshield.params import check_bounds, slice_ids
from fedshield.attacks import (detect_noisy_slices, dlg, dlg_batch, fc_mask, fedavg_update, infer_label,
                               inverting_gradients, inverting_gradients_batch, param_ranges, slice_mask,
                               victim_gradient, victim_gradients)
from fedshield.experiments.attack import AttackConfig, run_attack
from fedshield.cli import main
from fedshield.errors import FedshieldError
from fedshield.metrics import psnr
from fedshield.models import ConvNet, LeNet

SHAPE = (1, 16, 16)


pytestmark = pytest.mark.usefixtures("one_thread")



def _tiny(seed=0, classes=4):
    torch.manual_seed(seed)
    return LeNet(in_channels=1, num_classes=classes, image_size=16, n_conv=2, channels=4, dlg_init=True).eval()


def _victims(V, seed=1, classes=4, B=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(V, B, *SHAPE, generator=g)
    y = torch.randint(0, classes, (V, B), generator=g)
    return x, y


# --------------------------------------------------------------------------------------------- victims
def test_victim_gradients_vectorised_equal_per_victim():
    m = _tiny()
    x, y = _victims(3, B=2)
    G = victim_gradients(m, x, y)
    for v in range(3):
        ref = victim_gradient(m, x[v], y[v])
        assert torch.allclose(G[v], ref, atol=1e-6, rtol=1e-5)
    # it is the mean cross-entropy gradient
    params = list(m.parameters())
    g = torch.autograd.grad(F.cross_entropy(m(x[0]), y[0]), params)
    assert torch.allclose(G[0], torch.cat([t.reshape(-1) for t in g]), atol=1e-6)


def test_fedavg_update_one_step_is_lr_times_gradient_and_several_steps_differ():
    m = _tiny()
    x, y = _victims(1, B=4)
    g = victim_gradient(m, x[0], y[0])
    w0 = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    u1 = fedavg_update(m, x[0], y[0], lr=0.1)
    assert torch.allclose(u1, 0.1 * g, atol=1e-6)
    u5 = fedavg_update(m, x[0], y[0], lr=0.1, epochs=3, batch_size=2)  # 6 SGD steps
    assert not torch.allclose(u5, 6 * 0.1 * g, atol=1e-3)
    assert torch.equal(w0, torch.cat([p.detach().reshape(-1) for p in m.parameters()]))  # model untouched


def test_infer_label_idlg_rule():
    m = _tiny(classes=10)
    x, y = _victims(12, classes=10)
    G = victim_gradients(m, x, y)
    assert torch.equal(infer_label(G, m)[:, 0], y[:, 0])
    assert int(infer_label(G[3], m)[0]) == int(y[3, 0])
    # a ReLU ConvNet: the rule only needs the bias gradient p - onehot(y)
    torch.manual_seed(0)
    c = ConvNet(width=2).eval()
    xc = torch.rand(4, 1, 3, 32, 32)
    yc = torch.tensor([[7], [0], [3], [9]])
    assert torch.equal(infer_label(victim_gradients(c, xc, yc), c), yc)


# --------------------------------------------------------------------------------------------- DLG
@pytest.mark.parametrize("known", [True, False])
def test_batched_lbfgs_follows_torch_lbfgs_per_victim(known):
    """The vectorised L-BFGS with per-victim state follows torch.optim.LBFGS for each victim."""
    m = _tiny()
    x, y = _victims(3)
    G = victim_gradients(m, x, y)
    init = torch.rand(3, 1, *SHAPE, generator=torch.Generator().manual_seed(5))
    kw = dict(label=y if known else None, iterations=2, max_iter=6, init=init,
              generator=torch.Generator().manual_seed(9))
    b = dlg_batch(m, G, SHAPE, **kw)
    kw["generator"] = torch.Generator().manual_seed(9)
    ref = dlg_batch(m, G, SHAPE, vectorized=False, **kw)
    assert b.evaluations == ref.evaluations
    assert torch.allclose(b.history, ref.history, rtol=2e-3, atol=1e-6)
    assert ((b.x - ref.x).norm() / ref.x.norm()).item() < 2e-3
    assert torch.allclose(b.loss, ref.loss, rtol=1e-2, atol=1e-6)
    if known:
        assert (b.history[-1] < b.history[0]).all()


def test_single_victim_dlg_api_and_convergence_stops_evaluating():
    m = _tiny()
    x, y = _victims(1)
    g = victim_gradient(m, x[0], y[0])
    init = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(0))
    r = dlg(m, g, SHAPE, label=y[0], iterations=12, init=init)
    assert r.x.shape == (1, *SHAPE) and r.label.tolist() == y[0].tolist()
    assert float(r.loss) < 1e-5 * float(r.history[0])
    assert psnr(r.x, x[0]).item() > 35
    # batched: converged victims stop costing evaluations (torch's tolerances, per victim)
    rb = dlg_batch(m, g[None].repeat(2, 1), SHAPE, label=y.repeat(2, 1), iterations=12, init=init.repeat(2, 1, 1, 1))
    assert max(rb.evaluations) < 12 * 20
    assert (psnr(rb.x[:, 0], x[0].repeat(2, 1, 1, 1)) > 35).all()


def test_mask_ignores_the_masked_entries_exactly():
    m = _tiny()
    x, y = _victims(2)
    G = victim_gradients(m, x, y)
    mask = fc_mask(m)
    (w0, w1) = param_ranges(m)["fc.weight"]
    assert not mask[w0:w1].any() and mask[:w0].all()
    corrupted = G.clone()
    corrupted[:, ~mask] += 100.0 * torch.randn(2, int((~mask).sum()))
    init = torch.rand(2, 1, *SHAPE, generator=torch.Generator().manual_seed(3))
    a = dlg_batch(m, G, SHAPE, label=y, iterations=2, mask=mask, init=init)
    b = dlg_batch(m, corrupted, SHAPE, label=y, iterations=2, mask=mask, init=init)
    assert torch.equal(a.x, b.x)
    c = dlg_batch(m, corrupted, SHAPE, label=y, iterations=2, init=init)
    assert not torch.allclose(a.x, c.x)


def test_dlg_reconstructs_cifar10_images(data_root):
    """Undefended DLG on the paper's LeNet (CIFAR-10, DLG init, label known): median PSNR >= 30 dB
    over 5 images in 100 L-BFGS steps (300 steps, 8 images: median ~47 dB)."""
    res = run_attack(AttackConfig(images=5, iterations=100, seed=0), data_dir=data_root, progress=False,
                     cache=False)
    p = sorted(r["psnr"] for r in res["rows"])
    assert p[2] >= 30, p
    assert all(r["label_correct"] for r in res["rows"])
    assert res["summary"]["psnr"]["median"] == pytest.approx(p[2])


def test_dlg_joint_soft_label_recovers_image_and_label():
    """DLG's original setting: the soft label is optimised with the image (it fails on some
    victims, as the original does)."""
    m = _tiny()
    x, y = _victims(4)
    G = victim_gradients(m, x, y)
    r = dlg_batch(m, G, SHAPE, iterations=10, generator=torch.Generator().manual_seed(0))
    ok = psnr(r.x[:, 0], x[:, 0]) > 40
    assert ok.sum() >= 3
    assert torch.equal(r.label[ok], y[ok])


# --------------------------------------------------------------------------------------------- IG
def test_ig_batched_equals_independent_adams():
    m = _tiny()
    x, y = _victims(3)
    G = victim_gradients(m, x, y)
    init = torch.rand(3, 1, *SHAPE, generator=torch.Generator().manual_seed(4))
    kw = dict(label=y, iterations=12, init=init, signed=False, lr=0.05)
    a = inverting_gradients_batch(m, G, SHAPE, **kw)
    b = inverting_gradients_batch(m, G, SHAPE, vectorized=False, **kw)
    assert torch.allclose(a.x, b.x, atol=1e-4)
    assert torch.allclose(a.history, b.history, rtol=1e-3, atol=1e-6)
    # one victim alone gives the same trajectory as inside the batch
    c = inverting_gradients(m, G[1], SHAPE, label=y[1], iterations=12, init=init[1], signed=False, lr=0.05)
    assert torch.allclose(c.x, a.x[1], atol=1e-4)


def test_ig_restarts_keep_the_best_by_gradient_loss():
    m = _tiny()
    x, y = _victims(2)
    G = victim_gradients(m, x, y)
    r = inverting_gradients_batch(m, G, SHAPE, label=y, iterations=10, restarts=3,
                                  generator=torch.Generator().manual_seed(0))
    assert r.x.shape == (2, 1, *SHAPE) and r.loss.shape == (2,)
    for v in range(2):  # the kept reconstruction's gradient loss is the reported one
        gv = victim_gradient(m, r.x[v], y[v])
        assert abs((1 - F.cosine_similarity(gv, G[v], dim=0)).item() - r.loss[v].item()) < 1e-4
    assert (r.x >= 0).all() and (r.x <= 1).all()


def test_ig_on_a_small_convnet_beats_its_start(data_root):
    from fedshield.data import load_dataset

    x, y = load_dataset("cifar10", "test", data_root)
    torch.manual_seed(0)
    m = ConvNet(width=16).eval()
    xv, yv = x[:1].unsqueeze(1), y[:1].unsqueeze(1)
    G = victim_gradients(m, xv, yv)
    init = (0.5 + 0.25 * torch.randn(1, 1, 3, 32, 32, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    r = inverting_gradients_batch(m, G, (3, 32, 32), label=yv, iterations=150, init=init)
    before = psnr(init[:, 0], xv[:, 0]).item()
    after = psnr(r.x[:, 0], xv[:, 0]).item()
    assert after - before > 5 and after > 15, (before, after)  # measured: 10.3 -> 18.9 dB
    assert (r.loss < r.history[0]).all()


# --------------------------------------------------------------------------------------------- muted
def _detection_case(perturbation):
    """Six victims' gradients on the tiny model, 10 equal slices, the shared updates
    ``perturbation(G, bounds, generator) -> (shared, slice ids)`` makes of them, the true noisy
    slices and the clean reference of 20 other images: ``(G, bounds, shared, truth, reference)``."""
    m = _tiny()
    x, y = _victims(6)
    G = victim_gradients(m, x, y)
    bounds = torch.linspace(0, G.shape[1], 11).round().long()
    shared, ids = perturbation(G, bounds, torch.Generator().manual_seed(0))
    truth = torch.zeros(6, 10, dtype=torch.bool).scatter_(1, ids.view(6, -1), True)
    rx, ry = _victims(20, seed=7)
    return G, bounds, shared, truth, A.gradient_reference(m, rx[:, 0], ry[:, 0])


def test_detect_noisy_slices_finds_the_perturbed_slices():
    from fedshield.defense import perturb

    G, bounds, noisy, truth, ref = _detection_case(lambda G, b, gen: perturb(G, b, 0.3, 0.1, generator=gen))
    P = G.shape[1]
    det = detect_noisy_slices(noisy, bounds, 0.1, n_noisy=3, reference=ref)
    precision = (det & truth).sum().item() / det.sum().item()
    assert precision >= 0.9  # chance: 0.3
    mask = slice_mask(bounds, det)
    kept_clean = ~truth[:, slice_ids(check_bounds(bounds, P))] & mask
    assert torch.equal(noisy[kept_clean], G[kept_clean])
    assert mask.sum(1).tolist() == [P - int((bounds.diff()[d]).sum()) for d in det]
    with pytest.raises(FedshieldError):
        detect_noisy_slices(noisy, bounds, 0.0)


def test_detector_that_knows_the_noise_floor_finds_the_slices_a_blind_one_misses():
    from fedshield.defense import clip_and_perturb

    G, bounds, shared, truth, ref = _detection_case(
        lambda G, b, gen: clip_and_perturb(G, b, ratio=0.2, sigma=0.1, floor=0.03, generator=gen))
    precision = {f: float((detect_noisy_slices(shared, bounds, 0.1, n_noisy=2, reference=ref, floor=f) & truth).sum()) / 12
                 for f in (0.0, 0.03)}
    assert precision[0.03] >= 0.9 and precision[0.03] > precision[0.0], precision
    # without a floor the two detectors are the same
    assert torch.equal(detect_noisy_slices(G, bounds, 0.1, n_noisy=2, reference=ref),
                       detect_noisy_slices(G, bounds, 0.1, n_noisy=2, reference=ref, floor=0.0))
    with pytest.raises(FedshieldError, match="floor"):
        detect_noisy_slices(shared, bounds, 0.1, floor=-1.0)


def test_run_attack_against_ours_muted_and_pld(data_root):
    base = dict(dataset="mnist", images=2, iterations=2, seed=0)
    r = run_attack(AttackConfig(defense="ours", muted=True, **base), data_dir=data_root, progress=False, cache=False)
    assert r["summary"]["detect_precision"] >= 0.75  # chance: 0.2
    r2 = run_attack(AttackConfig(defense="pld", muted=True, **base), data_dir=data_root, progress=False, cache=False)
    assert len(r2["rows"]) == 2 and all(math.isfinite(row["psnr"]) for row in r2["rows"])


def test_attack_config_root_size_and_bias_choose_the_root_set(data_root):
    from fedshield.models import build_model

    model = build_model("lenet", "mnist")
    cfg = AttackConfig(dataset="mnist", defense="ours", defense_kwargs=(("root_size", 30), ("root_bias", 1.0)))
    # the old spelling (pseudo-options) is moved into the fields: one config, one cache key
    assert cfg == AttackConfig(dataset="mnist", defense="ours", root_size=30, root_bias=1.0)
    assert cfg.defense_kwargs == () and cfg.cache_key() == AttackConfig(
        dataset="mnist", defense="ours", root_size=30, root_bias=1.0).cache_key()
    d = XA.attack_defense(cfg, model, data_root)
    assert d.root_x.shape[0] == 30 and (d.root_y == 0).all()  # bias 1: one class
    cfg2 = AttackConfig(dataset="mnist", defense="ours", root_size=30)
    assert len(set(XA.attack_defense(cfg2, model, data_root).root_y.tolist())) > 1
    with pytest.raises(FedshieldError, match="twice"):
        AttackConfig(defense="ours", root_size=50, defense_kwargs=(("root_size", 30),))
    # the root set's fields count for 'ours' only: other defenses keep their keys
    assert AttackConfig(defense="gc", root_size=30).cache_key() == AttackConfig(defense="gc").cache_key()
    assert cfg2.cache_key() != AttackConfig(dataset="mnist", defense="ours").cache_key()


# --------------------------------------------------------------------------------------------- runner
def test_run_attack_caches_per_victim_and_resumes(data_root, monkeypatch, tmp_path):
    cfg = AttackConfig(dataset="mnist", images=3, iterations=2, seed=0, label="infer")
    first = run_attack(cfg, data_dir=data_root, progress=False, chunk=2)
    assert len(first["rows"]) == 3 and first["npz"]
    import numpy as np

    z = np.load(first["npz"])
    assert z["x_rec"].shape == z["x_true"].shape == (3, 1, 1, 28, 28)
    assert first["summary"]["label_accuracy"] == 1.0
    # drop one victim: only that one is recomputed
    key = first["key"]
    from fedshield.cache import ResultCache

    rc = ResultCache()
    rc.path(f"{key}/v0001").unlink()
    calls = []
    real = XA._attack_chunk

    def spy(cfg_, model, victims, vids, progress, vectorized=None, data_dir=None):
        calls.append(list(vids))
        return real(cfg_, model, victims, vids, progress, vectorized, data_dir)

    monkeypatch.setattr(XA, "_attack_chunk", spy)
    again = run_attack(cfg, data_dir=data_root, progress=False)
    assert calls == [[1]]
    # same victim, same start; only float rounding differs with the chunk's batch size
    assert [r["psnr"] for r in again["rows"]] == pytest.approx([r["psnr"] for r in first["rows"]], rel=0.05)
    assert [r["psnr"] for r in again["rows"]][::2] == [r["psnr"] for r in first["rows"]][::2]


def test_bad_input_raises_one_clear_error():
    m = _tiny()
    g = torch.zeros(sum(p.numel() for p in m.parameters()))
    with pytest.raises(FedshieldError, match="iterations"):
        dlg(m, g, SHAPE, iterations=0)
    with pytest.raises(FedshieldError, match="does not fit"):
        dlg(m, g, (3, 32, 32), iterations=1)
    with pytest.raises(FedshieldError, match="target gradient"):
        dlg(m, g[:-1], SHAPE, iterations=1)
    with pytest.raises(FedshieldError, match="mask"):
        dlg_batch(m, g[None], SHAPE, iterations=1, mask=torch.ones(5, dtype=torch.bool))
    with pytest.raises(FedshieldError, match="labels"):
        inverting_gradients(m, g, SHAPE, label=[7], iterations=1)
    with pytest.raises(FedshieldError, match="init"):
        dlg(m, g, SHAPE, iterations=1, init="zeros-ish")
    for bad in (dict(attack="gia"), dict(defense="soteria"), dict(iterations=0), dict(images=-1),
                dict(label="guess"), dict(muted=True), dict(dataset="imagenet")):
        with pytest.raises(FedshieldError):
            AttackConfig(**bad).validate()


def test_cli_attack(data_root, tmp_path, capsys):
    out = tmp_path / "o.json"
    rc = main(["attack", "--dataset", "mnist", "--images", "1", "--iterations", "1", "--defense", "gc",
               "--muted", "--json", str(out), "--data-dir", str(data_root), "--no-progress"])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["config"]["defense"] == "gc" and len(d["rows"]) == 1
    assert "PSNR" in capsys.readouterr().out
    for argv in (["--attack", "gia"], ["--defense", "foo"], ["--iterations", "0"]):
        assert main(["attack", "--dataset", "mnist", "--no-progress", "--data-dir", str(data_root)] + argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error" in err[0]


def test_randomised_boundaries_fool_the_server_slice_detector_but_not_the_widened_one():
    from fedshield.attacks.adaptive import entry_mask, expanded_slice_mask
    from fedshield.defense import jitter_bounds, perturb

    box = {}

    def jittered(G, b, gen):
        box["J"] = jitter_bounds(b, G.shape[0], 0.5, generator=gen)
        return perturb(G, box["J"], 0.2, 0.1, generator=gen)

    G, bounds, shared, truth, ref = _detection_case(jittered)
    P = G.shape[1]
    noisy_entries = entry_mask(box["J"], truth.nonzero()[:, 1].view(6, -1), P)
    det = detect_noisy_slices(shared, bounds, 0.1, n_noisy=2, reference=ref)
    assert float((det & truth).sum()) / 12 >= 0.75          # the slices are still found (chance 0.2) ...
    naive = slice_mask(bounds, det)
    assert (naive & noisy_entries).any(1).sum() >= 4        # ... but their moved edges leak noise
    wide = expanded_slice_mask(bounds, det, 0.5, P)
    exact = (det == truth).all(1)
    assert exact.sum() >= 3 and not (wide & noisy_entries)[exact].any()   # widened: no noisy entry kept
    assert torch.equal(shared[exact][wide[exact]], G[exact][wide[exact]])
    # the widened mask drops the noisy slices plus at most jitter / 2 of each neighbour
    assert ((~wide).sum(1) <= (~naive).sum(1) + int(bounds.diff().max())).all()
    assert torch.equal(expanded_slice_mask(bounds, det, 0.0, P), naive)


def test_attack_config_detector_choices_and_keys():
    base = AttackConfig(dataset="mnist", defense="ours", muted=True)
    assert AttackConfig(dataset="mnist", defense="ours", muted=True, detector="auto").cache_key() == base.cache_key()
    assert AttackConfig(dataset="mnist", defense="ours", muted=True, detector="slices").cache_key() != base.cache_key()
    with pytest.raises(FedshieldError, match="detector"):
        AttackConfig(detector="oracle").validate()


def test_label_aware_reference_finds_the_slices_a_root_set_without_the_victims_class_misses():
    """A root set that lacks the victim's class gives its output row a tiny clean reference; the
    plain detector then flags the output layer's slice, the label-aware one does not."""
    from fedshield.attacks.adaptive import gradient_reference, label_reference
    from fedshield.defense import perturb

    m = _tiny(classes=10)
    x, y = _victims(6, classes=10)
    G = victim_gradients(m, x, y)
    P = G.shape[1]
    bounds = torch.linspace(0, P, 11).round().long()
    shared, ids = perturb(G, bounds, 0.2, 0.1, generator=torch.Generator().manual_seed(0))
    truth = torch.zeros(6, 10, dtype=torch.bool).scatter_(1, ids, True)
    rx, ry = _victims(60, seed=7, classes=10)
    rx, ry = rx[:, 0], ry[:, 0]
    keep = ~torch.isin(ry, y.reshape(-1))              # a root set without the victims' classes
    rx, ry = rx[keep], ry[keep]
    assert len(ry) >= 5
    plain = detect_noisy_slices(shared, bounds, 0.1, n_noisy=2, reference=gradient_reference(m, rx, ry))
    aware_ref = label_reference(m, rx, y)
    assert aware_ref.shape == (6, P)
    aware = detect_noisy_slices(shared, bounds, 0.1, n_noisy=2, reference=aware_ref)
    p_plain, p_aware = (float((d & truth).sum()) / 12 for d in (plain, aware))
    assert p_aware >= 0.75 and p_aware > p_plain, (p_plain, p_aware)
    with pytest.raises(FedshieldError, match="reference"):
        detect_noisy_slices(shared, bounds, 0.1, reference=aware_ref[:2])
    with pytest.raises(FedshieldError, match="labels"):
        AttackConfig(label="joint", reference="label").validate()
