"""Average round time (the paper's ART) of the defended FedAvg round, split into its parts.

The calibrated MNIST setting (``fedshield.experiments.campaign.paper_scale_config``: paper partition,
10 of 100 clients a round, LeNet, local batch 1, 2 epochs). One simulator per variant, all with the
same seed, so every variant samples the same clients (the same work) each round; the variants'
rounds are *interleaved* (round r of every variant, then round r + 1), so that a change in the
machine's load hits all of them alike. Printed per variant: mean round time, its ratio to the
undefended one (ART), and the defense's share split into the server's round start (leakage risk and
slicing), the clients' clipping and perturbation (all clients of the round) and the server's
compensation.

Variants: undefended; Ours refreshing the risk every round with 8 probes (the CLI's old default);
Ours refreshing every ``RISK_EVERY`` rounds; the book's schedule (the same with the doubling warm-up,
chosen from the measured drift of the slice boundaries, ``tools/slice_drift.py``) with 8 and with 4
probes. ``share`` is the time inside the defense's hooks over the undefended round.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_round_time.py --rounds 300
"""
from __future__ import annotations

import argparse

import pandas as pd

import torch

from fedshield.experiments import fl_defense
from fedshield.experiments.campaign import OURS_REFRESH, RISK_EVERY, paper_scale_config
from fedshield.fl import Simulator, build_federation, build_global_model
from fedshield.report import save_table
from fedshield.utils import book_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--save", action="store_true", help="also write results/tables/default/art_benchmark.json")
    a = ap.parse_args()
    torch.set_num_threads(book_threads())
    cfg = paper_scale_config(a.dataset, rounds=a.rounds + a.warmup)
    x, y, parts, _ = build_federation(cfg, progress=False)
    variants = {"undefended": None,
                "ours, risk every round, 8 probes": dict(risk_every=1, probes=8),
                f"ours, risk every {RISK_EVERY} rounds, 8 probes": dict(risk_every=RISK_EVERY, probes=8),
                "ours, book schedule, 8 probes": dict(OURS_REFRESH, probes=8),
                "ours, book schedule, 4 probes": dict(OURS_REFRESH, probes=4)}
    sims = {}
    for name, kw in variants.items():
        d = None if kw is None else fl_defense("ours", cfg, **kw)
        sims[name] = Simulator.from_partition(build_global_model(cfg), x, y, parts, None, cfg, d)
    recs = {n: [] for n in sims}
    for r in range(a.warmup + a.rounds):
        for n, s in sims.items():
            rec = s.round(evaluate=False)
            if r >= a.warmup:
                recs[n].append(rec)
    base = sum(r["round_time"] for r in recs["undefended"]) / a.rounds
    print(f"{a.dataset}, {a.rounds} interleaved rounds, {torch.get_num_threads()} thread(s)")
    print(f"{'variant':<36} {'s/round':>8} {'ART':>8} {'risk+slices':>12} {'clients':>9} {'compens.':>9} {'share':>7}")
    rows = []
    for n, rs in recs.items():
        t = sum(r["round_time"] for r in rs) / a.rounds
        parts = {k: 1e3 * sum(r["defense_time"][k] for r in rs) / a.rounds for k in ("round_start", "client", "server")}
        share = sum(parts.values()) / (1e3 * base)
        print(f"{n:<36} {t:8.4f} {100 * (t / base - 1):+7.2f}% {parts['round_start']:9.2f} ms "
              f"{parts['client']:6.2f} ms {parts['server']:6.2f} ms {100 * share:6.2f}%")
        rows.append(dict(dataset=a.dataset, variant=n, rounds=a.rounds, threads=torch.get_num_threads(),
                         seconds_per_round=t, art_percent=100 * (t / base - 1), round_start_ms=parts["round_start"],
                         client_ms=parts["client"], server_ms=parts["server"], defense_share_percent=100 * share))
    if a.save:
        save_table("art_benchmark", pd.DataFrame(rows), "default")


if __name__ == "__main__":
    main()
