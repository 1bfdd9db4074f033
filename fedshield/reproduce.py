"""Run the book's notebooks with papermill under a profile, then build the book.

Profiles (the parameter ``profile`` of every notebook; scales in :mod:`fedshield.profiles`):

- ``smoke``   tiny; what CI executes; the executed copies go to ``tests/notebooks/`` for nbval.
- ``default`` the scale of the book's numbers; executed copies go to ``book/``.
- ``paper``   the paper's scale (GPU recommended); executed copies go to ``book/``.

Experiments inside the notebooks go through the package's result cache, so re-running reuses
finished work and an interrupted run resumes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .errors import FedshieldError

NOTEBOOKS = [
    "01_threat_model",
    "02_leakage_risk",
    "03_slicing_perturbation",
    "04_compensation",
    "05_clipping",
    "06_convergence",
    "07_main_results",
    "08_summary",
]
PROFILES = ("smoke", "default", "paper")


def repo_root() -> Path:
    here = Path(__file__).resolve().parents[1]
    if not (here / "notebooks").is_dir():
        raise FedshieldError(f"notebooks/ not found next to the package ({here}); run from a source checkout")
    return here


def output_dir(profile: str, root: Path | None = None) -> Path:
    root = root or repo_root()
    return root / ("tests/notebooks" if profile == "smoke" else "book")


def run_notebooks(profile: str = "default", only: list[str] | None = None, *, build: bool = True,
                  progress: bool = True, kernel: str = "python3") -> list[Path]:
    """Execute ``notebooks/*.ipynb`` with ``profile`` into the profile's output folder."""
    import papermill as pm

    if profile not in PROFILES:
        raise FedshieldError(f"unknown profile {profile!r}; choose from {list(PROFILES)}")
    root = repo_root()
    names = NOTEBOOKS
    if only:
        unknown = [n for n in only if not any(k == n or k.split("_", 1)[1] == n or k.startswith(n) for k in NOTEBOOKS)]
        if unknown:
            raise FedshieldError(f"unknown notebook(s) {unknown}; choose from {NOTEBOOKS}")
        names = [k for k in NOTEBOOKS if any(k == n or k.split("_", 1)[1] == n or k.startswith(n) for n in only)]
    out = output_dir(profile, root)
    out.mkdir(parents=True, exist_ok=True)
    env_backup = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # kernels inherit it: no busy-waiting OpenMP threads
    done = []
    try:
        for i, name in enumerate(names, 1):
            src = root / "notebooks" / f"{name}.ipynb"
            if not src.exists():
                raise FedshieldError(f"missing notebook {src}")
            dst = out / f"{name}.ipynb"
            t0 = time.time()
            print(f"[{i}/{len(names)}] {name} (profile={profile}) -> {dst.relative_to(root)}", flush=True)
            pm.execute_notebook(str(src), str(dst), parameters={"profile": profile}, kernel_name=kernel,
                                cwd=str(root / "notebooks"), progress_bar=progress, request_save_on_cell_execute=True)
            print(f"      done in {time.time() - t0:.0f} s", flush=True)
            done.append(dst)
    finally:
        if env_backup is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backup
    if build and profile != "smoke":
        build_book(root)
    return done


def build_book(root: Path | None = None) -> None:
    root = root or repo_root()
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root / "book")]
    print("building the book:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
