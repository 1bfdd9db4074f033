"""How far the book's numbers move when only the CPU kernels change.

Runs the same computations in one child process per variant (PyTorch's kernel family forced with
``ATEN_CPU_CAPABILITY``, the thread count with ``OMP_NUM_THREADS``) and prints, per quantity, the
largest relative spread across the variants. Deterministic quantities (the leakage risk, a slice
cut, a compensated aggregate) move in the last digits only, which is the resolution the notebook
checks can afford; a chaotic one (an attack's PSNR after a few optimiser steps) moves by tenths of
a dB, so the notebooks compare it only as a verdict with a margin.

    .venv/bin/python tools/kernel_spread.py            # needs the MNIST / CIFAR-10 data (FEDSHIELD_DATA)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

VARIANTS = {"native": {}, "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
            "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"}, "threads-1": {"OMP_NUM_THREADS": "1"},
            "threads-2": {"OMP_NUM_THREADS": "2"}}


def measure() -> dict:
    import tempfile

    import torch

    os.environ["FEDSHIELD_CACHE"] = tempfile.mkdtemp()
    from fedshield.experiments.attack import AttackConfig, run_attack
    from fedshield.data import load_dataset, root_set
    from fedshield.defense import compensate, leakage_risk, risk_slices
    from fedshield.models import LeNet, build_model
    from fedshield.utils import book_threads, make_generator, param_sizes

    torch.set_num_threads(book_threads())
    out = {}
    x, y = load_dataset("cifar10", "train")
    model = build_model("lenet", "cifar10").dlg_init_(make_generator(0)).eval()
    idx = root_set(y, 50, seed=0)
    r = leakage_risk(model, x[idx], y[idx], probes=4, generator=make_generator(0))
    out["leakage risk (Gaussian probes), per tensor"] = r.tolist()
    out["equal-risk slice cuts (entries)"] = risk_slices(param_sizes(model), r, 10).tolist()
    xm, ym = load_dataset("mnist", "train")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tiny = LeNet(in_channels=1, num_classes=10, image_size=28, n_conv=2, channels=2).eval()
    t = root_set(ym, 3, seed=0)
    out["exact leakage risk (tiny LeNet), per tensor"] = leakage_risk(tiny, xm[t], ym[t], exact=True).tolist()
    g = make_generator(0)
    signal = torch.randn(300, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 50, generator=g, dtype=torch.float64)
    noisy = (signal + 0.5 * torch.randn(300, 50, generator=g, dtype=torch.float64)).reshape(-1).float()
    out["compensated aggregate (MP projection), entries"] = compensate(noisy, 0.25, 6.0).tolist()
    res = run_attack(AttackConfig(dataset="mnist", model="lenet", attack="dlg", defense="none", seed=0, label="known",
                                  images=1, iterations=3, model_init="dlg"), progress=False)
    out["DLG PSNR after 3 L-BFGS steps (dB)"] = [res["summary"]["psnr"]["mean"]]
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure()))
        return 0
    runs = {}
    for name, env in VARIANTS.items():
        proc = subprocess.run([sys.executable, __file__, "--child"], env={**os.environ, **env},
                              capture_output=True, text=True, check=True)
        runs[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"measured under {name}", flush=True)
    ref = runs["native"]
    print(f"\n{'quantity':<52} {'max |x - native| / |native|':>28} {'max |x - native|':>18}")
    for q, base in ref.items():
        rel, ab = 0.0, 0.0
        for name, run in runs.items():
            for a, b in zip(run[q], base):
                ab = max(ab, abs(a - b))
                rel = max(rel, abs(a - b) / abs(b) if b else (0.0 if a == b else float("inf")))
        print(f"{q:<52} {rel:>28.2e} {ab:>18.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
