"""The empirical audit of DP-G's clip-and-noise against its Gaussian-DP accounting.

For each ``mu = 2 C / sigma`` of ``--mus`` and each trial count of ``--trials``, audits the Gaussian
mechanism on the worst-case pair of updates clipped to ``C`` (``fedshield.audit.audit_gaussian``;
``C`` is Table III[E]'s clipping bound of the MNIST LeNet unless ``--clip`` is given) and writes the
table ``dp_audit`` (the lower bound on epsilon, the computed epsilon, their ratio) to
``results/tables/<profile>/dp_audit.json``.

    OMP_NUM_THREADS=1 .venv/bin/python tools/dp_audit.py
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

from fedshield.audit import audit_gaussian
from fedshield.experiments.campaign import clip_bound
from fedshield.report import save_table
from fedshield.utils import make_generator

COLUMNS = ["mu", "sigma", "C", "delta", "trials", "eps_lower_bound", "eps_computed", "ratio"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mus", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0])
    p.add_argument("--trials", type=int, nargs="+", default=[10 ** 5, 10 ** 6, 10 ** 7])
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--clip", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="default")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    c = a.clip if a.clip is not None else clip_bound("mnist")
    rows = []
    for i, mu in enumerate(a.mus):
        for j, n in enumerate(a.trials):
            g = make_generator(a.seed * 1000 + 10 * i + j)
            rows.append(audit_gaussian(c, 2 * c / mu, a.delta, n, generator=g))
    df = pd.DataFrame(rows)[COLUMNS]
    save_table("dp_audit", df, a.profile)
    print(df.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
