"""Cost and fidelity of PLD's (Soteria's) feature score: exact Jacobian rows vs Gaussian probes.

Soteria scores feature ``j`` of the FC layer's input ``r = model.features(x)`` by
``||d r_j / d x||_2 / |r_j|``. Exactly, that is one vector-Jacobian product per feature and image
(``feature_scores(probes=None)``); the estimate uses ``K`` forward-mode Jacobian-vector products
with Gaussian probes (``feature_scores(probes=K)``). Printed side by side in one run, per model:
wall time of each on the same images, the ratio exact / probe, and how much of the exact pruned
set (the fraction ``p`` of features with the smallest score, per image) the estimate prunes too.

Usage: ``python benchmarks/bench_pld.py [--threads 2] [--images 8] [--probes 16,32,64] [--p 0.8]``
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from fedshield.baselines import feature_scores
from fedshield.models import ConvNet, LeNet


def best_of(fn, repeat: int) -> tuple[float, torch.Tensor]:
    out, best = None, float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def overlap(exact: torch.Tensor, est: torch.Tensor, p: float) -> float:
    k = int(p * exact.shape[1])
    a = torch.zeros_like(exact, dtype=torch.bool).scatter_(1, exact.topk(k, dim=1, largest=False).indices, True)
    b = torch.zeros_like(est, dtype=torch.bool).scatter_(1, est.topk(k, dim=1, largest=False).indices, True)
    return ((a & b).sum(1).float() / k).mean().item()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--probes", default="16,32,64")
    ap.add_argument("--p", type=float, default=0.8, help="pruned fraction (paper vs GIA: 0.8)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}; "
          f"{args.images} images, pruned fraction p={args.p}")
    models = [("ConvNet-16, 1x28x28", lambda: ConvNet(in_channels=1, image_size=28, width=16), (1, 28, 28), 0.1),
              ("ConvNet-16, 3x32x32", lambda: ConvNet(width=16), (3, 32, 32), 0.1),
              ("LeNet-4, 3x32x32", lambda: LeNet(dlg_init=True), (3, 32, 32), 1e-10)]
    print(f"{'model':22s} {'F':>5s} {'exact':>9s} {'K':>4s} {'probe':>9s} {'exact/probe':>12s} {'pruned overlap':>15s}")
    for name, make, shape, eps in models:
        torch.manual_seed(0)
        m = make().eval()
        x = torch.rand(args.images, *shape, generator=torch.Generator().manual_seed(1))
        t_exact, exact = best_of(lambda: feature_scores(m, x, eps=eps), args.repeat)
        for K in (int(k) for k in args.probes.split(",")):
            t_probe, est = best_of(lambda: feature_scores(m, x, eps=eps, probes=K,
                                                          generator=torch.Generator().manual_seed(2)), args.repeat)
            print(f"{name:22s} {exact.shape[1]:5d} {t_exact:8.2f}s {K:4d} {t_probe:8.2f}s {t_exact / t_probe:11.1f}x "
                  f"{overlap(exact, est, args.p):15.3f}")


if __name__ == "__main__":
    main()
