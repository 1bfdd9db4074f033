"""How close each compensation brings a perturbed aggregate to the clean one, on real FedAvg rounds
(Chapter 10): the paper's global Marchenko-Pastur projection (:func:`fedshield.defense.compensate`)
against the per-layer rules of :func:`fedshield.defense.compensate_layers`.

:func:`run_compensation_error` trains an undefended FedAvg run and, at the rounds asked for, records
the round's clean client updates (pseudo-gradients), perturbs them ``draws`` times with the paper's
defense on the equal-risk slices of the current model, and measures the relative error
``||a_hat - a|| / ||a||`` of the compensated aggregate ``a_hat`` against the clean aggregate ``a``.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch

from ..defense import (aggregate_noise_var, clip_and_perturb, compensate, compensate_layers, leakage_risk,
                       risk_slices)
from ..fl import FLConfig, Simulator, build_federation, build_global_model
from ..hooks import Defense
from ..params import param_sizes
from ..utils import make_generator
from .fedavg import fl_root_set
from .registry import defense_seed

__all__ = ["run_compensation_error", "METHODS"]

METHODS = ("perturbed", "paper (global, Q = 6)", "per-layer hard", "per-layer shrink")


class _Recorder(Defense):
    """Keeps the last round's clean updates and weights; changes nothing."""

    def client(self, updates, ctx):
        self.updates, self.weights = updates.detach().clone(), ctx.weights.detach().clone()
        return updates


def run_compensation_error(cfg: FLConfig, rounds: Sequence[int], *, draws: int = 20, ratio: float = 0.2,
                           sigma: float = 0.1, n_slices: int = 10, q: float = 6.0, probes: int = 8) -> pd.DataFrame:
    """One row per (round, draw, method): ``error`` (relative to the clean aggregate)."""
    rx, ry = fl_root_set(cfg, 100)
    x, y, parts, _ = build_federation(cfg, progress=False)
    model = build_global_model(cfg)
    rec = _Recorder()
    sim = Simulator.from_partition(model, x, y, parts, None, cfg, rec)
    shapes = [p.shape for p in model.parameters() if p.requires_grad]
    gen = make_generator(defense_seed(cfg.seed))
    rows, wanted = [], sorted(set(int(r) for r in rounds))
    for r in range(max(wanted) + 1):
        bounds = None
        if r in wanted:   # the slices of the model the round starts from
            bounds = risk_slices(param_sizes(model), leakage_risk(model, rx, ry, probes=probes,
                                                                  generator=make_generator(0)), n_slices)
        sim.round(evaluate=False)
        if bounds is None:
            continue
        U, w = rec.updates.double(), rec.weights.double()
        clean = w @ U
        var = aggregate_noise_var(w, ratio, sigma, n_slices=n_slices)
        for k in range(draws):
            noisy = w @ clip_and_perturb(U, bounds, ratio=ratio, sigma=sigma, generator=gen)[0]
            outs = {"perturbed": noisy, "paper (global, Q = 6)": compensate(noisy, var, q),
                    "per-layer hard": compensate_layers(noisy, shapes, var, rule="hard"),
                    "per-layer shrink": compensate_layers(noisy, shapes, var, rule="shrink")}
            for name, a in outs.items():
                rows.append(dict(round=r, draw=k, method=name,
                                 error=float((a - clean).norm() / clean.norm())))
    return pd.DataFrame(rows)
