"""fedshield.flower: the defense as a Flower client mod + server strategy wrapper.

Fast tests drive the mod and the strategy directly with hand-built Messages; one test runs a
real Flower simulation (Ray, 4 clients, 3 rounds) end to end. Skipped when flwr is not installed
(``pip install 'fedshield[flower]'``).
"""
import copy
import os
import sys
import time

for _k, _v in (("FLWR_TELEMETRY_ENABLED", "0"), ("FLWR_DISABLE_UPDATE_CHECK", "1"),
               ("RAY_USAGE_STATS_ENABLED", "0")):
    os.environ.setdefault(_k, _v)

import pytest  # noqa: E402

pytest.importorskip("flwr")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flwr.app import (ArrayRecord, ConfigRecord, Context, Message, MessageType, Metadata,  # noqa: E402
                      MetricRecord, RecordDict)
from flwr.serverapp.strategy import FedAvg  # noqa: E402
from torch import nn  # noqa: E402

from fedshield import defense as D  # noqa: E402
from fedshield.defense import PaperDefense  # noqa: E402
from fedshield.errors import FedshieldError  # noqa: E402
from fedshield.flower import (KEY_BOUNDS, KEY_CLIP, KEY_FLOOR, KEY_JITTER, KEY_KEYS, KEY_LR,  # noqa: E402
                              METRIC_DEFENDED, METRIC_DROPPED, DefendedStrategy, DefenseMod, arrays_to_flat, trainable_keys)
from fedshield.utils import make_generator  # noqa: E402


# ----------------------------------------------------------------------------- helpers
def tiny_model(seed: int = 0) -> nn.Module:
    """1x8x8 inputs, 4 classes; has BatchNorm buffers, which must pass the mod untouched."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Sigmoid(), nn.Flatten(),
                         nn.Linear(3 * 6 * 6, 4))


def root(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def instruction(content: RecordDict, node: int = 7, mtype: str = MessageType.TRAIN) -> Message:
    md = Metadata(run_id=1, message_id=f"m{node}", src_node_id=0, dst_node_id=node, reply_to_message_id="",
                  group_id="1", created_at=time.time(), ttl=3600.0, message_type=mtype)
    return Message(content=content, metadata=md)


def context(node: int = 7, partition: int | None = None) -> Context:
    nc = {} if partition is None else {"partition-id": partition, "num-partitions": 4}
    return Context(run_id=1, node_id=node, node_config=nc, state=RecordDict(), run_config={})


def trainer(scale: float = 0.05, n_examples: int = 10, seed: int = 1):
    """A fake ClientApp: moves every array (buffers too) by a fixed pseudo-random step."""
    def app(msg: Message, ctx: Context) -> Message:
        g = torch.Generator().manual_seed(seed)
        sd = msg.content["arrays"].to_torch_state_dict()
        new = {k: (v - scale * torch.randn(v.shape, generator=g)).to(v.dtype) if v.is_floating_point() else v + 1
               for k, v in sd.items()}
        return Message(RecordDict({"arrays": ArrayRecord(new),
                                   "metrics": MetricRecord({"num-examples": n_examples})}), reply_to=msg)
    return app


class NoSendFedAvg(FedAvg):
    """FedAvg that records the round's config instead of building Messages (no Grid needed)."""

    def configure_train(self, server_round, arrays, config, grid):
        self.sent_config = config
        return []


LR = 0.1  # the clients' local learning rate: the defense works on (w_global - w_local) / LR


def strategy(root_set=..., local_lr=LR, **kw) -> DefendedStrategy:
    args = dict(ratio=0.3, sigma=0.2, n_slices=10, seed=3)
    args.update(kw)
    rx, ry = root() if root_set is ... else (root_set or (None, None))
    return DefendedStrategy(NoSendFedAvg(), tiny_model(), PaperDefense(rx, ry, **args), local_lr=local_lr)


def train_msg(st: DefendedStrategy, arrays: ArrayRecord, node: int = 7) -> Message:
    st.configure_train(1, arrays, ConfigRecord({"lr": 0.1}), grid=None)
    cfg = st.strategy.sent_config
    cfg["server-round"] = 1
    return instruction(RecordDict({"arrays": arrays, "config": cfg}), node=node)


def slice_change_pattern(a: torch.Tensor, b: torch.Tensor, bounds) -> tuple[list[int], bool]:
    """(ids of slices where a != b, True iff every slice changed entirely or not at all)."""
    diff = a != b
    changed, clean = [], True
    for i in range(len(bounds) - 1):
        d = diff[int(bounds[i]):int(bounds[i + 1])]
        if bool(d.all()):
            changed.append(i)
        elif bool(d.any()):
            clean = False
    return changed, clean


# ----------------------------------------------------------------------------- bad configuration
@pytest.mark.parametrize("kw, msg", [
    (dict(root_set=None), "root set"),
    (dict(ratio=0.0), "ratio"),
    (dict(ratio=1.5), "ratio"),
    (dict(sigma=-0.1), "sigma"),
    (dict(n_slices=10 ** 6), "n_slices"),
    (dict(q=0.5), "q"),
    (dict(clip_bound=0.0), "clip_bound"),
    (dict(slicing="layers"), "slicing"),
    (dict(root_set=(torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))), "root set"),
    (dict(root_set=(torch.rand(4, 1, 8, 8), torch.zeros(3, dtype=torch.long))), "labels"),
    (dict(local_lr=0.0), "local_lr"),
])
def test_bad_configuration_fails_when_the_strategy_is_built(kw, msg):
    with pytest.raises(FedshieldError, match=msg):
        strategy(**kw)


def test_size_slicing_needs_no_root_set():
    st = strategy(root_set=None, slicing="size")
    arrays = ArrayRecord(tiny_model().state_dict())
    sizes = [p.numel() for p in tiny_model().parameters()]
    assert torch.equal(st.slice_bounds(arrays), D.size_slices(sizes, 10))


def test_start_rejects_mismatched_initial_arrays_before_any_round():
    class Untouchable:  # any use of the grid would fail differently
        def __getattr__(self, name):
            raise AssertionError(f"grid.{name} used before the arrays were checked")

    other = nn.Sequential(nn.Conv2d(1, 5, 3), nn.BatchNorm2d(5), nn.Sigmoid(), nn.Flatten(), nn.Linear(180, 4))
    with pytest.raises(FedshieldError, match="shape"):
        strategy().start(grid=Untouchable(), initial_arrays=ArrayRecord(other.state_dict()), timeout=5)
    with pytest.raises(FedshieldError, match="lack"):
        strategy().start(grid=Untouchable(), initial_arrays=ArrayRecord({"w": torch.zeros(3)}), timeout=5)


# ----------------------------------------------------------------------------- server: slicing
def test_round_config_carries_the_risk_slices_of_the_global_model():
    model = tiny_model(seed=5)  # the round's global model differs from the strategy's template
    arrays = ArrayRecord(model.state_dict())
    st = strategy(seed=11)
    user_cfg = ConfigRecord({"lr": 0.1})
    cfg = st.round_config(arrays, user_cfg)
    rx, ry = root()
    risk = D.leakage_risk(model, rx, ry, probes=8, generator=make_generator(11))
    expected = D.risk_slices([p.numel() for p in model.parameters()], risk, 10)
    assert cfg[KEY_BOUNDS] == expected.tolist()
    assert cfg[KEY_KEYS] == trainable_keys(model)           # parameters only, no BN buffers
    assert "1.running_mean" not in cfg[KEY_KEYS]
    assert cfg["lr"] == 0.1 and KEY_CLIP not in cfg and cfg[KEY_LR] == LR
    assert KEY_BOUNDS not in user_cfg                        # the caller's config is not modified


# ----------------------------------------------------------------------------- client: the mod
def test_mod_perturbs_exactly_k_whole_slices_and_nothing_else():
    st = strategy(sigma=0.3)
    g_model = tiny_model()
    arrays = ArrayRecord(g_model.state_dict())
    msg = train_msg(st, arrays)
    bounds = msg.content["config"][KEY_BOUNDS]
    keys = trainable_keys(g_model)
    ctx = context(partition=2)
    out = DefenseMod(seed=0)(msg, ctx, trainer())
    assert not out.has_error()
    clean = trainer()(msg, ctx).content["arrays"]
    sent = out.content["arrays"]
    changed, whole = slice_change_pattern(arrays_to_flat(sent, keys), arrays_to_flat(clean, keys), bounds)
    assert whole, "a slice was only partly perturbed"
    assert len(changed) == D.n_perturbed(10, 0.3) == 3
    assert ctx.state["fedshield"]["chosen"] == changed       # the local audit trail matches
    # buffers (BN running stats, counter) are passed through bit-identically
    for k in clean.keys():
        if k not in keys:
            assert np.array_equal(sent[k].numpy(), clean[k].numpy()), k
    # the noise on the perturbed entries has std sigma in gradient units: LR * sigma on the weights
    noise = (arrays_to_flat(sent, keys) - arrays_to_flat(clean, keys))
    noise = noise[noise != 0]
    assert abs(float(noise.std()) / (LR * 0.3) - 1) < 0.25
    assert out.content["metrics"][METRIC_DEFENDED] == 1 and out.content["metrics"]["num-examples"] == 10


def test_mod_noise_is_reproducible_only_when_seeded():
    st = strategy()
    msg = train_msg(st, ArrayRecord(tiny_model().state_dict()))

    def sent(mod, partition):
        return arrays_to_flat(mod(msg, context(partition=partition), trainer()).content["arrays"],
                              trainable_keys(tiny_model()))

    assert torch.equal(sent(DefenseMod(seed=4), 1), sent(DefenseMod(seed=4), 1))
    assert not torch.equal(sent(DefenseMod(seed=4), 1), sent(DefenseMod(seed=4), 2))
    assert not torch.equal(sent(DefenseMod(), 1), sent(DefenseMod(), 1))


def test_mod_clips_the_update_before_perturbing():
    bound = 0.05
    st = strategy(sigma=0.0, clip_bound=bound)
    arrays = ArrayRecord(tiny_model().state_dict())
    msg = train_msg(st, arrays)
    keys = trainable_keys(tiny_model())
    out = DefenseMod()(msg, context(), trainer(scale=0.05))
    w = arrays_to_flat(arrays, keys)
    u_clean = w - arrays_to_flat(trainer(scale=0.05)(msg, context()).content["arrays"], keys)
    u_sent = w - arrays_to_flat(out.content["arrays"], keys)
    # the bound is on the pseudo-gradient u / LR, as in the simulator
    assert float(u_clean.norm()) / LR > 5 * bound            # clipping is active
    assert float(u_sent.norm()) / LR == pytest.approx(bound, rel=1e-4)
    assert torch.allclose(u_sent, u_clean * (LR * bound / u_clean.norm()), atol=1e-6)


def test_mod_refuses_to_send_an_undefended_update():
    arrays = ArrayRecord(tiny_model().state_dict())
    plain = instruction(RecordDict({"arrays": arrays, "config": ConfigRecord({"lr": 0.1})}))
    out = DefenseMod()(plain, context(), trainer())
    assert out.has_error() and "DefendedStrategy" in out.error.reason
    passthrough = DefenseMod(strict=False)(plain, context(), trainer())
    assert not passthrough.has_error()
    assert np.array_equal(passthrough.content["arrays"]["4.weight"].numpy(),
                          trainer()(plain, context()).content["arrays"]["4.weight"].numpy())
    # evaluation messages are never touched
    ev = instruction(RecordDict({"arrays": arrays, "config": ConfigRecord()}), mtype=MessageType.EVALUATE)
    assert not DefenseMod()(ev, context(), trainer()).has_error()
    # a malformed config (ratio out of range) is refused, not half-applied
    st = strategy()
    bad = train_msg(st, arrays)
    bad.content["config"]["fedshield.ratio"] = 1.5
    out = DefenseMod()(bad, context(), trainer())
    assert out.has_error() and "ratio" in out.error.reason


def test_floor_and_jitter_travel_to_the_mod_and_match_the_simulator():
    """Beyond the paper: the hardened variants (noise floor, randomised boundaries) go out in the round's
    config only when set, and the mod then shares exactly what ``PaperDefense.client`` shares for that
    client from the same generator state."""
    arrays = ArrayRecord(tiny_model().state_dict())
    plain = strategy().round_config(arrays)
    assert KEY_FLOOR not in plain and KEY_JITTER not in plain
    st = strategy(sigma=0.3, floor=0.02, jitter=0.5)
    msg = train_msg(st, arrays)
    cfg = msg.content["config"]
    assert cfg[KEY_FLOOR] == 0.02 and cfg[KEY_JITTER] == 0.5
    keys = trainable_keys(tiny_model())
    w = arrays_to_flat(arrays, keys)
    w_local = arrays_to_flat(trainer()(msg, context()).content["arrays"], keys)
    mod_cfg = dict(bounds=torch.tensor(cfg[KEY_BOUNDS]), ratio=0.3, sigma=0.3, clip=None, lr=LR, floor=0.02, jitter=0.5)
    sent, shared, chosen = DefenseMod.shared_update(w, w_local, mod_cfg, make_generator(5))
    sim = st.defense
    sim.generator = make_generator(5)
    from fedshield.hooks import RoundContext
    ctx = RoundContext(round=1, model=st.model, weights=torch.ones(1, dtype=torch.float64))
    expected = sim.client(((w - w_local) / LR).unsqueeze(0), ctx)[0]
    assert torch.allclose(shared, expected, atol=1e-6)
    assert torch.equal(chosen, ctx.extra["perturbed_slices"][0])
    assert not torch.equal(ctx.extra["slice_bounds"][0], torch.tensor(cfg[KEY_BOUNDS]))   # moved
    # the floor reaches every entry: nothing of the trained update survives bit for bit
    assert bool(((sent - w_local) != 0).all())
    # and the server compensates with the floor's share of the variance
    agg, metrics, got, mean, p, _ = _aggregate(strategy(sigma=0.5, ratio=0.5, q=2.0, floor=0.05, jitter=0.5))
    var = D.aggregate_noise_var(p, 0.5, 0.5, n_slices=10) + 0.05 ** 2 * float(p.pow(2).sum())
    expected = LR * D.compensate(mean / LR, var, 2.0)
    assert torch.allclose(got, expected, atol=1e-5)
    # without compensation the logged variance is the same aggregate variance, floor included
    st = strategy(sigma=0.5, ratio=0.5, floor=0.05, compensate=False)
    _aggregate(st)
    assert st.history[-1]["noise_var"] == pytest.approx(var)


@pytest.mark.parametrize("key, value, word", [(KEY_FLOOR, -0.1, "floor"), (KEY_JITTER, 1.0, "jitter")])
def test_mod_refuses_a_bad_floor_or_jitter(key, value, word):
    msg = train_msg(strategy(), ArrayRecord(tiny_model().state_dict()))
    msg.content["config"][key] = value
    out = DefenseMod()(msg, context(), trainer())
    assert out.has_error() and word in out.error.reason


# ----------------------------------------------------------------------------- server: compensation
def _replies(st, arrays, sizes=(10, 30, 60), scale=0.05):
    msg = train_msg(st, arrays)
    return [DefenseMod(seed=9)(msg, context(node=i, partition=i), trainer(scale=scale, n_examples=n, seed=i))
            for i, n in enumerate(sizes)]


def _aggregate(st):
    """One round through the strategy: ``(agg, metrics, got, mean, p, model)`` with ``got`` the applied
    update and ``mean`` the weighted mean of the replies' updates (weight units)."""
    g_model = tiny_model()
    arrays = ArrayRecord(g_model.state_dict())
    keys = trainable_keys(g_model)
    replies = _replies(st, arrays)
    w = arrays_to_flat(arrays, keys)
    U = torch.stack([w - arrays_to_flat(r.content["arrays"], keys) for r in replies])
    p = torch.tensor([10.0, 30.0, 60.0], dtype=torch.float64) / 100
    agg, metrics = st.aggregate_train(1, replies)
    return agg, metrics, w - arrays_to_flat(agg, keys), p.float() @ U, p, g_model


@pytest.mark.parametrize("compensation", [True, False])
def test_strategy_compensates_the_weighted_mean_update(compensation):
    st = strategy(sigma=0.5, ratio=0.5, q=2.0, compensate=compensation)
    agg, metrics, got, mean, p, _ = _aggregate(st)
    if compensation:
        var = D.aggregate_noise_var(p, 0.5, 0.5, n_slices=10)   # gradient units
        expected, info = D.compensate(mean / LR, var, 2.0, return_info=True)
        expected = LR * expected
        assert info["dropped"] > 0                           # the compensation did something
        assert metrics[METRIC_DROPPED] == info["dropped"] == st.history[-1]["dropped"]
        assert not torch.allclose(got, mean, atol=1e-4)
    else:
        expected = mean
        assert metrics[METRIC_DROPPED] == 0
    assert torch.allclose(got, expected, atol=1e-5)
    assert metrics[METRIC_DEFENDED] == pytest.approx(1.0)
    # non-trainable arrays are aggregated by the wrapped strategy as usual
    assert agg["1.running_mean"].numpy().shape == (3,)


def test_strategy_stops_when_a_client_runs_without_the_mod():
    st = strategy()
    arrays = ArrayRecord(tiny_model().state_dict())
    msg = train_msg(st, arrays)
    replies = _replies(st, arrays)[:2] + [trainer()(msg, context(node=99))]
    with pytest.raises(FedshieldError, match="DefenseMod"):
        st.aggregate_train(1, replies)


# ----------------------------------------------------------------------------- end to end (Ray)
N_CLIENTS, ROUNDS, SIGMA, RATIO, S = 4, 3, 0.05, 0.2, 10  # SIGMA: noise std on the weights
CLIENT_LR = 0.1


def _lenet():
    from fedshield.models import build_model
    return build_model("lenet", "mnist", n_conv=3)


def _local_train(model, x, y, seed):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=CLIENT_LR)
    for _ in range(10):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 16):
            b = perm[i:i + 16]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()


def _make_client_app(client_sets, clean_dir):
    from flwr.clientapp import ClientApp

    app = ClientApp(mods=[DefenseMod()])  # OS-entropy noise, as deployed

    @app.train()
    def train(msg, ctx):
        torch.set_num_threads(1)
        pid = int(ctx.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        x, y = client_sets[pid]
        model = _lenet()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        _local_train(model, x, y, seed=100 * rnd + pid)
        trained = ArrayRecord(model.state_dict())
        # side channel for the test only: the clean trained arrays, before the mod
        torch.save(arrays_to_flat(trained, trainable_keys(model)), os.path.join(clean_dir, f"r{rnd}_p{pid}.pt"))
        return Message(RecordDict({"arrays": trained,
                                   "metrics": MetricRecord({"num-examples": len(y), "pid": pid})}), reply_to=msg)

    return app


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.timeout(240)
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_flower_simulation_end_to_end(data_root, tmp_path):
    """A real Flower simulation (Ray): what the server receives differs from the clients' clean
    trained arrays exactly on k whole slices of that round's risk slicing, and the compensated
    global model learns."""
    import ray.cloudpickle
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from fedshield.data import load_dataset, partition_iid, root_set

    x, y = load_dataset("mnist", "train", data_root, progress=False)
    xt, yt = load_dataset("mnist", "test", data_root, progress=False)
    parts = partition_iid(y, N_CLIENTS, samples_per_client=100, seed=0)
    ridx = root_set(y, 32, exclude=parts, seed=0)
    client_sets = [(x[p].clone(), y[p].clone()) for p in parts]
    xt, yt = xt[:1000], yt[:1000]
    model = _lenet().dlg_init_(torch.Generator().manual_seed(0))
    keys = trainable_keys(model)

    sent, received, accuracy = {}, {}, {}

    class Recording(DefendedStrategy):
        def configure_train(self, server_round, arrays, config, grid):
            msgs = list(super().configure_train(server_round, arrays, config, grid))
            sent[server_round] = (list(msgs[0].content["config"][KEY_BOUNDS]), arrays_to_flat(arrays, keys))
            return msgs

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            for r in replies:
                assert not r.has_error(), r.error.reason
                pid = int(r.content["metrics"]["pid"])
                received[(server_round, pid)] = arrays_to_flat(r.content["arrays"], keys)
            return super().aggregate_train(server_round, replies)

    server_app = ServerApp()
    st_box = {}

    @server_app.main()
    def main(grid, ctx):
        st = Recording(FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=N_CLIENTS,
                              min_available_nodes=N_CLIENTS),
                       model, PaperDefense(x[ridx], y[ridx], ratio=RATIO, sigma=SIGMA / CLIENT_LR, n_slices=S,
                                           seed=0), local_lr=CLIENT_LR)
        st_box["st"] = st

        def central_eval(rnd, arrays):
            m = _lenet()
            m.load_state_dict(arrays.to_torch_state_dict())
            with torch.no_grad():
                accuracy[rnd] = float((m(xt).argmax(1) == yt).float().mean())
            return MetricRecord({"accuracy": accuracy[rnd]})

        st.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=ROUNDS, timeout=120,
                 evaluate_fn=central_eval)

    # The ClientApp runs in Ray workers that cannot import this test module: ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        run_simulation(server_app=server_app, client_app=_make_client_app(client_sets, str(tmp_path)),
                       num_supernodes=N_CLIENTS,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"num_cpus": 2}})
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])

    assert len(received) == N_CLIENTS * ROUNDS
    k = D.n_perturbed(S, RATIO)
    for (rnd, pid), got in received.items():
        bounds, _ = sent[rnd]
        clean = torch.load(tmp_path / f"r{rnd}_p{pid}.pt")
        changed, whole = slice_change_pattern(got, clean, bounds)
        assert whole, f"round {rnd}, client {pid}: a slice was partly perturbed"
        assert len(changed) == k, f"round {rnd}, client {pid}: {len(changed)} slices changed, expected {k}"
    # the server re-sliced every round from the new global model
    assert len({tuple(b) for b, _ in sent.values()}) > 1
    # the compensated model learns
    assert sorted(accuracy) == list(range(ROUNDS + 1))
    assert accuracy[ROUNDS] > accuracy[0] + 0.15, accuracy
    assert len(st_box["st"].history) == ROUNDS


# ----------------------------------------------------------------------------- units = the simulator's
def test_one_sigma_is_one_noise_variance_in_flower_and_in_the_simulator():
    """What the server receives, as a pseudo-gradient (w_global - w_i) / local_lr, carries noise
    of variance sigma^2 on the perturbed entries in both the simulator (share='gradient') and
    Flower; and the compensation uses the same aggregate noise variance."""
    from fedshield.fl import FLConfig, Simulator
    from fedshield.hooks import Defense

    lr, sigma, ratio = 0.05, 0.2, 0.5
    model = tiny_model()
    g = torch.Generator().manual_seed(3)
    data = [(torch.rand(5, 1, 8, 8, generator=g), torch.randint(0, 4, (5,), generator=g)) for _ in range(4)]
    cfg = FLConfig(rounds=1, n_clients=4, per_round=4, local_lr=lr, seed=0)
    rx, ry = root()

    class Spy(Defense):  # the simulator's hooks: clean pseudo-gradients in, what the server receives out
        def __init__(self):
            self.inner = PaperDefense(rx, ry, ratio=ratio, sigma=sigma, seed=1)

        def on_round_start(self, model, r):
            self.inner.on_round_start(model, r)

        def client(self, updates, ctx):
            self.clean = updates.clone()
            self.sent = self.inner.client(updates, ctx)
            return self.sent

        def server(self, agg, ctx):
            out = self.inner.server(agg, ctx)
            self.noise_var = ctx.extra["noise_var"]
            return out

    spy = Spy()
    Simulator(copy.deepcopy(model), data, None, cfg, spy, batched=False).round()
    sim_noise = (spy.sent - spy.clean)[spy.sent != spy.clean]

    st = strategy(sigma=sigma, ratio=ratio, local_lr=lr)
    arrays = ArrayRecord(model.state_dict())
    keys = trainable_keys(model)
    msg = train_msg(st, arrays)
    w = arrays_to_flat(arrays, keys)
    noise, replies = [], []
    for i in range(4):
        out = DefenseMod(seed=0)(msg, context(node=i, partition=i), trainer(scale=0.01, seed=i))
        clean = trainer(scale=0.01, seed=i)(msg, context(node=i)).content["arrays"]
        received = (w - arrays_to_flat(out.content["arrays"], keys)) / lr
        d = received - (w - arrays_to_flat(clean, keys)) / lr
        noise.append(d[d.abs() > 1e-4])
        replies.append(out)
    fl_noise = torch.cat(noise)
    for z in (sim_noise, fl_noise):
        assert abs(float(z.std()) / sigma - 1) < 0.1, float(z.std())
    st.aggregate_train(1, replies)
    p = torch.full((4,), 0.25, dtype=torch.float64)
    assert st.history[-1]["noise_var"] == pytest.approx(D.aggregate_noise_var(p, ratio, sigma, n_slices=10))
    assert spy.noise_var == pytest.approx(st.history[-1]["noise_var"])  # equal client sizes in both


@pytest.mark.parametrize("rule", ["hard", "shrink"])
def test_strategy_per_layer_compensation(rule):
    """``PaperDefense(compensation=...)`` reaches the Flower strategy: the shift applied to every reply
    is the per-layer compensation of the weighted mean update (pseudo-gradient units)."""
    st = strategy(sigma=0.5, ratio=0.5, compensation=rule)
    agg, metrics, got, mean, p, g_model = _aggregate(st)
    var = D.aggregate_noise_var(p, 0.5, 0.5, n_slices=10)
    shapes = [q.shape for q in g_model.parameters() if q.requires_grad]
    expected = LR * D.compensate_layers(mean / LR, shapes, var, rule=rule)
    assert torch.allclose(got, expected, atol=1e-5) and not torch.allclose(got, mean, atol=1e-4)
