"""Score every committed attack table against the no-information floor and a crowd of same-class
test images (``psnr_floor``, ``psnr_gain``, ``rank``, ``identified``; see
``fedshield.experiments.scoring``), from the rows' stored reconstructions, without attacking again.

    .venv/bin/python tools/rescore_attacks.py                 # every attacks_* table of the default profile
    .venv/bin/python tools/rescore_attacks.py attacks_dlg --force
"""
from __future__ import annotations

import argparse
import sys

from fedshield.experiments.attack_campaign import ATTACK_PLANS, rescore_table
from fedshield.report import results_dir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tables", nargs="*", help="attack tables (default: every attacks_* table of the profile)")
    p.add_argument("--profile", default="default")
    p.add_argument("--force", action="store_true", help="score rows that are already scored again")
    a = p.parse_args(argv)
    names = a.tables or sorted(f.stem for f in (results_dir() / "tables" / a.profile).glob("attacks_*.json"))
    for name in names:
        tab = rescore_table(name, a.profile, force=a.force)
        scored = int(tab["rank"].notna().sum())
        print(f"{name}: {len(tab)} rows, {scored} with a reconstruction (rank, identified), "
              f"median gain {tab.psnr_gain.median():.1f} dB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
