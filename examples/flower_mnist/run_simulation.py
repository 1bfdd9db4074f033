"""Run the app in-process with Flower's simulation engine (Ray), defense on, off, or both.

    python run_simulation.py                    # defended, 30 rounds, 100 clients, 10 per round
    python run_simulation.py --defense both     # defended, then undefended, side by side
    python run_simulation.py --rounds 5 --set sigma=0.02 --set clip-bound=1.0
"""
from __future__ import annotations

import argparse
import os
import sys
import time

for k, v in (("FLWR_TELEMETRY_ENABLED", "0"), ("FLWR_DISABLE_UPDATE_CHECK", "1"), ("RAY_USAGE_STATS_ENABLED", "0")):
    os.environ.setdefault(k, v)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from flwr.simulation import run_simulation  # noqa: E402

from flower_mnist.client_app import make_client_app  # noqa: E402
from flower_mnist.server_app import HISTORY, make_server_app  # noqa: E402
from flower_mnist.task import DEFAULTS  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--defense", choices=["on", "off", "both"], default="on")
    ap.add_argument("--rounds", type=int, default=DEFAULTS["num-server-rounds"])
    ap.add_argument("--clients", type=int, default=DEFAULTS["num-partitions"])
    ap.add_argument("--cpus-per-client", type=float, default=1.0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help=f"override a setting; keys: {', '.join(DEFAULTS)}")
    args = ap.parse_args(argv)
    base = {"num-server-rounds": args.rounds, "num-partitions": args.clients}
    for kv in args.set:
        k, _, v = kv.partition("=")
        if k not in DEFAULTS:
            ap.error(f"unknown setting {k!r}")
        base[k] = v
    runs = {"on": [True], "off": [False], "both": [True, False]}[args.defense]
    for on in runs:
        ov = dict(base, defense=on)
        t0 = time.perf_counter()
        run_simulation(server_app=make_server_app(ov), client_app=make_client_app(ov),
                       num_supernodes=args.clients,
                       backend_config={"client_resources": {"num_cpus": args.cpus_per_client, "num_gpus": 0.0}})
        print(f"{'defended' if on else 'undefended'}: {time.perf_counter() - t0:.1f} s", flush=True)
    print("\nround  " + "  ".join(f"{k:>10s}" for k in HISTORY))
    for i in range(args.rounds + 1):
        print(f"{i:5d}  " + "  ".join(f"{h[i][1]:10.4f}" if i < len(h) else " " * 10 for h in HISTORY.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
