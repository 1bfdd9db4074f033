"""Round time of the batched FedAvg simulator vs the plain per-client loop.

Setting: CIFAR-10, LeNet, the paper's partition (1,000 clients, 2 classes each,
U{1..20} samples per class), 200 clients per round, 2 local epochs of full-batch SGD (lr 1e-2).
Both simulators start from the same model and seed, so they sample the same clients and must
end with the same weights (printed as a check). After ``--warmup`` rounds each, ``--rounds``
rounds are timed (no evaluation).

Also printed: the *compute floor*, one forward+backward pass of the shared global model over all
the round's samples per local epoch. Any implementation has to do at least this arithmetic, so
``loop / floor`` bounds the speed-up batching can give on this device: on a small CPU the loop is
already close to compute bound, on a GPU it is launch bound.

Usage: ``python benchmarks/bench_simulator.py [--rounds 3] [--per-round 200] [--device cpu]``
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import torch
import torch.nn.functional as F

from fedshield.fl import FLConfig, Simulator, build_global_model


def load(n_clients: int, k: int, seed: int):
    try:
        from fedshield import data as D

        x, y = D.load_dataset("cifar10", "train", progress=False)
        parts = D.partition_noniid(y, n_clients, classes_per_client=2, max_per_class=k, seed=seed)
        return x, y, parts, "real CIFAR-10 (fedshield.data)"
    except Exception as e:  # no data here: synthetic tensors of the same shapes and partition sizes
        g = torch.Generator().manual_seed(seed)
        sizes = torch.randint(1, k + 1, (n_clients, 2), generator=g).sum(1)
        x = torch.rand(int(sizes.sum()), 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (len(x),), generator=g)
        parts = list(torch.arange(len(x)).split(sizes.tolist()))
        return x, y, parts, f"SYNTHETIC data of CIFAR-10's shape (real data unavailable: {e})"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per simulator (default 3)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--per-round", type=int, default=200)
    ap.add_argument("--max-per-class", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--group-size", type=int, default=None, help="clients per vmapped group (default: auto)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = FLConfig(dataset="cifar10", model="lenet", n_clients=args.clients, per_round=args.per_round,
                   rounds=args.warmup + args.rounds, local_epochs=2, local_lr=1e-2, seed=0)
    x, y, parts, what = load(args.clients, args.max_per_class, cfg.seed)
    model0 = build_global_model(cfg).to(args.device)
    print(f"data: {what}")
    print(f"CIFAR-10 LeNet ({sum(p.numel() for p in model0.parameters())} parameters), {args.clients} clients, "
          f"{args.per_round} per round, 2 local epochs full batch, device {args.device}, "
          f"{torch.get_num_threads()} CPU threads, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    times, finals, sims = {}, {}, {}
    for name, batched in (("batched", True), ("loop", False)):
        model = copy.deepcopy(model0)
        sim = Simulator.from_partition(model, x, y, parts, None, cfg, batched=batched, group_size=args.group_size)
        for _ in range(args.warmup):
            sim.round(evaluate=False)
        ts = [sim.round(evaluate=False)["round_time"] for _ in range(args.rounds)]
        times[name], finals[name], sims[name] = ts, torch.cat([p.detach().reshape(-1) for p in model.parameters()]), sim
        print(f"{name:8s} round time: mean {sum(ts) / len(ts):.3f} s  (rounds: {', '.join(f'{t:.3f}' for t in ts)})"
              + (f"  group size {sim.group_size}" if batched else ""), flush=True)

    # compute floor: shared-model forward+backward over the last round's samples, once per epoch
    sim = sims["loop"]
    ids = sim.history[-1]["clients"]
    idx = torch.cat([sim._index[c] for c in ids])
    m = copy.deepcopy(model0)
    floor = []
    for _ in range(2):
        t = time.perf_counter()
        for _ in range(cfg.local_epochs):
            m.zero_grad()
            F.cross_entropy(m(sim._x[idx]), sim._y[idx]).backward()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        floor.append(time.perf_counter() - t)

    tb, tl = (sum(times[k]) / len(times[k]) for k in ("batched", "loop"))
    diff = (finals["batched"] - finals["loop"]).abs().max().item()
    print(f"compute floor (one shared-model pass over the round's {len(idx)} samples per epoch): {min(floor):.3f} s")
    print(f"speed-up batched vs loop: {tl / tb:.2f}x   (loop / floor = {tl / min(floor):.2f}x: the most any "
          f"batching can gain here)")
    print(f"max |w_batched - w_loop| after {args.warmup + args.rounds} rounds: {diff:.2e}")


if __name__ == "__main__":
    main()
