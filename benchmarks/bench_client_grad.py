"""Per-client gradients of one local step, two ways, side by side (the simulator's batched path).

- ``vmap(grad)``: ``torch.vmap(torch.func.grad(loss))`` over the stacked client parameters;
- ``vmap forward + autograd`` (the simulator's): the forward pass vmapped over the clients, one
  autograd pass through the sum of the clients' losses (no client's loss depends on another's
  parameters, so it yields every client's gradient).

Printed: ms per step of each, the ratio, and the largest difference between the two gradients.
The paper's LeNet (MNIST shape, DLG init), ``--clients`` clients, local batch ``--batch``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_client_grad.py
"""
from __future__ import annotations

import argparse
import torch
import torch.nn.functional as F

from fedshield.models import build_model
from fedshield.utils import book_threads

from _timing import time_ms  # benchmarks/_timing.py (the script's folder is on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    torch.set_num_threads(book_threads())
    m = build_model("lenet", "mnist", dlg_init=True)
    g, B = a.clients, a.batch
    params = {n: p.detach().unsqueeze(0).expand(g, *p.shape).clone() for n, p in m.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(g, B, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (g, B), generator=gen)
    w = torch.ones(g, B)

    def loss(p, x, y, w):
        ce = F.cross_entropy(torch.func.functional_call(m, p, (x,)), y, reduction="none")
        return (ce * w).sum() / w.sum().clamp_min(1.0)

    vgrad = torch.vmap(torch.func.grad(loss))
    fwd = torch.vmap(lambda p, x: torch.func.functional_call(m, p, (x,)))

    def autograd_path():
        ps = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        ce = F.cross_entropy(fwd(ps, x).flatten(0, 1), y.flatten(), reduction="none").view(w.shape)
        total = ((ce * w).sum(1) / w.sum(1).clamp_min(1.0)).sum()
        return dict(zip(ps, torch.autograd.grad(total, list(ps.values()))))

    cases = {"vmap(grad)": lambda: vgrad(params, x, y, w), "vmap forward + autograd": autograd_path}
    times = {}
    for _ in range(2):  # two alternating passes, the second counted
        for name, f in cases.items():
            times[name] = time_ms(f, a.steps)
    ra, rb = cases["vmap(grad)"](), autograd_path()
    diff = max(float((ra[k] - rb[k]).abs().max()) for k in ra)
    print(f"{g} clients, batch {B}, {torch.get_num_threads()} thread(s)")
    for name, t in times.items():
        print(f"{name:<26} {t:7.3f} ms/step")
    print(f"ratio vmap(grad) / simulator's: {times['vmap(grad)'] / times['vmap forward + autograd']:.2f}x; "
          f"largest gradient difference {diff:.2e}")


if __name__ == "__main__":
    main()
