"""Per-round cost of the fedshield defense inside Flower, as a ratio to the undefended round.

One Flower simulation (Ray, in-process), one warm set of client actors, the paper's MNIST
setting (100 non-IID clients, 10 per round, LeNet). The ServerApp runs alternating phases
undefended / defended / undefended / defended of ``--rounds`` rounds each, from the same initial
model, so both settings share the same warm actors and drift in machine load is spread evenly;
the first round of the first phase (actor start-up) is not counted. A round's wall time is the
interval between Flower's consecutive central-evaluation callbacks (training round only).

Also printed: the server-side parts (risk slicing once per round, compensation) and the
client-side mod (clip + perturb) timed in-process against one local training run.

    python benchmarks/bench_flower.py [--rounds 5] [--root-size 100] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

for _k, _v in (("FLWR_TELEMETRY_ENABLED", "0"), ("FLWR_DISABLE_UPDATE_CHECK", "1"),
               ("RAY_USAGE_STATS_ENABLED", "0")):
    os.environ.setdefault(_k, _v)

import torch

try:
    import flwr  # noqa: F401
except ModuleNotFoundError:
    print("bench_flower: skipped, Flower is not installed (pip install 'fedshield[flower]')")
    sys.exit(0)

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, Metadata, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from fedshield.data import load_dataset, partition_noniid, root_set
from fedshield.defense import PaperDefense
from fedshield.errors import FedshieldError
from fedshield.flower import DefendedStrategy, DefenseMod
from fedshield.models import build_model

N_CLIENTS, PER_ROUND, EPOCHS, LR, BS = 100, 10, 10, 0.1, 16
SIGMA, RATIO, S, Q = 0.1, 0.2, 10, 6.0  # sigma in gradient units: 0.01 on the weights at LR 0.1


def lenet() -> torch.nn.Module:
    return build_model("lenet", "mnist", n_conv=3)


def local_train(model, x, y, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(EPOCHS):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), BS):
            b = perm[i:i + BS]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()


def make_client_app(client_sets) -> ClientApp:
    # strict=False: the undefended phases send no fedshield config and the mod passes through.
    app = ClientApp(mods=[DefenseMod(strict=False)])

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        torch.set_num_threads(1)
        pid = int(ctx.node_config["partition-id"])
        x, y = client_sets[pid]
        model = lenet()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        local_train(model, x, y, seed=pid)
        return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()),
                                   "metrics": MetricRecord({"num-examples": len(y)})}), reply_to=msg)

    return app


def client_mod_cost(client_sets, root, reps: int = 20) -> tuple[float, float]:
    """(median seconds of DefenseMod's own work, median seconds of one local training), in-process."""
    torch.set_num_threads(1)
    model = lenet().dlg_init_(torch.Generator().manual_seed(0))
    st = DefendedStrategy(FedAvg(), model, PaperDefense(*root, ratio=RATIO, sigma=SIGMA, n_slices=S, q=Q), local_lr=LR)
    arrays = ArrayRecord(model.state_dict())
    cfg = st.round_config(arrays, ConfigRecord({"server-round": 1}))
    md = Metadata(run_id=1, message_id="b", src_node_id=0, dst_node_id=1, reply_to_message_id="", group_id="1",
                  created_at=time.time(), ttl=3600.0, message_type=MessageType.TRAIN)
    msg = Message(content=RecordDict({"arrays": arrays, "config": cfg}), metadata=md)
    ctx = Context(run_id=1, node_id=1, node_config={"partition-id": 0}, state=RecordDict(), run_config={})
    x, y = client_sets[0]
    trained = {}

    def train_once(m, c):
        t = time.perf_counter()
        net = lenet()
        net.load_state_dict(m.content["arrays"].to_torch_state_dict())
        local_train(net, x, y, seed=0)
        reply = Message(RecordDict({"arrays": ArrayRecord(net.state_dict()),
                                    "metrics": MetricRecord({"num-examples": len(y)})}), reply_to=m)
        trained["t"] = time.perf_counter() - t
        return reply

    mod, t_mod, t_train = DefenseMod(), [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = mod(msg, ctx, train_once)
        total = time.perf_counter() - t0
        if out.has_error():
            raise FedshieldError(out.error.reason)
        t_train.append(trained["t"])
        t_mod.append(total - trained["t"])
    return statistics.median(t_mod), statistics.median(t_train)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="rounds per phase (4 phases)")
    ap.add_argument("--root-size", type=int, default=100)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    x, y = load_dataset("mnist", "train", args.data_dir, progress=False)
    parts = partition_noniid(y, N_CLIENTS, seed=0)
    ridx = root_set(y, args.root_size, exclude=parts, seed=0)
    client_sets = [(x[p].clone(), y[p].clone()) for p in parts]
    root = (x[ridx].clone(), y[ridx].clone())
    model = lenet().dlg_init_(torch.Generator().manual_seed(0))

    times: dict[str, list[float]] = {"undefended": [], "defended": []}
    server_parts: list[dict] = []
    server_app = ServerApp()

    @server_app.main()
    def run(grid, ctx):
        for phase, defended in enumerate([False, True, False, True]):
            strategy = FedAvg(fraction_train=PER_ROUND / N_CLIENTS, fraction_evaluate=0.0,
                              min_train_nodes=PER_ROUND, min_available_nodes=N_CLIENTS)
            if defended:
                strategy = DefendedStrategy(strategy, model, PaperDefense(*root, ratio=RATIO, sigma=SIGMA, n_slices=S,
                                                                          q=Q, seed=phase), local_lr=LR)
            stamps = []

            def tick(rnd, arrays):
                stamps.append(time.perf_counter())
                return None

            strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=args.rounds,
                           timeout=600, evaluate_fn=tick)
            rounds = [b - a for a, b in zip(stamps, stamps[1:])]
            if phase == 0:
                rounds = rounds[1:]  # actor start-up
            times["defended" if defended else "undefended"] += rounds
            if defended:
                server_parts.extend(strategy.history)

    t0 = time.perf_counter()
    run_simulation(server_app=server_app, client_app=make_client_app(client_sets), num_supernodes=N_CLIENTS,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    wall = time.perf_counter() - t0

    t_mod, t_train = client_mod_cost(client_sets, root)
    med = {k: statistics.median(v) for k, v in times.items()}
    slice_s = statistics.median(h["slice_s"] for h in server_parts)
    comp_s = statistics.median(h["compensate_s"] for h in server_parts)
    P = sum(p.numel() for p in model.parameters())
    print(f"\nFlower {flwr.__version__}, MNIST LeNet (P = {P}), {N_CLIENTS} clients, {PER_ROUND} per round, "
          f"{EPOCHS} local epochs, root set {args.root_size}, s = {S}, ratio = {RATIO}, sigma = {SIGMA}; "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"simulation wall time {wall:.1f} s ({len(times['undefended'])} + {len(times['defended'])} rounds timed)\n")
    print(f"{'per round (median)':38s} {'seconds':>9s} {'ratio':>8s}")
    print(f"{'undefended FedAvg round':38s} {med['undefended']:9.3f} {1.0:8.2f}")
    print(f"{'defended round':38s} {med['defended']:9.3f} {med['defended'] / med['undefended']:8.2f}")
    print(f"{'  server: risk slicing (once/round)':38s} {slice_s:9.3f} {slice_s / med['undefended']:8.2f}")
    print(f"{'  server: compensation':38s} {comp_s:9.3f} {comp_s / med['undefended']:8.2f}")
    print(f"{'  client: DefenseMod (clip+perturb)':38s} {t_mod:9.4f} {'':8s}")
    print(f"{'  client: one local training':38s} {t_train:9.4f} {'':8s}")
    print(f"{'  client: mod / local training':38s} {'':9s} {t_mod / t_train:8.3f}")
    print(f"\nall rounds (s): undefended {[round(t, 2) for t in times['undefended']]}")
    print(f"                defended   {[round(t, 2) for t in times['defended']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
