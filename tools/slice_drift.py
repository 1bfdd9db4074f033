"""How fast do the equal-risk slice boundaries move during training? (the refresh schedule, ART)

Trains the calibrated undefended run (``fedshield.experiments.campaign.paper_scale_config``) and
every ``--every`` rounds computes the equal-risk slices twice (two probe seeds):
``fedshield.experiments.drift.run_slice_drift``. The table goes to
``results/tables/<profile>/slice_drift_<dataset>.json``.

    OMP_NUM_THREADS=1 .venv/bin/python tools/slice_drift.py --rounds 2000 --every 25
"""
from __future__ import annotations

import argparse
import sys

import torch

from fedshield.experiments.campaign import paper_scale_config
from fedshield.experiments.drift import run_slice_drift
from fedshield.report import save_table
from fedshield.utils import book_threads


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--probes", type=int, nargs="+", default=[8, 2])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="default")
    a = p.parse_args(argv)
    torch.set_num_threads(book_threads())
    cfg = paper_scale_config(a.dataset, seed=a.seed, rounds=a.rounds, eval_every=a.rounds)
    tab = run_slice_drift(cfg, every=a.every, probes=a.probes,
                          progress=lambda r: r % (10 * a.every) == 0 and print(f"round {r}", flush=True))
    save_table(f"slice_drift_{a.dataset}", tab, a.profile)
    late = tab[tab["round"] >= 100]
    print(late.groupby(["kind", "probes", "lag"]).changed.median().unstack(0).head(20).to_string())
    print("refresh seconds:", tab[tab.kind == "probe_noise"].groupby("probes").refresh_seconds.median().to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
