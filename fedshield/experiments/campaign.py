"""The paper-scale FedAvg campaign (issue 12): cells of 2000 rounds in the calibrated setting,
resumable across machines through the committed result tables.

A :class:`Cell` is one FedAvg run: dataset, defense (by name, with options over the paper's
settings), seed, and changes to the calibrated :class:`~fedshield.fl.FLConfig`. A *plan* is a named
list of cells whose rows form one table, ``results/tables/<profile>/<plan>.json``.
:func:`run_campaign` runs the cells of a plan that its table does not hold yet, in order, and
merges each finished row into the table at once (under a file lock, so two workers can share a
plan). A machine that is reclaimed loses at most the cell it was running: the table is the
campaign's state, and it is committed. Within one machine an interrupted cell also resumes from
the simulator's checkpoint in the result cache.

The calibrated setting (:data:`CALIBRATED`, chosen in the book's calibration page from
``results/tables/default/calibration.json``): DLG's U(-0.5, 0.5) initialisation, the paper's
4-convolution LeNet, local mini-batches of 1, SGD 1e-2, 2 local epochs, the paper's partition,
2000 rounds: 0.8995 undefended on MNIST (paper 0.9169), 0.785 on Fashion-MNIST (paper 0.918), the
closest of the nine readings on both.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import time
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import pandas as pd
import torch

from ..cache import config_key
from ..errors import FedshieldError
from ..fl import FLConfig
from ..report import load_table, results_dir, save_table
from .calibration import READINGS, Reading, calibration_config
from .fedavg import run_fl

__all__ = ["CALIBRATED", "paper_scale_config", "Cell", "run_cell", "run_campaign", "PLANS", "plan",
           "campaign_status", "RISK_EVERY", "OURS_REFRESH"]

#: the reading of the paper's local training whose undefended accuracy after 2000 rounds is
#: closest to the paper's on MNIST and Fashion-MNIST (the calibration table)
CALIBRATED: Reading = next(r for r in READINGS if r.name == "DLG init, 4 conv, batch 1")


def paper_scale_config(dataset: str, *, seed: int = 0, rounds: int = 2000, eval_every: int = 100,
                       **changes) -> FLConfig:
    """The calibrated FedAvg config of ``dataset`` (the paper's partition, :data:`CALIBRATED`),
    with ``changes`` applied (e.g. ``share="update"``)."""
    cfg = calibration_config(dataset, CALIBRATED, rounds=rounds, seed=seed, eval_every=eval_every)
    return cfg.replace(**changes) if changes else cfg


@dataclass(frozen=True)
class Cell:
    """One FedAvg run of the campaign.

    ``row`` names the cell in its table (e.g. the paper's row "Ours"); ``options`` are the
    defense's options over the paper's settings, ``fl`` changes to the calibrated config, both as
    ``(name, value)`` pairs."""
    dataset: str
    defense: str = "none"
    seed: int = 0
    row: str = ""
    options: tuple = ()
    fl: tuple = ()
    rounds: int = 2000

    def config(self) -> FLConfig:
        return paper_scale_config(self.dataset, seed=self.seed, rounds=self.rounds, **dict(self.fl))

    def key(self) -> str:
        """Identifies the run: the full FedAvg config, the defense and its options."""
        return config_key({"fl": dataclasses.asdict(self.config()), "defense": self.defense,
                           "options": [list(o) for o in self.options]}, prefix="cell")


def run_cell(cell: Cell, *, progress: bool = True) -> dict:
    """Run one cell (through the result cache) and return its table row."""
    res = run_fl(cell.config(), cell.defense, progress=progress, **dict(cell.options))
    dt = res.get("mean_defense_time") or {}
    return {"key": cell.key(), "row": cell.row or cell.defense, "dataset": cell.dataset, "defense": cell.defense,
            "seed": cell.seed, "options": json.dumps(dict(cell.options), sort_keys=True),
            "fl": json.dumps(dict(cell.fl), sort_keys=True), "rounds": cell.rounds,
            "final_accuracy": res["final_accuracy"], "eval_rounds": res["eval_rounds"], "accuracy": res["accuracy"],
            "mean_round_time": res["mean_round_time"], "defense_round_start": dt.get("round_start"),
            "defense_client": dt.get("client"), "defense_server": dt.get("server"),
            "threads": torch.get_num_threads(), "machine": platform.machine(), "defense_repr": res["defense"]}


@contextlib.contextmanager
def _locked(name: str, profile: str):
    """An exclusive lock on table ``name`` of ``profile`` (POSIX; a no-op elsewhere)."""
    path = results_dir() / "tables" / profile / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            import fcntl
            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        yield


def _merge_row(name: str, profile: str, row: dict) -> None:
    with _locked(name, profile):
        old = load_table(name, profile)
        new = pd.DataFrame([row])
        tab = new if old is None or old.empty else pd.concat([old[old.key != row["key"]], new], ignore_index=True)
        save_table(name, tab, profile)


def _done_keys(name: str, profile: str) -> set:
    t = load_table(name, profile)
    return set() if t is None or t.empty else set(t.key)


def run_campaign(name: str, cells: Sequence[Cell], *, profile: str = "default", budget_s: Optional[float] = None,
                 progress: bool = True, log=print) -> pd.DataFrame:
    """Run the cells of plan ``name`` that its table lacks, in order, merging each row into the
    table as soon as it is finished; stop starting new cells once ``budget_s`` seconds have passed
    (a started cell runs to its end). Returns the table."""
    if not cells:
        raise FedshieldError(f"plan {name!r} has no cells")
    t0 = time.monotonic()
    for i, cell in enumerate(cells):
        if cell.key() in _done_keys(name, profile):
            continue
        if budget_s is not None and time.monotonic() - t0 > budget_s:
            log(f"[{name}] budget of {budget_s:.0f} s spent; {sum(c.key() not in _done_keys(name, profile) for c in cells)} "
                f"cells left")
            break
        s = time.monotonic()
        row = run_cell(cell, progress=progress)
        _merge_row(name, profile, row)
        log(f"[{name}] {i + 1}/{len(cells)} {cell.dataset} {cell.row or cell.defense} seed {cell.seed}: "
            f"acc {row['final_accuracy']:.4f}, {row['mean_round_time']:.3f} s/round, {time.monotonic() - s:.0f} s")
    return load_table(name, profile)


def campaign_status(name: str, cells: Sequence[Cell], profile: str = "default") -> tuple[int, int]:
    """``(done, total)`` cells of a plan."""
    done = _done_keys(name, profile)
    return sum(c.key() in done for c in cells), len(cells)


# ------------------------------------------------------------------------------------- plans
#: Ours: the leakage risk and slices are refreshed in rounds 0, 1, 2, 4, ..., 128, 256 and then every
#: ``RISK_EVERY`` rounds (``PaperDefense(risk_warmup=True)``), chosen from the measured drift of the
#: slice boundaries (``tools/slice_drift.py``, the book's ART page): 9-19 % of the entries change
#: slice within 25 rounds before round 100, 1-6 % within 25 to 400 rounds afterwards, against 1.1 %
#: for two draws of the 8-probe estimator on one model
RISK_EVERY = 200
OURS_REFRESH = {"risk_every": RISK_EVERY, "risk_warmup": True}
TABLE2A_DEFENSES = ("none", "ours", "gc", "dp-g", "dp-l", "pld")


def _ours(**kw) -> tuple:
    return tuple(sorted({**OURS_REFRESH, **kw}.items()))


def _table2a(datasets: Iterable[str], seeds: Iterable[int], defenses=TABLE2A_DEFENSES) -> list[Cell]:
    return [Cell(ds, d, s, options=_ours() if d == "ours" else ()) for s in seeds for ds in datasets for d in defenses]


def _noise_readings(seeds: Iterable[int]) -> list[Cell]:
    """Table II[A]'s ACC on MNIST under the two other readings of the paper's noise (the first,
    noise in pseudo-gradient units on the shared update, is Table II[A] itself): noise in
    weight-update units (``share="update"``; only the noising defenses, GC's magnitude pruning and
    no defense give the same model in both units), and DP noise on every local SGD step's gradient
    (``where="step"``)."""
    cells = []
    for s in seeds:
        cells += [Cell("mnist", d, s, row=f"{d}, update units", options=_ours() if d == "ours" else (),
                       fl=(("share", "update"),)) for d in ("ours", "dp-g", "dp-l")]
        cells += [Cell("mnist", d, s, row=f"{d}, every local step", options=(("where", "step"),))
                  for d in ("dp-g", "dp-l")]
    return cells


def _fig2(seeds: Iterable[int]) -> list[Cell]:
    """Fig. 2 / Table III[D] / III[E] on MNIST: uncompensated Ours, Q = 1, 12, 20, clipping."""
    cells = []
    for s in seeds:
        cells.append(Cell("mnist", "ours", s, row="uncompensated", options=_ours(compensate=False)))
        for q in (1, 12, 20):
            cells.append(Cell("mnist", "ours", s, row=f"Q={q}", options=_ours(q=float(q))))
        cells.append(Cell("mnist", "ours", s, row="clipping", options=_ours(clip_bound=CLIP_BOUND)))
    return cells


#: Table III[E]'s clipping bound (gradient units): set in the book's clipping chapter
CLIP_BOUND = 10.0

PLANS = {
    "table2a_acc": lambda seeds: _table2a(("mnist", "fmnist"), seeds, tuple(d for d in TABLE2A_DEFENSES if d != "pld")),
    "table2a_pld": lambda seeds: _table2a(("mnist", "fmnist"), seeds, ("pld",)),
    "noise_readings": _noise_readings,
    "fig2_table3de": _fig2,
}


def plan(name: str, seeds: Sequence[int] = (0, 1, 2)) -> list[Cell]:
    """The cells of plan ``name`` (one of :data:`PLANS`) for ``seeds``."""
    if name not in PLANS:
        raise FedshieldError(f"unknown plan {name!r}; choose from {sorted(PLANS)}")
    return PLANS[name](list(seeds))
