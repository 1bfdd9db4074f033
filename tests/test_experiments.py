"""The defense registry: one build_defense behind every path that runs a named defense."""
import argparse

import pytest
import torch

from fedshield.commands.train import make_train_defense as train_defense
from fedshield.errors import FedshieldError
from fedshield.experiments import AttackConfig, build_defense, defense_seed, fl_defense
from fedshield.experiments.attack import attack_defense
from fedshield.fl import FLConfig, build_global_model, fedavg_key
from fedshield.hooks import RoundContext
from fedshield.utils import make_generator

pytestmark = pytest.mark.usefixtures("one_thread")

SEED = 5
CASES = [("ours", {"slicing": "size"}), ("ours", {"slicing": "size", "clip_bound": 0.5, "ratio": 0.5}),
         ("dp-g", {}), ("dp-l", {"variance": 0.02}), ("gc", {}), ("pld", {"max_samples": 2}), ("none", {})]


def _shared(defense, model, U, data):
    """The updates a defense lets the clients share in round 0."""
    defense.on_round_start(model, 0)
    ctx = RoundContext(round=0, model=model, weights=torch.full((len(U),), 1.0 / len(U)),
                       client_ids=list(range(len(U))), client_data=data, generator=make_generator(123))
    return defense.client(U.clone(), ctx)


def _paths(name, opts, cfg, model, data_dir):
    """The defense each entry point builds for (name, options, seed = cfg.seed)."""
    args = argparse.Namespace(defense=name, attack="dlg", root_size=100, data_dir=str(data_dir))
    out = {"fedshield train": train_defense(args, cfg) if not opts else fl_defense(name, cfg, data_dir=data_dir, **opts),
           "run_fl / run_fedavg": fl_defense(name, cfg, data_dir=data_dir, **opts),
           "fedshield attack / run_attack": attack_defense(
               AttackConfig(dataset=cfg.dataset, defense=name, seed=cfg.seed, defense_kwargs=tuple(opts.items())),
               model, data_dir)}
    if out["fedshield train"] is None:  # train passes None for 'none'
        out["fedshield train"] = build_defense("none", seed=cfg.seed)
    return out


@pytest.mark.parametrize("name, opts", CASES)
def test_every_path_builds_the_same_defense(name, opts, data_root):
    cfg = FLConfig(dataset="mnist", rounds=1, n_clients=20, per_round=4, seed=SEED, local_lr=0.1,
                   model_kwargs=(("dlg_init", True),))
    model = build_global_model(cfg)
    g = make_generator(0)
    U = torch.randn(4, sum(p.numel() for p in model.parameters()), generator=g) * 0.1
    data = [(torch.rand(3, 1, 28, 28, generator=g), torch.randint(0, 10, (3,), generator=g)) for _ in range(4)]
    defenses = _paths(name, opts, cfg, model, data_root)
    reference = None
    for path, d in defenses.items():
        if name in ("ours", "dp-g", "dp-l", "pld"):
            assert d.seed == defense_seed(SEED) == SEED + 1009, path
        shared = _shared(d, model, U, data)
        if reference is None:
            reference = shared
        assert torch.equal(shared, reference), f"{path} shares other numbers"
    if name != "ours":  # 'ours' differs in its root set only (FedAvg: outside every client)
        assert len({repr(d) for d in defenses.values()}) == 1
    if name == "ours":
        _flower_mod_shares_the_same(defenses["fedshield train"], opts, model, U[:1], cfg.local_lr)


def _flower_mod_shares_the_same(defense, opts, model, g, lr):
    """The Flower mod with the defense's generator shares what PaperDefense.client shares."""
    pytest.importorskip("flwr")
    from flwr.app import ArrayRecord
    from flwr.serverapp.strategy import FedAvg

    from fedshield.flower import DefendedStrategy, DefenseMod, _parse_config

    st = DefendedStrategy(FedAvg(), model, defense, local_lr=lr)
    cfg = _parse_config(st.round_config(ArrayRecord(model.state_dict())))
    w_global = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    w_local = w_global - lr * g[0]
    g_flower = (w_global - w_local) / lr  # what the simulator hands the hooks (share="gradient")
    _, shared, _ = DefenseMod.shared_update(w_global, w_local, cfg, make_generator(defense_seed(SEED)))
    fresh = build_defense("ours", seed=SEED, options=opts, root_source=lambda n, b: (
        defense.root_x, defense.root_y))
    expected = _shared(fresh, model, g_flower.unsqueeze(0), None)[0]
    assert torch.equal(shared, expected)


def test_fedavg_keys_follow_the_defense_repr(data_root):
    cfg = FLConfig(dataset="mnist", rounds=1, n_clients=20, per_round=4, seed=SEED)
    a = fl_defense("dp-g", cfg, data_dir=data_root)
    b = build_defense("dp-g", seed=SEED)
    assert fedavg_key(cfg, a) == fedavg_key(cfg, b)
    assert repr(a) == "DPGaussian(variance=0.01)"


def test_registry_refuses_root_options_and_unknown_names():
    with pytest.raises(FedshieldError, match="root set"):
        build_defense("ours", seed=0, options={"root_size": 3}, root_source=lambda n, b: None)
    with pytest.raises(FedshieldError, match="root set"):
        build_defense("ours", seed=0)
    with pytest.raises(FedshieldError, match="unknown defense"):
        build_defense("soteria", seed=0)
    assert build_defense("dp-g", seed=None).seed == 1009  # seed None counts as 0, as in FedAvg
    assert build_defense("dp-g", seed=0, options={"seed": 7}).seed == 7


def test_calibration_readings_build_the_papers_federation():
    from fedshield.experiments.calibration import PAPER_UNDEFENDED, READINGS, Reading, calibration_config
    cfg = calibration_config("cifar10", READINGS[0])
    assert (cfg.n_clients, cfg.per_round, cfg.rounds, cfg.local_lr, cfg.local_epochs) == (1000, 200, 2000, 1e-2, 2)
    assert cfg.local_batch_size is None and cfg.model_kwargs == ()
    dlg3 = calibration_config("mnist", Reading("x", init="dlg", n_conv=3, batch_size=5))
    assert dict(dlg3.model_kwargs) == {"dlg_init": True, "n_conv": 3} and dlg3.local_batch_size == 5
    assert len({r.name for r in READINGS}) == len(READINGS) and set(PAPER_UNDEFENDED) == {"mnist", "fmnist", "cifar10"}
    with pytest.raises(FedshieldError, match="init must be"):
        Reading("x", init="xavier").model_kwargs()
    with pytest.raises(FedshieldError, match="no paper partition"):
        calibration_config("cifar100", READINGS[0])


def test_calibration_table_has_one_row_per_evaluation(data_root, tmp_path):
    from fedshield.experiments.calibration import READINGS, run_calibration
    tab = run_calibration(["mnist"], READINGS[1:2], rounds=4, eval_every=2, progress=False)
    assert tab["round"].tolist() == [2, 4] and tab.accuracy.between(0, 1).all()
    assert tab.paper.tolist() == pytest.approx([0.9169] * 2) and (tab.seconds_per_round > 0).all()


def test_signal_to_noise_measures_the_defenses_per_entry_variance(data_root):
    """DP-G with variance v adds noise of per-entry variance v to every victim's update (within the
    sampling error of P entries); undefended the noise is zero and the ratio infinite; GC removes,
    so its 'noise' is the pruned part, below the signal."""
    from fedshield.experiments.attack import signal_to_noise
    base = dict(dataset="mnist", images=3, iterations=1)
    for v in (1e-3, 1e-2):
        t = signal_to_noise(AttackConfig(defense="dp-g", defense_kwargs=(("variance", v),), **base), data_root)
        assert len(t) == 3 and (abs(t.noise_per_entry / v - 1) < 0.05).all()
        assert (t.snr == t.signal / t.noise).all() and t.entries_per_unknown.iloc[0] > 20   # LeNet/MNIST: 17038 / 784
    t0 = signal_to_noise(AttackConfig(defense="none", **base), data_root)
    assert (t0.noise == 0).all() and (t0.snr == float("inf")).all()
    gc = signal_to_noise(AttackConfig(defense="gc", **base), data_root)
    assert ((gc.noise > 0) & (gc.noise < gc.signal)).all()


def test_convert_images_takes_luma_then_averages_each_footprint():
    from fedshield.experiments.attack import convert_images
    x = torch.zeros(2, 3, 32, 32)
    x[0, 0] = 1.0                       # pure red
    x[1] = torch.rand(3, 32, 32, generator=make_generator(0))
    y = convert_images(x, "mnist")
    assert y.shape == (2, 1, 28, 28)
    assert torch.allclose(y[0], torch.full((1, 28, 28), 0.299))            # BT.601 luma of red, constant
    luma = 0.299 * x[1, 0] + 0.587 * x[1, 1] + 0.114 * x[1, 2]
    assert float(y[1].mean()) == pytest.approx(float(luma.mean()), abs=0.01)  # an average keeps the mean
    assert 0 <= float(y.min()) and float(y.max()) <= 1
    assert torch.equal(convert_images(x, "cifar10"), x)                      # already that shape
    with pytest.raises(FedshieldError, match="dataset"):
        convert_images(x, "svhn")
    with pytest.raises(FedshieldError, match=r"\[N, C, H, W\]"):
        convert_images(x[0], "mnist")
    with pytest.raises(FedshieldError, match="channel"):
        convert_images(torch.zeros(1, 1, 28, 28), "cifar10")


def test_images_as_is_checked_and_keeps_earlier_keys():
    from fedshield.cache import config_dict, config_key
    cfg = AttackConfig(dataset="cifar10", defense="dp-g")
    d = config_dict(cfg)
    d.pop("images_as"), d.pop("trained_round"), d.pop("trained_defense"), d.pop("trained_total"), d.pop("detector"), d.pop("reference"), d.pop("split")
    for k in ("root_size", "root_bias"):
        d.pop(k)
    d["defense_seed_rule"] = "seed+1009"
    assert cfg.cache_key() == config_key(d, "attack")          # the key it had before the field existed
    assert AttackConfig(dataset="cifar10", defense="dp-g", images_as="mnist").cache_key() != cfg.cache_key()
    for bad, msg in (({"images_as": "svhn"}, "images_as"), ({"dataset": "cifar100", "images_as": "mnist"}, "classes"),
                     ({"images_as": "mnist", "trained_round": 0}, "trained_round")):
        with pytest.raises(FedshieldError, match=msg):
            AttackConfig(**{"dataset": "cifar10", **bad}).validate()


def test_images_as_attacks_the_same_victims_at_the_other_datasets_shape(data_root):
    from fedshield.experiments.attack import attack_setup, convert_images
    base = dict(dataset="cifar10", defense="dp-g", images=2, iterations=1)
    m0, v0 = attack_setup(AttackConfig(**base), data_root)
    m1, v1 = attack_setup(AttackConfig(images_as="mnist", **base), data_root)
    mm, _ = attack_setup(AttackConfig(**{**base, "dataset": "mnist"}), data_root)
    assert torch.equal(v0.index, v1.index) and torch.equal(v0.y, v1.y)
    assert v1.x.shape == (2, 1, 1, 28, 28) and torch.equal(v1.x[:, 0], convert_images(v0.x[:, 0], "mnist"))
    assert sum(p.numel() for p in m1.parameters()) == sum(p.numel() for p in mm.parameters()) == v1.shared.shape[1]
