"""FedAvg simulator: exact math, batched == loop, hooks, determinism, caching/resume, learning."""
import copy
import json
import time

import pytest
import torch
import torch.nn.functional as F

from fedshield.errors import FedshieldError
from fedshield.fl import FLConfig, Simulator, fedavg_key, run_fedavg
from fedshield.hooks import Defense
from fedshield.models import ConvNet, LeNet
from fedshield.utils import flatten


def _flat(model):
    return flatten([p.detach() for p in model.parameters()]).clone()


def _clients(sizes, shape=(1, 12, 12), k=10, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(n, *shape, generator=g, dtype=dtype), torch.randint(0, k, (n,), generator=g))
            for n in sizes]


def _lenet(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return LeNet(1, 10, 12, n_conv=2, dlg_init=True).to(dtype)


class Recorder(Defense):
    """Records what the hooks see; optionally scales the client updates / zeroes the aggregate."""

    def __init__(self, client_scale=1.0, zero_server=False):
        self.client_scale, self.zero_server = client_scale, zero_server
        self.starts, self.updates, self.aggs, self.ctxs = [], [], [], []

    def on_round_start(self, model, r):
        self.starts.append((r, _flat(model)))

    def client(self, updates, ctx):
        out = updates * self.client_scale
        self.updates.append(out.clone())
        self.ctxs.append(ctx)
        return out

    def server(self, agg, ctx):
        self.aggs.append(agg.clone())
        return torch.zeros_like(agg) if self.zero_server else agg

    def __repr__(self):
        return f"Recorder({self.client_scale}, {self.zero_server})"


# ------------------------------------------------------------------------------- exact math
@pytest.mark.parametrize("batched", [True, False])
def test_one_client_full_batch_equals_plain_sgd(batched):
    data = _clients([13])
    model = _lenet()
    ref = copy.deepcopy(model)
    cfg = FLConfig(n_clients=1, per_round=1, rounds=1, local_epochs=1, local_lr=0.3, server_lr=1.0)
    Simulator(model, data, None, cfg, batched=batched).round()
    loss = F.cross_entropy(ref(data[0][0]), data[0][1])
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    expected = _flat(ref) - 0.3 * flatten(grads)
    torch.testing.assert_close(_flat(model), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(_flat(model), _flat(ref))  # it moved


@pytest.mark.parametrize("batched", [True, False])
def test_minibatch_steps_follow_the_epoch_shuffle(batched):
    """7 samples, batch 3: steps on 3, 3, then the remaining 1 sample, in the epoch's shuffled order."""
    data = _clients([7], dtype=torch.float64)
    model = _lenet(dtype=torch.float64)
    ref = copy.deepcopy(model)
    cfg = FLConfig(n_clients=1, per_round=1, local_epochs=1, local_lr=0.2, local_batch_size=3, server_lr=0.5)
    sim = Simulator(model, data, None, cfg, batched=batched)
    g = torch.Generator()
    g.set_state(sim.gen_train.get_state())
    perm = torch.rand(1, 7, generator=g).argsort(1)[0]
    sim.round()
    w0 = _flat(ref)
    opt = torch.optim.SGD(ref.parameters(), lr=0.2)
    for b in perm.split(3):
        opt.zero_grad()
        F.cross_entropy(ref(data[0][0][b]), data[0][1][b]).backward()
        opt.step()
    expected = w0 - 0.5 * (w0 - _flat(ref))
    torch.testing.assert_close(_flat(model), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make,bs", [
    (lambda dt: _lenet(dtype=dt), None),
    (lambda dt: _lenet(dtype=dt), 4),
    (lambda dt: (torch.manual_seed(0), ConvNet(1, 10, 12, width=2, norm="group").to(dt))[1], 4),
], ids=["lenet-full", "lenet-b4", "convnet-group-b4"])
def test_batched_equals_loop(make, bs):
    sizes = [3, 9, 1, 6, 11, 5, 2]  # batch 4 divides none of 3, 9, 1, 6, 11, 5, 2
    data = _clients(sizes, dtype=torch.float64)
    cfg = FLConfig(n_clients=7, per_round=5, rounds=2, local_epochs=2, local_lr=0.2,
                   local_batch_size=bs, server_lr=0.8)
    m0 = make(torch.float64)
    out = {}
    for batched in (True, False):
        model = copy.deepcopy(m0)
        sim = Simulator(model, data, data[0], cfg, batched=batched, group_size=2)  # several groups
        res = sim.run(progress=False)
        out[batched] = (_flat(model), res)
    torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-9, atol=1e-11)
    assert out[True][1]["clients"] == out[False][1]["clients"]
    assert out[True][1]["accuracy"] == out[False][1]["accuracy"]
    assert not torch.allclose(out[True][0], _flat(m0))


def test_batched_equals_loop_float32_all_in_one_group():
    data = _clients([4, 10, 7, 1, 8])
    cfg = FLConfig(n_clients=5, per_round=5, rounds=2, local_lr=0.1, local_batch_size=3)
    w = {}
    for batched in (True, False):
        model = _lenet()
        Simulator(model, data, None, cfg, batched=batched).run(progress=False)
        w[batched] = _flat(model)
    torch.testing.assert_close(w[True], w[False], rtol=1e-4, atol=1e-6)


def test_batchnorm_model_falls_back_to_loop():
    data = _clients([4, 6, 5])
    torch.manual_seed(0)
    model = ConvNet(1, 10, 12, width=2, norm="batch")
    cfg = FLConfig(n_clients=3, per_round=2, rounds=1, local_lr=0.1)
    with pytest.warns(UserWarning, match="BatchNorm"):
        sim = Simulator(model, data, data[0], cfg, batched=True)
    assert sim.batched is False
    before = model.body[1].running_mean.clone()
    rec = sim.round()
    assert rec["accuracy"] is not None
    # running statistics: sample-weighted average of the clients'
    assert not torch.allclose(model.body[1].running_mean, before)


# ------------------------------------------------------------------------------------ hooks
@pytest.mark.parametrize("batched", [True, False])
def test_hooks_see_weighted_average_and_zero_updates_freeze_model(batched):
    sizes = [3, 8, 5, 2]
    data = _clients(sizes)
    cfg = FLConfig(n_clients=4, per_round=3, rounds=2, local_lr=0.1, server_lr=0.5)
    model = _lenet()
    w0 = _flat(model)
    d = Recorder()
    sim = Simulator(model, data, None, cfg, d, batched=batched)
    sim.round()
    ctx, upd, agg = d.ctxs[0], d.updates[0], d.aggs[0]
    ids = list(ctx.client_ids)
    n = torch.tensor([sizes[i] for i in ids], dtype=torch.float32)
    torch.testing.assert_close(ctx.weights, n / n.sum())
    torch.testing.assert_close(agg, (n / n.sum()) @ upd)
    torch.testing.assert_close(_flat(model), w0 - 0.5 * cfg.local_lr * agg)   # share="gradient": agg is in gradient units
    assert d.starts[0][0] == 0 and torch.equal(d.starts[0][1], w0)
    assert ctx.round == 0 and ctx.generator is not None and len(ctx.client_data) == 3
    for j, i in enumerate(ids):
        assert torch.equal(ctx.client_data[j][0], data[i][0]) and torch.equal(ctx.client_data[j][1], data[i][1])
    assert upd.shape == (3, sim.n_params)

    for defense in (Recorder(client_scale=0.0), Recorder(zero_server=True)):
        model = _lenet()
        w0 = _flat(model)
        Simulator(model, data, None, cfg, defense, batched=batched).run(progress=False)
        assert torch.equal(_flat(model), w0)
        assert len(defense.aggs) == 2


class Slow(Defense):
    """Sleeps a known time in each hook, so the split of the round time can be checked."""

    def on_round_start(self, model, r):
        time.sleep(0.03)

    def client(self, updates, ctx):
        time.sleep(0.02)
        return updates

    def server(self, agg, ctx):
        time.sleep(0.01)
        return agg


def test_round_time_is_split_by_defense_hook():
    cfg = FLConfig(n_clients=4, per_round=2, rounds=3, local_lr=0.1)
    sim = Simulator(_lenet(), _clients([3, 4, 5, 2]), None, cfg, Slow())
    res = sim.run(progress=False)
    parts = res["mean_defense_time"]
    assert parts["round_start"] >= 0.03 and parts["client"] >= 0.02 and parts["server"] >= 0.01
    assert parts["round_start"] > parts["client"] > parts["server"]
    assert sum(parts.values()) <= res["mean_round_time"]
    assert all(set(r["defense_time"]) == {"round_start", "client", "server"} for r in sim.history)


def test_hook_shape_is_checked():
    class Bad(Defense):
        def client(self, updates, ctx):
            return updates[:, :5]

    data = _clients([3, 4])
    cfg = FLConfig(n_clients=2, per_round=2, rounds=1)
    with pytest.raises(FedshieldError, match="defense.client"):
        Simulator(_lenet(), data, None, cfg, Bad()).round()


# ------------------------------------------------------------------------------ determinism
def test_same_seed_same_numbers_other_seed_differs():
    data = _clients([5, 9, 4, 7, 6, 3], seed=1)
    test = _clients([40], seed=2)[0]

    def go(seed):
        cfg = FLConfig(n_clients=6, per_round=3, rounds=2, local_lr=0.5, local_batch_size=3, seed=seed)
        model = _lenet()
        res = Simulator(model, data, test, cfg).run(progress=False)
        return res, _flat(model)

    (r1, w1), (r2, w2), (r3, w3) = go(0), go(0), go(1)
    assert r1["accuracy"] == r2["accuracy"] and r1["clients"] == r2["clients"]
    assert torch.equal(w1, w2)
    assert r1["clients"] != r3["clients"] or not torch.equal(w1, w3)
    assert r1["eval_rounds"] == [1, 2] and len(r1["round_time"]) == 2
    assert all(len(c) == 3 and len(set(c)) == 3 for c in r1["clients"])


def test_eval_every_and_state_dict_roundtrip():
    data = _clients([5, 9, 4, 7], seed=3)
    test = _clients([30], seed=4)[0]
    cfg = FLConfig(n_clients=4, per_round=2, rounds=5, eval_every=2, local_lr=0.3, local_batch_size=3)
    full = Simulator(_lenet(), data, test, cfg)
    res = full.run(progress=False)
    assert res["eval_rounds"] == [2, 4, 5]
    a = Simulator(_lenet(), data, test, cfg)
    a.run(rounds=2, progress=False)
    state = a.state_dict()
    b = Simulator(_lenet(seed=99), data, test, cfg)  # different init: the state overrides it
    b.load_state_dict(state)
    res_b = b.run(progress=False)
    assert res_b["clients"] == res["clients"] and res_b["accuracy"] == res["accuracy"]
    assert torch.equal(_flat(b.model), _flat(full.model))


def test_config_validation():
    with pytest.raises(FedshieldError, match="per_round"):
        FLConfig(n_clients=5, per_round=6)
    with pytest.raises(FedshieldError, match="rounds"):
        FLConfig(rounds=0)
    with pytest.raises(FedshieldError, match="unknown dataset"):
        FLConfig(dataset="imagenet")
    with pytest.raises(FedshieldError, match="local_lr"):
        FLConfig(local_lr=-1.0)
    with pytest.raises(FedshieldError, match="local_batch_size"):
        FLConfig(local_batch_size=0)
    assert FLConfig(dataset="Fashion-MNIST").dataset == "fmnist"
    assert FLConfig(model_kwargs={"dlg_init": True}).model_kwargs == (("dlg_init", True),)
    with pytest.raises(FedshieldError, match="n_clients"):
        Simulator(_lenet(), _clients([2, 3]), None, FLConfig(n_clients=3, per_round=1))


# ----------------------------------------------------------------------- real data (MNIST)
SMALL = dict(dataset="mnist", rounds=5, n_clients=20, per_round=5, partition="iid", max_per_class=49,
             local_lr=0.1, local_batch_size=10, test_samples=500,
             model_kwargs=(("dlg_init", True), ("n_conv", 1)))


def test_mnist_fedavg_learns(data_root):
    res = run_fedavg(FLConfig(**SMALL), data_dir=data_root, progress=False, cache=False)
    json.dumps(res)  # JSON-able
    assert res["eval_rounds"] == [1, 2, 3, 4, 5] and len(res["accuracy"]) == 5
    assert res["final_accuracy"] > 0.2, res["accuracy"]  # chance is 0.1
    assert res["config"]["dataset"] == "mnist" and res["defense"] == "Defense()"
    assert res["mean_round_time"] > 0 and len(res["client_sizes"]) == 20


class Interrupt(Defense):
    """Raises KeyboardInterrupt at round ``at`` when armed; its repr ignores the arming."""

    def __init__(self, at=None):
        self.at, self.seen = at, []

    def on_round_start(self, model, r):
        self.seen.append(r)
        if r == self.at:
            raise KeyboardInterrupt

    def __repr__(self):
        return "Interrupt()"


def test_run_fedavg_caches_and_resumes(data_root, tmp_path):
    cfg = FLConfig(**{**SMALL, "rounds": 4, "n_clients": 10, "per_round": 3, "test_samples": 200})
    ref = run_fedavg(cfg, Interrupt(), data_dir=data_root, progress=False, cache=False)
    with pytest.raises(KeyboardInterrupt):
        run_fedavg(cfg, Interrupt(at=3), data_dir=data_root, progress=False, cache_dir=tmp_path,
                   checkpoint_every=2)
    key = fedavg_key(cfg, Interrupt())
    assert (tmp_path / f"{key}.ckpt.pt").exists()
    d = Interrupt()
    res = run_fedavg(cfg, d, data_dir=data_root, progress=False, cache_dir=tmp_path, checkpoint_every=2)
    assert d.seen == [2, 3]  # resumed after the checkpoint of round 2
    assert res["accuracy"] == ref["accuracy"] and res["clients"] == ref["clients"]
    assert not (tmp_path / f"{key}.ckpt.pt").exists()
    d2 = Interrupt()
    again = run_fedavg(cfg, d2, data_dir=data_root, progress=False, cache_dir=tmp_path)
    assert d2.seen == [] and again["accuracy"] == res["accuracy"]  # served from the cache


def test_run_fedavg_snapshots_survive_resume_and_rerun_when_missing(data_root, tmp_path):
    from fedshield.fl import snapshot_path
    cfg = FLConfig(**{**SMALL, "rounds": 4, "n_clients": 10, "per_round": 3, "test_samples": 200})
    with pytest.raises(KeyboardInterrupt):
        run_fedavg(cfg, Interrupt(at=3), data_dir=data_root, progress=False, cache_dir=tmp_path,
                   checkpoint_every=2, snapshots=(0, 1, 4))
    key = fedavg_key(cfg, Interrupt())
    assert snapshot_path(key, 0, tmp_path).exists() and snapshot_path(key, 1, tmp_path).exists()
    d = Interrupt()
    run_fedavg(cfg, d, data_dir=data_root, progress=False, cache_dir=tmp_path, checkpoint_every=2, snapshots=(0, 1, 4))
    assert d.seen == [2, 3]     # resumed: the snapshots before the checkpoint exist
    last = torch.load(snapshot_path(key, 4, tmp_path), weights_only=True)
    d = Interrupt()
    run_fedavg(cfg, d, data_dir=data_root, progress=False, cache_dir=tmp_path, snapshots=(4,))
    assert d.seen == []         # cached, snapshot there
    snapshot_path(key, 4, tmp_path).unlink()
    d = Interrupt()
    run_fedavg(cfg, d, data_dir=data_root, progress=False, cache_dir=tmp_path, snapshots=(2, 4))
    assert d.seen == [0, 1, 2, 3]   # snapshots the cached run lacks: the run is repeated, the same run
    again = torch.load(snapshot_path(key, 4, tmp_path), weights_only=True)
    assert all(torch.equal(last[k], again[k]) for k in last)
    with pytest.raises(FedshieldError, match="snapshots must be rounds"):
        run_fedavg(cfg, data_dir=data_root, progress=False, cache_dir=tmp_path, snapshots=(5,))
    with pytest.raises(FedshieldError, match="cache=True"):
        run_fedavg(cfg, data_dir=data_root, progress=False, cache=False, snapshots=(1,))


def test_share_gradient_and_update_give_same_model_without_defense():
    data = _clients([3, 8, 5, 2])
    out = []
    for share in ("gradient", "update"):
        cfg = FLConfig(n_clients=4, per_round=3, rounds=2, local_lr=0.1, share=share)
        model = _lenet()
        Simulator(model, data, None, cfg, None, batched=True).run(progress=False)
        out.append(_flat(model))
    torch.testing.assert_close(out[0], out[1])


def test_share_gradient_hands_hooks_the_pseudo_gradient():
    data = _clients([4, 6])
    res = {}
    for share in ("gradient", "update"):
        cfg = FLConfig(n_clients=2, per_round=2, rounds=1, local_lr=0.1, share=share)
        d = Recorder()
        Simulator(_lenet(), data, None, cfg, d, batched=True).round()
        res[share] = d.updates[0]
    torch.testing.assert_close(res["gradient"] * 0.1, res["update"])
