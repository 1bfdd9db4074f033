"""What only a GPU affords: the per-round CPU cost of the `paper` profile's ConvNet
FedAvg (Table II[B]: width 64, the paper's partition and local training) and the 2000-round estimate.

Runs ``--rounds`` rounds per dataset (undefended and with Ours) from chapter 7's paper profile and
saves ``results/tables/default/paper_profile_cost.json``.

    .venv/bin/python tools/paper_profile_cost.py --datasets mnist cifar10 --rounds 3
"""
from __future__ import annotations

import argparse
import sys
import warnings

import pandas as pd
import torch

from fedshield.experiments import run_fl
from fedshield.fl import FLConfig
from fedshield.profiles import get_profile
from fedshield.report import save_table
from fedshield.utils import book_threads


def paper_convnet_config(dataset: str, rounds: int) -> FLConfig:
    """Chapter 7's `paper` profile FedAvg config of Table II[B] (ConvNet), with ``rounds`` rounds."""
    P = get_profile("main_results", "paper")
    return FLConfig(dataset=dataset, model="convnet", rounds=rounds, n_clients=P.fl_clients[dataset],
                    per_round=P.fl_per_round[dataset], local_epochs=2, local_lr=P.fl_lr_ig,
                    local_batch_size=P.fl_batch_size_ig, seed=0, eval_every=rounds, test_samples=1000,
                    model_kwargs=(("width", P.ig_width),))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--defenses", nargs="+", default=["none", "ours"])
    a = p.parse_args(argv)
    torch.set_num_threads(book_threads())
    warnings.filterwarnings("ignore", message="the model has BatchNorm layers", category=UserWarning)
    rows = []
    for ds in a.datasets:
        cfg = paper_convnet_config(ds, a.rounds)
        for d in a.defenses:
            opts = {"risk_every": 200, "risk_warmup": True} if d == "ours" else {}
            res = run_fl(cfg, d, attack="ig", progress=False, **opts)
            t = res["mean_round_time"]
            rows.append(dict(dataset=ds, defense=d, rounds=a.rounds, clients=cfg.n_clients, per_round=cfg.per_round,
                             width=dict(cfg.model_kwargs)["width"], threads=torch.get_num_threads(),
                             seconds_per_round=t, hours_for_2000=t * 2000 / 3600))
            print(rows[-1], flush=True)
    save_table("paper_profile_cost", pd.DataFrame(rows), "default")
    return 0


if __name__ == "__main__":
    sys.exit(main())
