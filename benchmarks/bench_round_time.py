"""Average round time (the paper's ART) of the defended FedAvg round, split into its parts.

The calibrated MNIST setting (``fedshield.experiments.campaign.paper_scale_config``: paper partition,
10 of 100 clients a round, LeNet, local batch 1, 2 epochs), the variants' rounds interleaved in one
process (``fedshield.experiments.round_time.interleaved_round_times``). Printed per variant: mean
round time, its ratio to the undefended one (ART), and the defense's time split into the server's
round start (leakage risk and slicing), the clients' clipping and perturbation and the server's
compensation; ``share`` is their sum over the undefended round.

Variants: undefended; Ours refreshing the risk every round with 8 probes (the CLI's old default);
Ours refreshing every ``RISK_EVERY`` rounds; the book's schedule (the same with the doubling warm-up,
chosen from the measured drift of the slice boundaries, ``tools/slice_drift.py``) with 8 and 4 probes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_round_time.py --rounds 400 [--save]
"""
from __future__ import annotations

import argparse

import torch

from fedshield.experiments.campaign import OURS_REFRESH, RISK_EVERY, paper_scale_config
from fedshield.experiments.round_time import interleaved_round_times
from fedshield.report import save_table
from fedshield.utils import book_threads

VARIANTS = {"undefended": None,
            "ours, risk every round, 8 probes": dict(risk_every=1, probes=8),
            f"ours, risk every {RISK_EVERY} rounds, 8 probes": dict(risk_every=RISK_EVERY, probes=8),
            "ours, book schedule, 8 probes": dict(OURS_REFRESH, probes=8),
            "ours, book schedule, 4 probes": dict(OURS_REFRESH, probes=4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--save", action="store_true", help="also write results/tables/default/art_benchmark.json")
    a = ap.parse_args()
    torch.set_num_threads(book_threads())
    tab = interleaved_round_times(paper_scale_config(a.dataset), VARIANTS, rounds=a.rounds, warmup=a.warmup)
    print(f"{a.dataset}, {a.rounds} interleaved rounds, {torch.get_num_threads()} thread(s)")
    print(f"{'variant':<36} {'s/round':>8} {'ART':>8} {'risk+slices':>12} {'clients':>9} {'compens.':>9} {'share':>7}")
    for r in tab.itertuples():
        print(f"{r.variant:<36} {r.seconds_per_round:8.4f} {r.art_percent:+7.2f}% {r.round_start_ms:9.2f} ms "
              f"{r.client_ms:6.2f} ms {r.server_ms:6.2f} ms {r.defense_share_percent:6.2f}%")
    if a.save:
        save_table("art_benchmark", tab, "default")


if __name__ == "__main__":
    main()
