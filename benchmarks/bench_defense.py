"""Cost of the paper's defense (fedshield.defense) next to the work it protects.

Printed for LeNet (the authors' 3-conv DLG LeNet, 15,826 parameters, and the paper's 4-conv one)
and the Inverting-Gradients ConvNet (width 64), CIFAR-10 shapes:

1. client side: ``clip`` + ``perturb`` of one update ``[P]`` (reservoir path) and per client in
   the batched ``[m, P]`` path, divided by one local training step (forward + backward + SGD
   step of the model on a mini-batch) -- goal <= 0.1. For LeNet a naive per-entry Python loop
   (one ``random.gauss`` per perturbed entry, the structure of the authors' code) is timed too;
   the issue quotes 17 ms for the authors' code on this machine, 4.7x a local SGD step.
2. server side: ``compensate`` of the aggregate divided by one undefended FedAvg round of the
   simulator (``m`` clients, 2 local epochs of full-batch SGD on the paper's CIFAR-10 partition
   sizes, synthetic pixels).
3. ``leakage_risk`` for 100 root images (8 probes) -- goal <= 3 s for LeNet on 2 cores.

Timings are the minimum over ``--repeat`` or more runs after a warm-up (the least disturbed by
other jobs on a shared machine); for ``leakage_risk`` the process CPU time divided by the number
of threads is printed too. Usage: ``python benchmarks/bench_defense.py [--threads 2] [--repeat 5]``
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import torch
import torch.nn.functional as F

from fedshield.defense import (aggregate_noise_var, clip, compensate, leakage_risk, n_perturbed,
                               perturb, risk_slices)
from fedshield.models import ConvNet, LeNet
from fedshield.utils import make_generator, param_sizes


def timeit(fn, repeat: int, warmup: int = 1, budget: float = 0.5) -> tuple[float, float]:
    """Best (minimum) wall and CPU seconds of ``fn()`` over at least ``repeat`` runs, more for
    fast functions (until ``budget`` seconds are spent). The minimum is the least disturbed by
    other jobs on a shared machine."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    start = time.perf_counter()
    while len(wall) < repeat or (time.perf_counter() - start < budget and len(wall) < 200):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def paired(fa, fb, n: int) -> tuple[float, float, float]:
    """Time ``fa`` and ``fb`` alternately ``n`` times: (median of the per-pair ratios a/b,
    best a, best b). Pairing makes the ratio robust to load that changes over time."""
    fa(), fb()
    ta, tb = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        fa()
        t1 = time.perf_counter()
        fb()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return statistics.median(a / b for a, b in zip(ta, tb)), min(ta), min(tb)


def naive_perturb(flat: torch.Tensor, bounds: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    """Per-entry Python loop baseline (what a straightforward port of Algorithm 1 does)."""
    vals = flat.tolist()
    chosen = random.sample(range(len(bounds) - 1), k)
    for j in chosen:
        for i in range(int(bounds[j]), int(bounds[j + 1])):
            vals[i] += random.gauss(0.0, sigma)
    return torch.tensor(vals)


def local_step(model: torch.nn.Module, batch: int, g: torch.Generator):
    x = torch.rand(batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def fedavg_round_time(model: torch.nn.Module, m: int, repeat: int) -> float:
    """Best wall time of one undefended simulator round (m clients, paper's CIFAR-10 sizes)."""
    from fedshield.fl import FLConfig, Simulator

    g = make_generator(0)
    n_clients = m
    sizes = torch.randint(1, 21, (n_clients, 2), generator=g).sum(1)
    x = torch.rand(int(sizes.sum()), 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (len(x),), generator=g)
    parts = list(torch.arange(len(x)).split(sizes.tolist()))
    cfg = FLConfig(dataset="cifar10", model="lenet", n_clients=n_clients, per_round=m, rounds=repeat + 1,
                   local_epochs=2, local_lr=1e-2, seed=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = Simulator.from_partition(model, x, y, parts, None, cfg, None)
    times = [sim.round(evaluate=False)["round_time"] for _ in range(repeat + 1)]
    return min(times[1:])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--clients", type=int, default=10, help="clients per round m (default 10)")
    ap.add_argument("--root", type=int, default=100, help="root images for leakage_risk (default 100)")
    ap.add_argument("--convnet-root", type=int, default=20,
                    help="root images for ConvNet's leakage_risk (default 20; the time scales linearly)")
    ap.add_argument("--models", default="lenet3,lenet4,convnet", help="comma list of lenet3, lenet4, convnet")
    ap.add_argument("--skip-convnet-round", action="store_true", help="skip the (slow) ConvNet FedAvg round")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs visible, "
          f"load average {os.getloadavg()[0]:.1f}; n_slices=10, ratio=0.2, sigma=0.1, q=6, m={args.clients}")
    known = {"lenet3": ("LeNet-3 (authors')", lambda: LeNet(n_conv=3)),
             "lenet4": ("LeNet-4 (paper)", lambda: LeNet(n_conv=4)),
             "convnet": ("ConvNet-64", lambda: ConvNet(width=64))}
    models = [known[k.strip()] for k in args.models.split(",") if k.strip()]
    rows = []
    for name, make in models:
        torch.manual_seed(0)
        model = make()
        P = sum(param_sizes(model))
        g = make_generator(0)
        n_root = args.convnet_root if "ConvNet" in name else args.root
        root_x = torch.rand(n_root, 3, 32, 32, generator=g)
        root_y = torch.randint(0, 10, (n_root,), generator=g)
        reps_risk = 1 if "ConvNet" in name else max(1, args.repeat // 2)
        t_risk, c_risk = timeit(lambda: leakage_risk(model, root_x, root_y, probes=8, generator=g),
                                reps_risk)
        risk = leakage_risk(model, root_x, root_y, probes=8, generator=g)
        bounds = risk_slices(param_sizes(model), risk, 10)
        u1 = torch.randn(P, generator=g) * 1e-2
        um = torch.randn(args.clients, P, generator=g) * 1e-2
        one = lambda: perturb(clip(u1, 1.0), bounds, 0.2, 0.1, generator=g)    # noqa: E731
        many = lambda: perturb(clip(um, 1.0), bounds, 0.2, 0.1, generator=g)   # noqa: E731
        n_pairs = args.repeat * (4 if "LeNet" in name else 1)
        client = {}
        for b in (1, 32):
            step = local_step(model, b, g)
            r1, t_one, t_step = paired(one, step, n_pairs)
            rm, t_many, _ = paired(many, step, n_pairs)
            client[b] = (r1, rm / args.clients, t_step)
        t_many /= args.clients
        w = torch.full((args.clients,), 1.0 / args.clients)
        agg = w @ perturb(um, bounds, 0.2, 0.1, generator=g)[0]
        var = aggregate_noise_var(w, 0.2, 0.1, n_slices=10)
        t_comp, _ = timeit(lambda: compensate(agg, var, 6.0), max(1, args.repeat // 2))
        info = compensate(agg, var, 6.0, return_info=True)[1]
        t_naive = None
        if "LeNet" in name:
            t_naive, _ = timeit(lambda: naive_perturb(u1, bounds, n_perturbed(10, 0.2), 0.1), args.repeat)
        t_round = None
        if not ("ConvNet" in name and args.skip_convnet_round):
            t_round = fedavg_round_time(make(), args.clients, max(1, args.repeat // 2 if "ConvNet" in name else args.repeat))
        rows.append((name, P, t_one, t_many, client, t_naive, t_comp, info, t_round, n_root, t_risk, c_risk))

    print("\n1. client side: clip + perturb per update / one local SGD step (goal <= 0.1); ratios are\n"
          "   medians of interleaved pairs, times are best-of")
    print(f"{'model':20s} {'P':>9s} {'ours [P]':>9s} {'ours [m,P]/m':>13s} {'step b=1':>10s} {'step b=32':>10s} "
          f"{'[P]/b=1':>8s} {'[P]/b=32':>9s} {'[m,P]/b=1':>10s} {'[m,P]/b=32':>11s} {'naive loop':>11s} {'naive/ours':>10s}")
    for name, P, t1, tm, cl, tn, *_ in rows:
        print(f"{name:20s} {P:9,d} {t1 * 1e3:7.2f}ms {tm * 1e3:11.2f}ms {cl[1][2] * 1e3:8.2f}ms "
              f"{cl[32][2] * 1e3:8.2f}ms {cl[1][0]:8.3f} {cl[32][0]:9.3f} {cl[1][1]:10.3f} {cl[32][1]:11.3f} "
              + (f"{tn * 1e3:9.2f}ms {tn / t1:9.1f}x" if tn is not None else f"{'-':>11s} {'-':>10s}"))
    print("\n2. server side: compensate vs one undefended FedAvg round (m clients, 2 local epochs)")
    print(f"{'model':20s} {'v x w':>12s} {'dropped':>8s} {'compensate':>11s} {'round':>10s} {'ratio':>7s}")
    for name, P, *_, tc, info, tr, _, _, _ in rows:
        shape = f"{info['v']}x{info['w']}"
        print(f"{name:20s} {shape:>12s} {info['dropped']:8d} {tc * 1e3:9.1f}ms "
              + (f"{tr:9.3f}s {tc / tr:7.3f}" if tr else f"{'-':>10s} {'-':>7s}"))
    print("\n3. leakage_risk, 8 probes (goal <= 3 s for 100 root images, LeNet, 2 cores)")
    for name, *_, nr, tr_, cr in rows:
        print(f"{name:20s} {nr:4d} root images: wall {tr_:7.2f}s   cpu/threads {cr / args.threads:7.2f}s"
              f"   per 100 images {tr_ * 100 / nr:7.2f}s")


if __name__ == "__main__":
    main()
