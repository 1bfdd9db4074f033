"""Attack throughput: many victims at once (vectorised) against a plain per-image loop.

For each case, the same victims, starting points and hyper-parameters are attacked twice:

- *batched*: ``dlg_batch`` / ``inverting_gradients_batch`` with ``vectorized=True``: per-victim
  losses and gradients from ``torch.func.vmap``; for DLG the batched L-BFGS with per-victim history,
  for IG one Adam over the stacked victims (== independent Adams);
- *loop*: ``vectorized=False``: one ``torch.optim.LBFGS`` / ``torch.optim.Adam`` per image with
  plain autograd, one image after the other (the reference implementations' structure).

Printed: images/s of each, the speed-up, gradient-matching evaluations per second, and the largest
median (over victims) relative difference of the reconstructions (the two paths follow the same per-victim trajectory up
to floating-point rounding, which L-BFGS without line search and Adam's sign-like steps on
near-zero gradient entries amplify over many steps; tests check agreement over a few steps).

Cases: DLG on the paper's LeNet (CIFAR-10 shape, DLG init, label known, ``--dlg-steps`` L-BFGS
steps of up to 20 updates) and Inverting Gradients on the ConvNet (``--width``, ``--ig-steps``
Adam steps). Usage: ``python benchmarks/bench_attacks.py [--victims 8] [--threads 2]``.
Real CIFAR-10 test images are used when found (``$FEDSHIELD_DATA``), random pixels otherwise.
"""
from __future__ import annotations

import argparse
import time

import torch

from fedshield.attacks import dlg_batch, inverting_gradients_batch, victim_gradients
from fedshield.models import ConvNet, LeNet


def victims(n: int):
    try:
        from fedshield.data import load_dataset

        x, y = load_dataset("cifar10", "test", progress=False)
        return x[:n].unsqueeze(1), y[:n].unsqueeze(1), "CIFAR-10 test images"
    except Exception:  # no data: random pixels (the cost does not depend on the content)
        g = torch.Generator().manual_seed(0)
        return torch.rand(n, 1, 3, 32, 32, generator=g), torch.randint(0, 10, (n, 1), generator=g), "random pixels"


def run_case(name, attack, model, x, y, kwargs):
    G = victim_gradients(model, x, y)
    init = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    out = {}
    for vec in (True, False):
        t0 = time.perf_counter()
        r = attack(model, G, x.shape[2:], label=y, init=init, vectorized=vec, **kwargs)
        dt = time.perf_counter() - t0
        out[vec] = (dt, r, sum(r.evaluations))
    (tb, rb, eb), (tl, rl, el) = out[True], out[False]
    diff = ((rb.x - rl.x).flatten(1).norm(dim=1) / rl.x.flatten(1).norm(dim=1)).median().item()
    V = x.shape[0]
    print(f"{name:<34} {V / tb:9.3f} {V / tl:9.3f} {tl / tb:8.2f}x {eb / tb:10.0f} {el / tl:10.0f} {diff:10.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victims", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--dlg-steps", type=int, default=5)
    ap.add_argument("--ig-steps", type=int, default=20)
    ap.add_argument("--width", type=int, default=16, help="ConvNet width (paper: 64)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, src = victims(args.victims)
    print(f"{args.victims} victims ({src}), batch 1 each, {torch.get_num_threads()} thread(s)")
    print(f"{'case':<34} {'batched':>9} {'loop':>9} {'speed-up':>9} {'evals/s b':>10} {'evals/s l':>10} "
          f"{'med rel dx':>10}")
    print(f"{'':<34} {'images/s':>9} {'images/s':>9}")
    torch.manual_seed(0)
    lenet = LeNet(n_conv=4, dlg_init=True).eval()
    run_case(f"DLG LeNet-4 ({args.dlg_steps} L-BFGS steps)", dlg_batch, lenet, x, y,
             dict(iterations=args.dlg_steps))
    torch.manual_seed(0)
    lenet3 = LeNet(n_conv=3, dlg_init=True).eval()
    run_case(f"DLG LeNet-3 ({args.dlg_steps} L-BFGS steps)", dlg_batch, lenet3, x, y,
             dict(iterations=args.dlg_steps))
    torch.manual_seed(0)
    conv = ConvNet(width=args.width).eval()
    run_case(f"IG ConvNet-{args.width} ({args.ig_steps} Adam steps)", inverting_gradients_batch, conv, x, y,
             dict(iterations=args.ig_steps))


if __name__ == "__main__":
    main()
