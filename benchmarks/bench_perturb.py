"""The client hook's two hot spots, each against the implementation it replaced, side by side.

- ``perturb`` on a round ``[m, P]``: noise drawn only for the chosen slices and added slice by slice
  (fedshield's) against the former full ``[m, P]`` noise draw masked by an entry mask (written out
  here as the reference);
- ``check_finite``: one reduction (fedshield's) against ``torch.isfinite(x).all()``.

MNIST LeNet size (P = 17038), 10 clients, ratio 0.2, 10 slices. Usage:
``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_perturb.py``.
"""
from __future__ import annotations

import torch

from fedshield.defense import _uniform_subsets, perturb, size_slices
from fedshield.params import slice_ids
from fedshield.utils import book_threads, check_finite, make_generator

from _timing import time_ms  # benchmarks/_timing.py (the script's folder is on sys.path)


def masked_reference(flat, bounds, k, sigma, gen):
    ids = _uniform_subsets(flat.shape[0], len(bounds) - 1, k, gen)
    smask = torch.zeros(flat.shape[0], len(bounds) - 1, dtype=torch.bool).scatter_(1, ids, True)
    emask = smask[:, slice_ids(bounds)]
    noise = torch.randn(flat.shape, generator=gen).mul_(sigma)
    return torch.where(emask, flat + noise, flat), ids


def timed(f, n=300):
    return time_ms(f, n)


def main() -> None:
    torch.set_num_threads(book_threads())
    u = torch.randn(10, 17038, generator=make_generator(0)) * 0.05
    b = size_slices([312, 3612, 3612, 3612, 5890], 10)
    g = make_generator(1)
    rows = {"perturb, chosen slices only": lambda: perturb(u, b, 0.2, 0.1, generator=g),
            "perturb, masked full draw (former)": lambda: masked_reference(u, b, 2, 0.1, g),
            "check_finite, one reduction": lambda: check_finite(u, "u"),
            "isfinite(x).all() (former)": lambda: bool(torch.isfinite(u).all())}
    t = {k: timed(f) for k, f in rows.items()}
    print(f"{torch.get_num_threads()} thread(s), [10, 17038] round of updates")
    for k, v in t.items():
        print(f"{k:<36} {v:8.3f} ms")
    print(f"perturb speed-up: {t['perturb, masked full draw (former)'] / t['perturb, chosen slices only']:.2f}x; "
          f"check_finite speed-up: {t['isfinite(x).all() (former)'] / t['check_finite, one reduction']:.2f}x")


if __name__ == "__main__":
    main()
