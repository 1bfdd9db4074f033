"""How fast do the equal-risk slice boundaries move during training? (issue 12, ART)

Trains the calibrated undefended MNIST run (``fedshield.experiments.campaign.paper_scale_config``)
and every ``--every`` rounds computes the leakage risk on the FedAvg root set and the equal-risk
slices, twice: with the defense's probe seed and with a second, independent one. It records

- ``drift``: the fraction of the P entries whose slice differs between the slices at round r and
  at round r + lag (lag = every, 2 every, ...): what a refresh period of ``lag`` rounds leaves stale;
- ``probe_noise``: the same fraction between the two probe seeds at one round: the estimator's own
  noise, below which refreshing more often changes nothing but the noise;
- the wall time of one risk + slicing refresh.

    OMP_NUM_THREADS=1 .venv/bin/python tools/slice_drift.py --rounds 2000 --every 25

The table goes to ``results/tables/<profile>/slice_drift.json``.
"""
from __future__ import annotations

import argparse
import sys
import time

import pandas as pd
import torch

from fedshield.defense import leakage_risk, risk_slices
from fedshield.experiments import fl_root_set
from fedshield.experiments.campaign import paper_scale_config
from fedshield.fl import Simulator, build_federation, build_global_model
from fedshield.params import param_sizes, slice_ids
from fedshield.report import save_table
from fedshield.utils import book_threads, make_generator


def changed_fraction(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of entries whose slice id differs between boundaries ``a`` and ``b``."""
    return float((slice_ids(a) != slice_ids(b)).double().mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--probes", type=int, nargs="+", default=[8, 2])
    p.add_argument("--n-slices", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="default")
    a = p.parse_args(argv)
    torch.set_num_threads(book_threads())
    cfg = paper_scale_config(a.dataset, seed=a.seed, rounds=a.rounds, eval_every=a.rounds)
    rx, ry = fl_root_set(cfg, 100)
    x, y, parts, test = build_federation(cfg, progress=False)
    model = build_global_model(cfg)
    sim = Simulator.from_partition(model, x, y, parts, test, cfg)
    sizes = param_sizes(model)
    snaps, rows = [], []

    def snapshot(r: int) -> None:
        rec = {"round": r}
        for k in a.probes:
            for tag, seed in (("a", a.seed + 1009), ("b", a.seed + 7777)):
                t = time.perf_counter()
                risk = leakage_risk(model, rx, ry, probes=k, generator=make_generator(seed))
                bounds = risk_slices(sizes, risk, a.n_slices)
                rec[(k, tag)] = bounds
                rec[(k, "time")] = time.perf_counter() - t
        snaps.append(rec)

    snapshot(0)
    for r in range(1, a.rounds + 1):
        sim.round(evaluate=False)
        if r % a.every == 0:
            snapshot(r)
            if r % (10 * a.every) == 0:
                print(f"round {r}", flush=True)
    for i, s in enumerate(snaps):
        for k in a.probes:
            rows.append(dict(kind="probe_noise", probes=k, round=s["round"], lag=0,
                             changed=changed_fraction(s[(k, "a")], s[(k, "b")]), refresh_seconds=s[(k, "time")]))
            for j in range(i + 1, len(snaps)):
                lag = snaps[j]["round"] - s["round"]
                if lag > 400:
                    break
                rows.append(dict(kind="drift", probes=k, round=s["round"], lag=lag,
                                 changed=changed_fraction(s[(k, "a")], snaps[j][(k, "a")]), refresh_seconds=None))
    tab = pd.DataFrame(rows)
    save_table(f"slice_drift_{a.dataset}", tab, a.profile)
    summ = tab[tab["round"] >= 100].groupby(["kind", "probes", "lag"]).changed.median().unstack(0)
    print(summ.head(20).to_string())
    print("refresh seconds:", tab[tab.kind == "probe_noise"].groupby("probes").refresh_seconds.median().to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
