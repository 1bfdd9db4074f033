"""How fast the equal-risk slice boundaries move during training (the refresh schedule of the
paper's defense, chosen from it for the paper-scale campaign).

:func:`run_slice_drift` trains an undefended FedAvg run and every ``every`` rounds computes the
leakage risk on the FedAvg root set and the equal-risk slices, with the defense's probe seed and with
a second, independent one. Rows:

- ``kind="drift"``: the fraction ``changed`` of the ``P`` entries whose slice differs between the
  slices at ``round`` and at ``round + lag``: what a refresh period of ``lag`` rounds leaves stale;
- ``kind="probe_noise"`` (``lag=0``): the same fraction between the two probe seeds on one model:
  the estimator's own noise; ``refresh_seconds`` is the wall time of one risk + slicing refresh.
"""
from __future__ import annotations

import time
from typing import Sequence

import pandas as pd
import torch

from ..defense import leakage_risk, risk_slices
from ..fl import FLConfig, Simulator, build_federation, build_global_model
from ..params import param_sizes, slice_ids
from ..utils import make_generator
from .fedavg import fl_root_set
from .registry import defense_seed

__all__ = ["changed_fraction", "run_slice_drift"]


def changed_fraction(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of the entries whose slice id differs between boundaries ``a`` and ``b``."""
    return float((slice_ids(a) != slice_ids(b)).double().mean())


def run_slice_drift(cfg: FLConfig, *, every: int = 25, probes: Sequence[int] = (8, 2), n_slices: int = 10,
                    root_size: int = 100, max_lag: int = 400, progress=None) -> pd.DataFrame:
    """The drift table of the undefended run ``cfg`` (see the module docstring); ``progress(r)`` is
    called after each snapshot."""
    rx, ry = fl_root_set(cfg, root_size)
    x, y, parts, _ = build_federation(cfg, progress=False)
    model = build_global_model(cfg)
    sim = Simulator.from_partition(model, x, y, parts, None, cfg)
    sizes = param_sizes(model)
    seeds = (defense_seed(cfg.seed), defense_seed(cfg.seed) + 6768)
    snaps = []

    def snapshot(r: int) -> None:
        rec = {"round": r}
        for k in probes:
            for tag, seed in zip("ab", seeds):
                t = time.perf_counter()
                rec[(k, tag)] = risk_slices(sizes, leakage_risk(model, rx, ry, probes=k, generator=make_generator(seed)),
                                            n_slices)
                rec[(k, "time")] = time.perf_counter() - t
        snaps.append(rec)
        if progress is not None:
            progress(r)

    snapshot(0)
    for r in range(1, cfg.rounds + 1):
        sim.round(evaluate=False)
        if r % every == 0:
            snapshot(r)
    rows = []
    for i, s in enumerate(snaps):
        for k in probes:
            rows.append(dict(kind="probe_noise", probes=k, round=s["round"], lag=0,
                             changed=changed_fraction(s[(k, "a")], s[(k, "b")]), refresh_seconds=s[(k, "time")]))
            for later in snaps[i + 1:]:
                lag = later["round"] - s["round"]
                if lag > max_lag:
                    break
                rows.append(dict(kind="drift", probes=k, round=s["round"], lag=lag,
                                 changed=changed_fraction(s[(k, "a")], later[(k, "a")]), refresh_seconds=None))
    return pd.DataFrame(rows)
