"""The defended round's time, split into its parts, with the variants' rounds interleaved (ART).

:func:`interleaved_round_times` builds one simulator per variant, all with the same seed, so every
variant samples the same clients (the same work) each round, and runs round r of every variant
before round r + 1 of any, so that a change in the machine's load hits all variants alike. Per
variant: mean round time, its ratio to the undefended variant's (``art_percent``), and the time
inside the defense's hooks split into the server's round start (leakage risk and slicing), the
clients' clipping and perturbation (all clients of the round) and the server's compensation, with
their sum over the undefended round (``defense_share_percent``).
"""
from __future__ import annotations

from typing import Mapping, Optional

import pandas as pd
import torch

from ..errors import FedshieldError
from ..fl import FLConfig, Simulator, build_federation, build_global_model
from .fedavg import fl_defense

__all__ = ["interleaved_round_times"]


def interleaved_round_times(cfg: FLConfig, variants: Mapping[str, Optional[dict]], *, rounds: int,
                            warmup: int = 5) -> pd.DataFrame:
    """One row per variant; ``variants`` maps a name to Ours' options (``None``: undefended, the
    reference; exactly one variant must be undefended)."""
    refs = [n for n, kw in variants.items() if kw is None]
    if len(refs) != 1:
        raise FedshieldError("exactly one variant must be undefended (None)")
    cfg = cfg.replace(rounds=rounds + warmup)
    x, y, parts, _ = build_federation(cfg, progress=False)
    sims = {n: Simulator.from_partition(build_global_model(cfg), x, y, parts, None, cfg,
                                        None if kw is None else fl_defense("ours", cfg, **kw))
            for n, kw in variants.items()}
    recs = {n: [] for n in sims}
    for r in range(warmup + rounds):
        for n, s in sims.items():
            rec = s.round(evaluate=False)
            if r >= warmup:
                recs[n].append(rec)
    base = sum(r["round_time"] for r in recs[refs[0]]) / rounds
    rows = []
    for n, rs in recs.items():
        t = sum(r["round_time"] for r in rs) / rounds
        parts_ms = {k: 1e3 * sum(r["defense_time"][k] for r in rs) / rounds for k in ("round_start", "client", "server")}
        rows.append(dict(dataset=cfg.dataset, variant=n, rounds=rounds, threads=torch.get_num_threads(),
                         seconds_per_round=t, art_percent=100 * (t / base - 1), round_start_ms=parts_ms["round_start"],
                         client_ms=parts_ms["client"], server_ms=parts_ms["server"],
                         defense_share_percent=100 * sum(parts_ms.values()) / (1e3 * base)))
    return pd.DataFrame(rows)
