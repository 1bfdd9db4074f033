"""Beyond the paper (Chapter 10): the aggregate error of each compensation on real rounds of the calibrated MNIST run
(``fedshield.experiments.compensation_error``); the table goes to
``results/tables/<profile>/compensation_rules_error.json``.

    OMP_NUM_THREADS=1 .venv/bin/python tools/compensation_error.py --rounds 0 100 500 1000 1999 --draws 20
"""
from __future__ import annotations

import argparse
import sys

import torch

from fedshield.experiments.campaign import paper_scale_config
from fedshield.experiments.compensation_error import run_compensation_error
from fedshield.report import save_table
from fedshield.utils import book_threads


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--rounds", type=int, nargs="+", default=[0, 100, 500, 1000, 1999])
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--profile", default="default")
    a = p.parse_args(argv)
    torch.set_num_threads(book_threads())
    cfg = paper_scale_config(a.dataset, rounds=max(a.rounds) + 1)
    tab = run_compensation_error(cfg, a.rounds, draws=a.draws)
    save_table("compensation_rules_error", tab, a.profile)
    print(tab.groupby(["round", "method"], sort=False).error.mean().unstack().round(4).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
