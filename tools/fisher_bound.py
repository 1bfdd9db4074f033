"""The Cramér-Rao bound on reconstructing an MNIST image from DP-G-noised updates (fisher_bound).

For the DLG LeNet on MNIST and the first ``--images`` MNIST test images, the Fisher information of
the image in ``k`` noised releases of its loss gradient (``fedshield.bounds``) and the bound on the
per-pixel MSE (and PSNR) of any unbiased attacker, per noise variance ``--sigma2`` and ``k``:

- ``fixed``: ``k`` releases at one model, the DLG LeNet with DLG's initialisation (seed ``--seed``);
- ``run``: ``k`` releases at the global models of the calibrated undefended FedAvg run
  (``Cell("mnist", "none", seed)``, ``--run-rounds`` rounds, from the result cache), at rounds
  spread evenly over it (``fedshield.bounds.spread_rounds``).

The Jacobians are computed in ``--dtype`` (float32 by default, for speed) with the null cutoff
``--rtol`` to match. ``--checkpoint FILE`` keeps the run's partial sums so that an interrupted run
goes on where it stopped (delete it when changing the images, ``--ks`` or ``--dtype``). The table goes to ``results/tables/<profile>/fisher_bound.json``.

    OMP_NUM_THREADS=1 .venv/bin/python tools/fisher_bound.py --checkpoint /tmp/fisher_sums.pt
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import pandas as pd
import torch

from fedshield.bounds import bound_rows, gram, information_sums, spread_rounds, update_jacobian
from fedshield.data import load_dataset
from fedshield.experiments.campaign import Cell
from fedshield.experiments.fedavg import global_model_states
from fedshield.fl import build_global_model
from fedshield.models import build_model, dlg_init_
from fedshield.report import save_table
from fedshield.utils import make_generator

COLUMNS = ["dataset", "source", "image", "sigma2", "k", "mse_bound", "psnr_bound", "n_null"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--sigma2", type=float, nargs="+", default=[1e-2, 1e-3, 1e-4])
    p.add_argument("--ks", type=int, nargs="+", default=[1, 10, 40, 100, 200])
    p.add_argument("--sources", nargs="+", default=["fixed", "run"], choices=["fixed", "run"])
    p.add_argument("--run-rounds", type=int, default=2000)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="default")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    dtype = getattr(torch, a.dtype)
    x, y = load_dataset("mnist", "test", progress=False)
    x, y = x[:a.images], y[:a.images]
    rows = []
    if "fixed" in a.sources:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(a.seed)
            model = build_model("lenet", "mnist")
        dlg_init_(model, make_generator(a.seed))
        for i in range(len(x)):
            g = gram(update_jacobian(model.eval(), x[i], y[i], dtype=dtype, chunk_size=32))
            rows += [{"dataset": "mnist", "source": "fixed", "image": i, **r}
                     for r in bound_rows(g, a.sigma2, a.ks, rtol=a.rtol)]
    if "run" in a.sources:
        cell = Cell("mnist", "none", a.seed, rounds=a.run_rounds)
        cfg = cell.config()
        rounds = sorted(set().union(*(spread_rounds(cfg.rounds, k) for k in a.ks)))
        states = global_model_states(cfg, cell.defense, rounds, progress=True, **dict(cell.options))
        model = build_global_model(cfg)

        def model_at(r):
            model.load_state_dict(states[r])
            return model.eval()

        state = None
        if a.checkpoint and os.path.exists(a.checkpoint):
            state = torch.load(a.checkpoint, weights_only=True)
            state["sums"] = {tuple(int(v) for v in key.split(",")): s for key, s in state["sums"].items()}
        t0 = time.time()

        def save(st):
            n = len(st["done"])
            if n % 10 == 0 or n == len(rounds):
                print(f"{n}/{len(rounds)} rounds, {time.time() - t0:.0f} s", flush=True)
                if a.checkpoint:
                    torch.save({"done": st["done"], "sums": {f"{i},{k}": s for (i, k), s in st["sums"].items()}},
                               a.checkpoint + ".tmp")
                    os.replace(a.checkpoint + ".tmp", a.checkpoint)

        state = information_sums(model_at, x, y, a.ks, cfg.rounds, state=state, on_round=save, dtype=dtype)
        for i in range(len(x)):
            for k in a.ks:   # the sum over k's rounds is the information of k releases: one "release" of it
                for r in bound_rows(state["sums"][(i, k)], a.sigma2, [1], rtol=a.rtol):
                    rows.append({"dataset": "mnist", "source": "run", "image": i, **r, "k": k})
    df = pd.DataFrame(rows)[COLUMNS]
    save_table("fisher_bound", df, a.profile)
    print(df.groupby(["source", "sigma2", "k"]).psnr_bound.median().unstack("k").to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
