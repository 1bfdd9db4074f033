"""The paper-scale FedAvg campaign: run the cells of a plan that its committed table does
not hold yet (see ``fedshield.experiments.campaign``), each finished row merged into
``results/tables/<profile>/<plan>.json`` at once; stops starting cells after ``--budget-min``.

    OMP_NUM_THREADS=1 .venv/bin/python tools/campaign.py table2a_acc --seeds 0 1 2 --budget-min 55

One thread per worker: a LeNet round at batch size 1 is overhead-bound (a local step is no faster
on two threads than on one), so two one-thread workers on two cores do twice the work.
"""
from __future__ import annotations

import argparse
import sys

import torch

from fedshield.experiments.campaign import PLANS, campaign_status, plan, run_campaign
from fedshield.utils import book_threads


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("plan", choices=sorted(PLANS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--datasets", nargs="+", default=None, help="only these datasets' cells")
    p.add_argument("--defenses", nargs="+", default=None, help="only these defenses' cells")
    p.add_argument("--rows", nargs="+", default=None, help="only these rows (a cell's name in its table)")
    p.add_argument("--budget-min", type=float, default=55.0, help="start no cell after this many minutes")
    p.add_argument("--profile", default="default")
    p.add_argument("--status", action="store_true", help="print how many cells are done and exit")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    cells = plan(a.plan, a.seeds)
    if a.datasets:
        cells = [c for c in cells if c.dataset in a.datasets]
    if a.defenses:
        cells = [c for c in cells if c.defense in a.defenses]
    if a.rows:
        cells = [c for c in cells if (c.row or c.defense) in a.rows]
    if a.status:
        done, total = campaign_status(a.plan, cells, a.profile)
        print(f"{a.plan}: {done}/{total} cells done")
        return 0
    torch.set_num_threads(book_threads())
    run_campaign(a.plan, cells, profile=a.profile, budget_s=60 * a.budget_min, progress=not a.no_progress,
                 log=lambda s: print(s, flush=True))
    done, total = campaign_status(a.plan, cells, a.profile)
    print(f"{a.plan}: {done}/{total} cells done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
