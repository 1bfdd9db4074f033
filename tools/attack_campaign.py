"""The paper-scale attack campaign: attack the victims of a plan that its committed table
does not hold yet (see ``fedshield.experiments.attack_campaign``), each finished chunk of victims
merged into ``results/tables/<profile>/<plan>.json`` at once; stops starting chunks after
``--budget-min``.

    OMP_NUM_THREADS=1 .venv/bin/python tools/attack_campaign.py attacks_dlg --datasets mnist --budget-min 55

One thread per worker (two workers on two cores); ``--rows`` keeps only those rows of the paper's
table (e.g. ``none Ours Ours-muted``), ``--tables`` only those tables' cells (e.g. ``III[B]``),
``--settings`` only the cells with these settings (e.g. ``"root bias 0.2"``), so that two workers can
take disjoint cells of one table.
"""
from __future__ import annotations

import argparse
import sys

import torch

from fedshield.experiments.attack_campaign import ATTACK_PLANS, attack_plan, attack_status, cell_status, run_attack_campaign
from fedshield.utils import book_threads


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("plan", choices=sorted(ATTACK_PLANS))
    p.add_argument("--datasets", nargs="+", default=None)
    p.add_argument("--rows", nargs="+", default=None, help="only these rows of the paper's table")
    p.add_argument("--tables", nargs="+", default=None, help="only these tables' cells")
    p.add_argument("--settings", nargs="+", default=None,
                   help="only the cells with these settings (e.g. 'root bias 0.2')")
    p.add_argument("--budget-min", type=float, default=55.0, help="start no chunk after this many minutes")
    p.add_argument("--chunk", type=int, default=None, help="victims attacked together (default: 8 DLG, 2 IG)")
    p.add_argument("--profile", default="default")
    p.add_argument("--status", action="store_true",
                   help="print how many victims are done, and the cells not complete, and exit")
    a = p.parse_args(argv)
    cells = attack_plan(a.plan, datasets=a.datasets)
    if a.rows:
        cells = [c for c in cells if c.row in a.rows]
    if a.tables:
        cells = [c for c in cells if c.table in a.tables]
    if a.settings:
        unknown = sorted(set(a.settings) - {c.setting for c in cells})
        if unknown:
            p.error(f"no cell of {a.plan} has the setting(s) {unknown}")
        cells = [c for c in cells if c.setting in a.settings]
    if not a.status:
        torch.set_num_threads(book_threads())
        run_attack_campaign(a.plan, cells, profile=a.profile, budget_s=60 * a.budget_min, chunk=a.chunk,
                            log=lambda s: print(s, flush=True))
    done, total = attack_status(a.plan, cells, a.profile)
    print(f"{a.plan}: {done}/{total} victims done")
    if a.status:
        for c, n in cell_status(a.plan, cells, a.profile):
            if n < c.config.images:
                print(f"  {c.config.dataset:8s} {c.table:8s} {c.row:28s} {c.setting or '-':22s} {n}/{c.config.images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
