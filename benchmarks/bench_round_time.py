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
Ours at the book's setting (refresh every ``RISK_EVERY`` rounds, chosen from the measured drift of
the slice boundaries, ``tools/slice_drift.py``), with and without the doubling warm-up.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_round_time.py --rounds 300
"""
from __future__ import annotations

import argparse

import torch

from fedshield.experiments import fl_defense
from fedshield.experiments.campaign import OURS_REFRESH, RISK_EVERY, paper_scale_config
from fedshield.fl import Simulator, build_federation, build_global_model
from fedshield.utils import book_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(book_threads())
    cfg = paper_scale_config(a.dataset, rounds=a.rounds + a.warmup)
    x, y, parts, _ = build_federation(cfg, progress=False)
    variants = {"undefended": None,
                "ours, risk every round, 8 probes": dict(risk_every=1, probes=8),
                f"ours, risk every {RISK_EVERY} rounds, 8 probes": dict(risk_every=RISK_EVERY, probes=8),
                f"ours, book schedule, 8 probes": dict(OURS_REFRESH, probes=8)}
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
    print(f"{'variant':<36} {'s/round':>8} {'ART':>8} {'risk+slices':>12} {'clients':>9} {'compens.':>9}")
    for n, rs in recs.items():
        t = sum(r["round_time"] for r in rs) / a.rounds
        parts = {k: 1e3 * sum(r["defense_time"][k] for r in rs) / a.rounds for k in ("round_start", "client", "server")}
        print(f"{n:<36} {t:8.4f} {100 * (t / base - 1):+7.2f}% {parts['round_start']:9.2f} ms "
              f"{parts['client']:6.2f} ms {parts['server']:6.2f} ms")


if __name__ == "__main__":
    main()
