"""The calibration search: undefended FedAvg at the paper's scale under each reading of its
local training (``fedshield.experiments.calibration.READINGS``), accuracy every 250 rounds against
the paper's (Table II[A]). Runs go through the result cache (resumable, a finished run is free);
the table is saved as ``results/tables/<profile>/calibration.json``.

    .venv/bin/python tools/calibrate.py --datasets mnist fmnist --rounds 2000
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

from fedshield.experiments.calibration import READINGS, run_calibration
from fedshield.report import load_table, save_table
from fedshield.utils import book_threads


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["mnist"], choices=["mnist", "fmnist", "cifar10"])
    p.add_argument("--readings", nargs="+", type=int, default=list(range(len(READINGS))),
                   help="indices into READINGS: " + "; ".join(f"{i}: {r.name}" for i, r in enumerate(READINGS)))
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="default", help="the table goes to results/tables/<profile>/")
    a = p.parse_args(argv)
    torch.set_num_threads(book_threads())
    tab = run_calibration(a.datasets, [READINGS[i] for i in a.readings], rounds=a.rounds, seed=a.seed)
    old = load_table("calibration", a.profile)
    if old is not None:   # keep the rows of other datasets / readings measured earlier
        keep = old[~(old.dataset.isin(a.datasets) & old.reading.isin(tab.reading.unique()))]
        tab = pd.concat([keep, tab], ignore_index=True)
    save_table("calibration", tab, a.profile)
    last = tab.sort_values("round").groupby(["dataset", "reading"], sort=False).last()
    print(last[["accuracy", "paper", "seconds_per_round"]].round(4).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
