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

``--map``: also the noise-aware MAP attacker (:mod:`fedshield.attacks.map`) on the same LeNet-4 and
victims, their updates with DP-G noise: victims/s and gradient evaluations/s, each as a ratio to
DLG's batched path.

``--learned``: also the learned-inversion attacker (:mod:`fedshield.attacks.learned`) on the same
LeNet-4 and victims, beside DLG's batched path: the updates of ``--learned-train`` public images
(the CIFAR-10 training split when found), the inverter's training (``--learned-epochs``,
``--learned-hidden``), the inversion of the victims. Printed: each part's time, victims/s with
the pairs and the training amortised over the ``--victims`` victims and of the inversion alone, their
ratios to DLG's batched victims/s (DLG at ``--dlg-steps``; ``/ DLG@500``: against DLG's rate scaled
to the campaign's 500 steps, ``dlg-steps / 500`` of the printed one -- a bound, since L-BFGS stops
early on a victim it has fitted: the campaign tables' ``seconds`` are DLG's measured cost), and the
number of victims after which the learned attacker's fixed cost is paid back against that bound.
"""
from __future__ import annotations

import argparse
import time

import torch

from fedshield.attacks import dlg_batch, inverting_gradients_batch, victim_gradients
from fedshield.attacks.learned import invert, train_inverter
from fedshield.attacks.map import map_attack_batch
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
    run_case.eval_rate = eb / tb   # DLG's batched gradient-matching evaluations per second
    return V / tb


def public_images(n: int):
    """``n`` public images for the learned attacker's training pairs (never a victim: the training
    split), random pixels without the data."""
    try:
        from fedshield.data import load_dataset

        x, y = load_dataset("cifar10", "train", progress=False)
        return x[:n], y[:n], "CIFAR-10 training images"
    except Exception:  # no data: random pixels (the cost does not depend on the content)
        g = torch.Generator().manual_seed(2)
        return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g), "random pixels"


def run_learned(model, x, y, args, dlg_rate: float) -> None:
    """The learned attacker's parts, timed, beside DLG's batched victims/s ``dlg_rate``."""
    xp, yp, src = public_images(args.learned_train)
    t0 = time.perf_counter()
    U = victim_gradients(model, xp, yp)
    t_pairs = time.perf_counter() - t0
    inv = train_inverter(U, xp, hidden=args.learned_hidden, epochs=args.learned_epochs,
                         generator=torch.Generator().manual_seed(0))
    G = victim_gradients(model, x, y)
    r = invert(inv, G)
    V = x.shape[0]
    fixed = t_pairs + inv.seconds
    amortised = V / (fixed + r.seconds)
    inversion = V / max(r.seconds, 1e-9)
    print(f"\nlearned inverter, LeNet-4: {args.learned_train} pairs ({src}), {args.learned_epochs} epochs, "
          f"hidden {args.learned_hidden}")
    print(f"  pairs {t_pairs:.1f} s, training {inv.seconds:.1f} s, inversion of {V} victims {r.seconds * 1e3:.1f} ms")
    print(f"  {'':<32} {'victims/s':>10} {'/ DLG':>9} {'/ DLG@500':>10}  (DLG@500: every step run, a bound)")
    dlg500 = dlg_rate * args.dlg_steps / 500
    print(f"  {'DLG LeNet-4 batched':<32} {dlg_rate:10.3f} {1.0:8.2f}x {'':>10}")
    print(f"  {'learned, training amortised':<32} {amortised:10.3f} {amortised / dlg_rate:8.2f}x "
          f"{amortised / dlg500:9.2f}x")
    print(f"  {'learned, inversion only':<32} {inversion:10.1f} {inversion / dlg_rate:8.0f}x {inversion / dlg500:9.0f}x")
    per = 1 / dlg500 - r.seconds / V
    print(f"  the fixed cost ({fixed:.0f} s) is paid back after {fixed / per:.1f} victims against DLG at 500 steps"
          if per > 0 else "  DLG is faster per victim than the inversion: no pay-back")


def run_map(model, x, y, args, dlg_rate: float, dlg_eval_rate: float) -> None:
    """The noise-aware MAP attacker (line-searched L-BFGS, ``--map-restarts`` starts) on the same victims'
    updates with DP-G noise of the paper's variance, beside DLG's batched rate."""
    G = victim_gradients(model, x, y)
    noisy = G + 0.1 * torch.randn(G.shape, generator=torch.Generator().manual_seed(2))
    t0 = time.perf_counter()
    r = map_attack_batch(model, noisy, x.shape[2:], label=y, noise_var=1e-2, tv=5.0, iterations=args.map_steps,
                         restarts=args.map_restarts, generator=torch.Generator().manual_seed(3))
    dt = time.perf_counter() - t0
    V, ev = x.shape[0], sum(r.evaluations)
    print(f"\nMAP attacker, LeNet-4: {args.map_steps} iterations x {args.map_restarts} starts, DP-G noise (variance 1e-2)")
    print(f"  {'':<32} {'victims/s':>10} {'vs DLG':>8} {'evals/s':>10} {'vs DLG':>8}")
    print(f"  {'MAP (batched, line search)':<32} {V / dt:10.3f} {V / dt / dlg_rate:7.2f}x {ev / dt:10.0f} "
          f"{ev / dt / dlg_eval_rate:7.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victims", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--dlg-steps", type=int, default=5)
    ap.add_argument("--ig-steps", type=int, default=20)
    ap.add_argument("--width", type=int, default=16, help="ConvNet width (paper: 64)")
    ap.add_argument("--learned", action="store_true", help="also the learned-inversion attacker, beside DLG")
    ap.add_argument("--learned-train", type=int, default=1000, help="its training pairs (public images)")
    ap.add_argument("--learned-epochs", type=int, default=5)
    ap.add_argument("--learned-hidden", type=int, default=256)
    ap.add_argument("--map", action="store_true", help="also the noise-aware MAP attacker, beside DLG")
    ap.add_argument("--map-steps", type=int, default=20, help="its L-BFGS iterations")
    ap.add_argument("--map-restarts", type=int, default=1)
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
    dlg_rate = run_case(f"DLG LeNet-4 ({args.dlg_steps} L-BFGS steps)", dlg_batch, lenet, x, y,
                        dict(iterations=args.dlg_steps))
    dlg_eval_rate = run_case.eval_rate
    torch.manual_seed(0)
    lenet3 = LeNet(n_conv=3, dlg_init=True).eval()
    run_case(f"DLG LeNet-3 ({args.dlg_steps} L-BFGS steps)", dlg_batch, lenet3, x, y,
             dict(iterations=args.dlg_steps))
    torch.manual_seed(0)
    conv = ConvNet(width=args.width).eval()
    run_case(f"IG ConvNet-{args.width} ({args.ig_steps} Adam steps)", inverting_gradients_batch, conv, x, y,
             dict(iterations=args.ig_steps))
    if args.learned:
        run_learned(lenet, x, y, args, dlg_rate)
    if args.map:
        run_map(lenet, x, y, args, dlg_rate, dlg_eval_rate)


if __name__ == "__main__":
    main()
