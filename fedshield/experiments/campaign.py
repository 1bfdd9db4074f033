"""The paper-scale FedAvg campaign: cells of 2000 rounds in the calibrated setting,
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
2000 rounds: of the nine readings, the one whose undefended accuracy comes closest to the paper's on
both MNIST and Fashion-MNIST (Chapter 8's calibration page prints them beside the paper's).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import time
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no table lock
    fcntl = None

from ..cache import config_key
from ..errors import FedshieldError
from ..fl import FLConfig
from ..models import build_model
from ..params import n_params
from ..report import PAPER_DATASET, PAPER_DEFENSE, fewer_rounds, load_table, results_dir, save_table
from .calibration import READINGS, Reading, calibration_config
from .fedavg import run_fl

__all__ = ["CALIBRATED", "paper_scale_config", "Cell", "run_cell", "run_campaign", "PLANS", "plan",
           "campaign_status", "RISK_EVERY", "OURS_REFRESH", "clip_bound", "collect", "seed_summary", "art_ratio",
           "defense_share", "training_options", "FRONTIER", "table_lock",
           "paper_long", "accuracy_curves", "reproduces_pattern", "PLD_ESTIMATED", "SHORT_CELLS",
           "at_paper_scale"]

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


#: the columns of a campaign table (one row per cell, :func:`run_cell`)
COLUMNS = ("key", "row", "dataset", "defense", "seed", "options", "fl", "rounds", "final_accuracy", "eval_rounds",
           "accuracy", "mean_round_time", "defense_round_start", "defense_client", "defense_server", "threads",
           "machine", "defense_repr")


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
def table_lock(name: str, profile: str):
    """An exclusive lock on table ``name`` of ``profile`` (POSIX; a no-op elsewhere)."""
    path = results_dir() / "tables" / profile / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _merge_row(name: str, profile: str, row: dict) -> None:
    with table_lock(name, profile):
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
        done = _done_keys(name, profile)   # re-read: another worker may have finished cells meanwhile
        if cell.key() in done:
            continue
        if budget_s is not None and time.monotonic() - t0 > budget_s:
            log(f"[{name}] budget of {budget_s:.0f} s spent; {sum(c.key() not in done for c in cells)} cells left")
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
#: slice boundaries (``tools/slice_drift.py``; the book's ART page prints it): the share of entries
#: that change slice between refreshes, fast early in training and slow after round 100, against the
#: share on which two draws of the 8-probe estimator on one model disagree
RISK_EVERY = 200
OURS_REFRESH = {"risk_every": RISK_EVERY, "risk_warmup": True}
TABLE2A_DEFENSES = ("none", "ours", "gc", "dp-g", "dp-l", "pld")
#: PLD in the campaign: Soteria's feature scores estimated with 16 Gaussian probes per sample (one
#: forward-mode pass each) instead of one backward pass per feature (588 on the MNIST LeNet), which
#: makes the exact score too slow for 2000-round cells (``benchmarks/bench_pld.py`` prints the cost and
#: the fidelity of both)
PLD_ESTIMATED = (("probes", 16),)


def _ours(**kw) -> tuple:
    return tuple(sorted({**OURS_REFRESH, **kw}.items()))


def training_options(defense: str) -> tuple:
    """A defense's options in the cells of Table II[A]'s plans (Ours' refresh schedule, PLD's estimate)."""
    return _ours() if defense == "ours" else PLD_ESTIMATED if defense == "pld" else ()


#: Table II[A]'s cells that do not fit the campaign's budget at 2000 rounds and run at fewer, marked
#: by their ``rounds`` (``report.fewer_rounds``; the book puts them beside the undefended run's
#: accuracy at that round, not beside the paper's ACC): PLD on CIFAR-10 at the paper's partition
#: costs several times the undefended round (its feature score: 16 forward-mode probes on every local
#: image of a round; ``benchmarks/bench_pld.py`` prints the cost), too long for 2000 rounds in one run
#: of ``tools/campaign.py``; at 300 rounds its accuracy curve is compared with the other cells' at
#: rounds 100, 200, 300
SHORT_CELLS = {("cifar10", "pld"): 300}


def _table2a(datasets: Iterable[str], seeds: Iterable[int], defenses=TABLE2A_DEFENSES) -> list[Cell]:
    return [Cell(ds, d, s, options=training_options(d), rounds=SHORT_CELLS.get((ds, d), 2000))
            for s in seeds for ds in datasets for d in defenses]


def at_paper_scale(tab: pd.DataFrame) -> pd.DataFrame:
    """The rows of a campaign table run at its full length: without the cells of
    :data:`SHORT_CELLS` (:func:`fedshield.report.fewer_rounds`), whose final accuracy is not an
    ACC at the paper's 2000 rounds."""
    if tab is None or not len(tab):
        return tab
    return tab[~fewer_rounds(tab)].reset_index(drop=True)


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


def clip_bound(dataset: str, sigma: float = 0.1) -> float:
    """Table III[E]'s clipping bound: the paper clips "to a range similar to the noise", read as the
    norm ``sigma * sqrt(P)`` of the noise that perturbing every entry would add (LeNet, ``P`` its
    parameters; 13.05 for (F)MNIST), in the pseudo-gradient units the noise is in."""
    return round(float(sigma) * n_params(build_model("lenet", dataset)) ** 0.5, 2)


def _fig2(seeds: Iterable[int]) -> list[Cell]:
    """Fig. 2, Table III[D] and III[E] on MNIST. Fig. 2: Ours without compensation, and compensating
    with the paper's m^2-too-large aggregate variance, at Table II[A]'s setting (the compensated run
    and the undefended one are Table II[A]'s cells). III[D] and
    III[E] use the paper's GIA defense setting (ratio 0.3, as its notes say), here on the LeNet:
    Q = 1, 6, 12, 20, and clipping at :func:`clip_bound` (no clipping = Q = 6)."""
    cells = []
    ig = (("ratio", 0.3),)
    for s in seeds:
        cells.append(Cell("mnist", "ours", s, row="uncompensated", options=_ours(compensate=False)))
        cells.append(Cell("mnist", "ours", s, row="paper variance", options=_ours(noise_var="paper")))
        for q in (1, 6, 12, 20):
            cells.append(Cell("mnist", "ours", s, row=f"Q={q}", options=_ours(q=float(q), **dict(ig))))
        cells.append(Cell("mnist", "ours", s, row="clipping",
                          options=_ours(clip_bound=clip_bound("mnist"), **dict(ig))))
    return cells


def _compensation_rules(seeds: Iterable[int]) -> list[Cell]:
    """Beyond the paper (Chapter 10): Ours on MNIST with per-layer compensation
    (:func:`fedshield.defense.compensate_layers`, hard threshold and optimal shrinkage) instead of the
    paper's global projection, Table II[A]'s setting otherwise."""
    return [Cell("mnist", "ours", s, row=f"per-layer {rule}", options=_ours(compensation=rule))
            for s in seeds for rule in ("shrink", "hard")]


#: the adaptive attacker's frontier (Chapter 10), MNIST: each defense at strengths other than the
#: paper's (whose cells are Table II[A]'s): DP-G's variance, GC's pruned fraction, Ours' ratio, and
#: the hardened variants, Ours with a noise floor of this std on every entry
#: (``PaperDefense(floor=...)``) and Ours with each client's slice boundaries randomised
#: (``PaperDefense(jitter=...)``): ``(row, defense, options)``
FRONTIER = (("DP-G, variance 1e-4", "dp-g", (("variance", 1e-4),)),
            ("DP-G, variance 1e-3", "dp-g", (("variance", 1e-3),)),
            ("GC, p = 0.95", "gc", (("p", 0.95),)),
            ("GC, p = 0.99", "gc", (("p", 0.99),)),
            ("Ours, ratio 0.5", "ours", (("ratio", 0.5),)),
            ("Ours, ratio 1.0", "ours", (("ratio", 1.0),)),
            ("Ours + floor 0.01", "ours", (("floor", 0.01),)),
            ("Ours + floor 0.03", "ours", (("floor", 0.03),)),
            ("Ours + jitter 0.5", "ours", (("jitter", 0.5),)))


#: beyond the frontier: the noise at which an attacker who fits the noise stops identifying a
#: client's image from one update (Chapter 10), DP-G and Ours with every slice noised
NOISE_NEEDED = (("DP-G, variance 1e-1", "dp-g", (("variance", 1e-1),)),
                ("DP-G, variance 1", "dp-g", (("variance", 1.0),)),
                ("Ours, ratio 1.0, sigma 1", "ours", (("ratio", 1.0), ("sigma", 1.0))))


def _noise_needed(seeds: Iterable[int], datasets: Iterable[str] = ("mnist", "fmnist")) -> list[Cell]:
    return [Cell(ds, d, s, row=row, options=_ours(**dict(opts)) if d == "ours" else opts)
            for s in seeds for ds in datasets for row, d, opts in NOISE_NEEDED]


def _frontier(seeds: Iterable[int], datasets: Iterable[str] = ("mnist", "fmnist")) -> list[Cell]:
    return [Cell(ds, d, s, row=row, options=_ours(**dict(opts)) if d == "ours" else opts)
            for s in seeds for ds in datasets for row, d, opts in FRONTIER]


PLANS = {
    "table2a_acc": lambda seeds: _table2a(("mnist", "fmnist"), seeds, tuple(d for d in TABLE2A_DEFENSES if d != "pld")),
    "table2a_pld": lambda seeds: _table2a(("mnist", "fmnist"), seeds, ("pld",)),
    # CIFAR-10 at the paper's partition (1000 clients, 200 a round): rounds large enough to use two
    # threads, so one worker with both threads (OMP_NUM_THREADS=2 tools/campaign.py)
    "table2a_cifar": lambda seeds: _table2a(("cifar10",), seeds),
    "noise_readings": _noise_readings,
    "fig2_table3de": _fig2,
    "compensation_rules": _compensation_rules,
    # CIFAR-10's frontier cells are the plan's longest (the paper's partition): run them one row at a time
    "frontier": lambda seeds: _frontier(seeds, ("mnist", "fmnist", "cifar10")),
    "noise_needed": _noise_needed,
}


def plan(name: str, seeds: Sequence[int] = (0, 1, 2), *, rounds: Optional[int] = None,
         datasets: Optional[Sequence[str]] = None) -> list[Cell]:
    """The cells of plan ``name`` (one of :data:`PLANS`) for ``seeds``; ``rounds`` replaces the
    cells' 2000 (the smoke profile's miniature), ``datasets`` keeps only those datasets' cells."""
    if name not in PLANS:
        raise FedshieldError(f"unknown plan {name!r}; choose from {sorted(PLANS)}")
    cells = PLANS[name](list(seeds))
    if datasets is not None:
        cells = [c for c in cells if c.dataset in datasets]
    if rounds is not None:
        cells = [dataclasses.replace(c, rounds=int(rounds)) for c in cells]
    return cells


# --------------------------------------------------------------------------------- summaries
def seed_summary(tab: pd.DataFrame, by: Sequence[str] = ("dataset", "row")) -> pd.DataFrame:
    """Final accuracy over seeds per ``by``: ``acc_mean, acc_std`` (0 for one seed), ``acc_min,
    acc_max``, ``seeds`` (how many), ``round_time`` (mean s/round)."""
    g = tab.groupby(list(by), sort=False)
    out = g.final_accuracy.agg(acc_mean="mean", acc_std="std", acc_min="min", acc_max="max", seeds="count")
    out["acc_std"] = out.acc_std.fillna(0.0)
    out["round_time"] = g.mean_round_time.mean()
    return out.reset_index()


def _undefended_time(tab: pd.DataFrame, reference: Optional[pd.DataFrame]) -> pd.Series:
    """Per row of ``tab``: the mean round time of the undefended cell of the same dataset and seed in
    ``reference`` (default ``tab``), NaN where there is none."""
    ref = tab if reference is None else reference
    none = ref[ref.defense == "none"].set_index(["dataset", "seed"]).mean_round_time
    return pd.Series([none.get(k, float("nan")) for k in zip(tab.dataset, tab.seed)], index=tab.index, dtype=float)


def art_ratio(tab: pd.DataFrame, reference: Optional[pd.DataFrame] = None) -> pd.Series:
    """Each cell's mean round time over the undefended cell of the same dataset and seed (from
    ``reference``, default ``tab`` itself): the paper's ART is ``100 (ratio - 1)`` percent. NaN where
    that undefended cell is missing."""
    return tab.mean_round_time.astype(float) / _undefended_time(tab, reference)


def defense_share(tab: pd.DataFrame, reference: Optional[pd.DataFrame] = None) -> pd.Series:
    """Each cell's time inside the defense's hooks (round start, clients, server; per round) over the
    mean round time of the undefended cell of the same dataset and seed (from ``reference``, default
    ``tab``): the round time the defense adds, timed inside one run. The rest of a defended round is
    the same work as the undefended round's (same clients, same samples, same shapes), so this is the
    ART without the load changes between two runs that move whole-round ratios by several percent
    on shared cores. NaN where that undefended cell is missing."""
    hooks = tab.defense_round_start.astype(float) + tab.defense_client.astype(float) + tab.defense_server.astype(float)
    return hooks / _undefended_time(tab, reference)


def paper_long(tab: pd.DataFrame, *, reference: Optional[pd.DataFrame] = None, rows: Optional[dict] = None,
               art: bool = True) -> pd.DataFrame:
    """A campaign table in :func:`fedshield.report.beside_paper`'s long form: the paper's dataset and
    row names (``rows`` maps a cell's ``row`` to the paper's; default: the defense names of
    :data:`fedshield.report.PAPER_DEFENSE`), ``ACC`` in percent (mean over seeds), ``ART`` in percent
    over the undefended round: the mean over seeds of :func:`defense_share`."""
    rows = rows or PAPER_DEFENSE
    t = tab.assign(art=1.0 + defense_share(tab, reference))
    out = []
    for (ds, row), g in t.groupby(["dataset", "row"], sort=False):
        name = rows.get(row, row)
        out.append(dict(dataset=PAPER_DATASET.get(ds, ds), row=name, metric="ACC", value=100 * g.final_accuracy.mean()))
        if art and g.defense.iloc[0] != "none" and g.art.notna().any():
            out.append(dict(dataset=PAPER_DATASET.get(ds, ds), row=name, metric="ART", value=100 * (g.art.mean() - 1)))
    return pd.DataFrame(out, columns=["dataset", "row", "metric", "value"])


def accuracy_curves(tab: pd.DataFrame, by: Sequence[str] = ("dataset", "row")) -> dict:
    """``{key: (rounds, mean, min, max)}`` of the accuracy curves over seeds (numpy arrays), the
    cells of one key having the same evaluation rounds."""
    out = {}
    for k, g in tab.groupby(list(by), sort=False):
        acc = np.array([list(a) for a in g.accuracy], dtype=float)
        out[k] = (np.asarray(g.eval_rounds.iloc[0]), acc.mean(0), acc.min(0), acc.max(0))
    return out


def reproduces_pattern(none_acc: float, ours_acc: float, dp_acc: Sequence[float], *, ours_loss: float = 0.02,
                       chance: float = 0.15, learnt: float = 0.5) -> Optional[bool]:
    """The paper's Table II[A] pattern: Ours within ``ours_loss`` of undefended and every DP column at
    chance (below ``chance``); ``None`` (cannot tell) when the undefended run is below ``learnt`` or
    a number is missing (NaN)."""
    vals = [none_acc, ours_acc, *dp_acc]
    if any(v != v for v in vals) or none_acc < learnt:
        return None
    return bool(none_acc - ours_acc <= ours_loss and all(a < chance for a in dp_acc))


def collect(name: str, cells: Sequence[Cell], *, profile: str = "default", run: bool = False,
            progress: bool = False) -> tuple[pd.DataFrame, list[Cell]]:
    """The rows of ``cells`` in plan ``name``'s table at ``profile`` and the cells still missing;
    with ``run``, the missing cells are run first (:func:`run_campaign`). A chapter that reads a
    long campaign (``run=False``) shows what is done and says what is not."""
    if run and cells:
        run_campaign(name, cells, profile=profile, progress=progress, log=lambda s: None)
    t = load_table(name, profile)
    keys = [c.key() for c in cells]
    if t is None or t.empty:
        return pd.DataFrame(columns=list(COLUMNS)), list(cells)
    t = t[t.key.isin(set(keys))].reset_index(drop=True)
    done = set(t.key)
    return t, [c for c in cells if c.key() not in done]
