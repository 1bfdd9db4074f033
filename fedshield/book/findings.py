"""The numbers the book's chapters quote, read from the committed tables.

Every function here reads; none decides. A verdict ("supported", "NOT supported", "inconclusive")
is :mod:`fedshield.claims`' alone. A chapter's hidden cell calls these accessors on
:func:`load_tables` (the repository's committed ``default`` tables, whatever the page's profile),
formats the numbers and glues them (``myst_nb.glue``) into sentences written by hand.

``tables`` is a mapping from a table's name to a DataFrame, ``None`` for a table not run; an
accessor on a missing table or cell returns ``nan`` (or an empty frame), never raises.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from ..experiments import attack_campaign as A
from ..experiments.campaign import at_paper_scale
from ..experiments.campaign import defense_share as campaign_defense_share
from ..report import PAPER_DATASET, load_table, paper_table
from ..stats import paired_victims

__all__ = ["NAME", "TABLES", "Tables", "committed_results", "load_tables", "present", "plan_cells", "cell",
           "cell_rows", "victims", "med", "quartile3", "detection", "plan_status", "complete_datasets",
           "paired", "fedavg", "paper_value", "dlg_scale", "ig_scale", "table3_value", "defense_share",
           "art_ratio", "value_range", "f1", "f2", "pct"]

#: the one map from a dataset's key in the tables to its name in prose
NAME = {"mnist": "MNIST", "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}

#: the tables :func:`load_tables` reads (besides Table III's long form)
TABLES = ("table2a_acc", "table2a_pld", "table2a_cifar", "calibration", "noise_readings", "fig2_table3de",
          "compensation_rules", "compensation_rules_error", "compensation_spectrum", "art_benchmark",
          "convergence", "attacks_dlg", "attacks_ig", "attacks_table3", "attacks_label_aware", "attacks_training",
          "frontier_points", "table1_threat_model", "table2a", "table2b", "table2_victims", "table3a_slicing",
          "table3b_root_size", "table3c_root_bias", "table3d_q", "table3e_clipping", "leakage_risk_layers")

Tables = Mapping[str, Optional[pd.DataFrame]]


# ------------------------------------------------------------------------------------- loading
def committed_results() -> Path:
    """The repository's ``results/`` folder, the tables committed with the book (whatever
    ``FEDSHIELD_RESULTS`` says: the test suite points it at an empty folder)."""
    return Path(__file__).resolve().parents[2] / "results"


def load_tables(profile: str = "default", results=None, names=TABLES) -> dict:
    """The tables ``names`` at ``profile`` from ``results`` (default: :func:`committed_results`),
    ``None`` for a table not run; plus ``table3_long`` and ``table3_missing``: Table III[A, B, C, E]
    at the paper's GIA scale (:func:`fedshield.experiments.attack_campaign.table3_long`, the long
    table) and its cells not complete, a frame ``table, dataset, row, victims, planned``."""
    root = committed_results() if results is None else results
    out = {name: load_table(name, profile, root=root) for name in names}
    long3, missing = A.table3_long(profile=profile, root=root)
    t3, ig = (out[n] if n in out else load_table(n, profile, root=root) for n in ("attacks_table3", "attacks_ig"))
    done = {c.key(): len(cell_rows(ig if c.table == "II[B]" else t3, c)) for c in missing}
    out["table3_long"] = long3
    out["table3_missing"] = pd.DataFrame(
        [dict(table=c.table, dataset=PAPER_DATASET.get(c.config.dataset, c.config.dataset),
              row=c.setting or c.row, victims=done[c.key()], planned=c.config.images) for c in missing],
        columns=["table", "dataset", "row", "victims", "planned"])
    return out


def present(tables: Tables, name: str) -> Optional[pd.DataFrame]:
    """Table ``name``, or ``None`` where it was not run or has no row."""
    t = tables.get(name)
    return None if t is None or not len(t) else t


# ------------------------------------------------------------------------------------- formatting
def f1(x) -> str:
    """One decimal, ``n/a`` for a missing value."""
    return "n/a" if x is None or x != x else f"{x:.1f}"


def f2(x) -> str:
    """Two decimals, ``n/a`` for a missing value."""
    return "n/a" if x is None or x != x else f"{x:.2f}"


def pct(x) -> str:
    """A fraction as a percentage with one decimal (no sign), ``n/a`` for a missing value."""
    return "n/a" if x is None or x != x else f"{100 * x:.1f}"


def value_range(a, b, fmt: str = "{:.1f}") -> str:
    """``a-b`` formatted with ``fmt``, or ``a`` alone where the two read the same."""
    a, b = fmt.format(a), fmt.format(b)
    return a if a == b else f"{a}-{b}"


# ------------------------------------------------------------------------------------- attack campaigns
@lru_cache(maxsize=None)
def plan_cells(name: str) -> tuple:
    """The cells of attack plan ``name`` (:func:`fedshield.experiments.attack_campaign.attack_plan`)."""
    return tuple(A.attack_plan(name))


def cell(plan: str, ds: str, row: str, **match):
    """The cell of ``plan`` on dataset ``ds`` with row ``row`` (and attributes ``match``), or None."""
    return next((c for c in plan_cells(plan) if c.config.dataset == ds and c.row == row
                 and all(getattr(c, k) == v for k, v in match.items())), None)


def cell_rows(tab: Optional[pd.DataFrame], c) -> pd.DataFrame:
    """The rows of cell ``c`` in attack table ``tab``: its first ``images`` victims, in order."""
    if tab is None or not len(tab) or c is None:
        return pd.DataFrame(columns=["victim", "psnr", "ssim", "detect_precision", "seconds"])
    r = tab[tab.cell == c.key()]
    return r[r.victim < c.config.images].sort_values("victim")


def victims(tables: Tables, plan: str, ds: str, row: str) -> pd.DataFrame:
    """The rows of plan ``plan``'s cell ``row`` on ``ds`` (its first ``images`` victims)."""
    return cell_rows(tables.get(plan), cell(plan, ds, row))


def med(tables: Tables, plan: str, ds: str, row: str, metric: str = "psnr") -> float:
    """The median of ``metric`` over a cell's victims (``nan`` when none ran)."""
    r = victims(tables, plan, ds, row)
    return float(np.median(r[metric].astype(float))) if len(r) else float("nan")


def quartile3(tables: Tables, plan: str, ds: str, row: str) -> float:
    """The upper quartile of a cell's PSNR over its victims."""
    r = victims(tables, plan, ds, row)
    return float(np.percentile(r.psnr.astype(float), 75)) if len(r) else float("nan")


def detection(tables: Tables, plan: str, ds: str, row: str = "Ours-muted") -> float:
    """The mean precision of the muted attacker's slice detector over a cell's victims."""
    r = victims(tables, plan, ds, row)
    d = r.detect_precision.dropna().astype(float) if len(r) else pd.Series(dtype=float)
    return float(d.mean()) if len(d) else float("nan")


def plan_status(tables: Tables, plan: str, datasets=None) -> tuple[int, int]:
    """``(victims done, victims planned)`` of ``plan`` (on ``datasets``) in its table."""
    cells = [c for c in plan_cells(plan) if datasets is None or c.config.dataset in datasets]
    return sum(len(cell_rows(tables.get(plan), c)) for c in cells), sum(c.config.images for c in cells)


def complete_datasets(tables: Tables, plan: str = "attacks_dlg", rows=None,
                      want=("mnist", "fmnist", "cifar10")) -> list[str]:
    """The datasets of ``want`` on which every row (of ``rows``, default Table II's) has every victim."""
    rows = [r for r, _, _ in A.TABLE2_ROWS] if rows is None else rows
    out = []
    for d in want:
        cells = [cell(plan, d, r) for r in rows]
        if all(c is not None and len(cell_rows(tables.get(plan), c)) >= c.config.images for c in cells):
            out.append(d)
    return out


def paired(tables: Tables, plan: str, ds: str, a: str, b: str, alternative: str) -> Optional[dict]:
    """:func:`fedshield.stats.paired_victims` of row ``a`` against row ``b`` of ``plan`` on ``ds``."""
    return paired_victims(victims(tables, plan, ds, a), victims(tables, plan, ds, b), alternative=alternative)


def dlg_scale() -> tuple[int, int]:
    """``(L-BFGS steps, victims)`` of the DLG campaign's cells."""
    c = cell("attacks_dlg", "mnist", "Ours")
    return c.config.iterations, c.config.images


def ig_scale() -> tuple[int, int]:
    """``(Adam steps, ConvNet width)`` of the Inverting Gradients campaign's cells."""
    c = cell("attacks_ig", "cifar10", "none")
    return c.config.iterations, dict(c.config.model_kwargs)["width"]


def table3_value(tables: Tables, table: str, ds: str, row: str, metric: str = "PSNR") -> tuple[float, int]:
    """``(value, victims)`` of Table III at the GIA scale (``table3_long``), ``(nan, 0)`` when absent.
    ``ds`` is the paper's dataset name (``"MNIST"``)."""
    long3 = present(tables, "table3_long")
    if long3 is None:
        return float("nan"), 0
    r = long3[(long3.table == table) & (long3.dataset == ds) & (long3.row == row) & (long3.metric == metric)]
    return (float(r.value.iloc[0]), int(r.victims.iloc[0])) if len(r) else (float("nan"), 0)


# ------------------------------------------------------------------------------------- FedAvg campaigns
def fedavg(tables: Tables, name: str, ds: str, row: str) -> tuple[float, int]:
    """``(mean final accuracy, seeds)`` of a FedAvg campaign cell over the seeds run at the paper's
    2000 rounds (a cell run at fewer rounds is left out: its accuracy is not an ACC); ``(nan, 0)``
    when none."""
    t = present(tables, name)
    if t is None:
        return float("nan"), 0
    if "rounds" in t:
        t = at_paper_scale(t)
    v = t[(t.dataset == ds) & (t.row == row)].final_accuracy.astype(float)
    return (float(v.mean()), len(v)) if len(v) else (float("nan"), 0)


def defense_share(tables: Tables, defense: str = "ours", name: str = "table2a_acc") -> float:
    """The time inside ``defense``'s hooks over the undefended round of the same dataset and seed,
    mean over the runs of campaign table ``name`` (timed inside each run)."""
    t = present(tables, name)
    if t is None:
        return float("nan")
    none = t[t.defense == "none"].set_index(["dataset", "seed"]).mean_round_time.astype(float)
    s = [(r.defense_round_start + r.defense_client + r.defense_server) / none[(r.dataset, r.seed)]
         for r in t[t.defense == defense].itertuples() if (r.dataset, r.seed) in none.index]
    return float(np.mean(s)) if s else float("nan")


def art_ratio(tables: Tables, defense: str) -> pd.Series:
    """Per dataset, ``1 +`` the mean over runs of the time inside ``defense``'s hooks over the
    undefended round of the same dataset and seed (timed inside each run,
    :func:`fedshield.experiments.campaign.defense_share`): the round time relative to undefended, as
    Table II's ART column reads it (Chapters 7 and 8.5). Reads every Table II[A] campaign table
    (``table2a_acc``, ``table2a_pld``, ``table2a_cifar``; a cell run at fewer than 2000 rounds counts:
    a round's time does not depend on how many follow)."""
    tabs = [t for t in (present(tables, n) for n in ("table2a_acc", "table2a_pld", "table2a_cifar")) if t is not None]
    if not tabs:
        return pd.Series(dtype=float)
    t = pd.concat(tabs, ignore_index=True)
    share = campaign_defense_share(t)
    d = t.assign(share=share)[(t.defense == defense) & share.notna()]
    return (1.0 + d.groupby("dataset", sort=False).share.mean()).astype(float)


# ------------------------------------------------------------------------------------- the paper
def paper_value(table: str, dataset: str, row: str, metric: str) -> float:
    """The paper's number in ``table`` (``"II[A]"``) for ``dataset`` (the paper's name), ``row`` and
    ``metric`` (``fedshield/paper_numbers.json``), ``nan`` when it has none."""
    p = paper_table(table)
    v = p[(p.dataset == dataset) & (p.row == row) & (p.metric == metric)].value
    return float(v.iloc[0]) if len(v) else float("nan")


# ------------------------------------------------------------------------------------- a page's parameters
def _setting(v) -> str:
    """One profile value as a reader reads it: ``yes``/``no``, ``-`` for None (the setting of the
    committed tables), sequences joined by commas (``none`` when empty), ``(name, value)`` pairs and
    dicts as ``name value``."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "-"
    if isinstance(v, dict):
        return "; ".join(f"{k} {_setting(x)}" for k, x in v.items())
    if isinstance(v, (tuple, list)):
        if not v:
            return "none"
        if all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in v):
            return ", ".join(f"{k} {_setting(x)}" for k, x in v)
        return ", ".join(f"({_setting(x)})" if isinstance(x, (tuple, list)) and len(x) > 1 else _setting(x)
                         for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def profile_table(ns) -> pd.DataFrame:
    """The parameters a page ran with (:func:`fedshield.profiles.get_profile`'s namespace) as a
    table indexed by ``parameter`` with one column, ``value`` (a short string), the profile's name first;
    a dict of settings (say ``attacks``) is one row per entry (``attacks: run``), its ``None`` entries
    (the setting of the committed tables) left out."""
    rows = [("profile", str(ns.profile))]
    for k, v in vars(ns).items():
        if k == "profile":
            continue
        if isinstance(v, dict) and any(isinstance(x, (bool, type(None))) for x in v.values()):
            rows += [(f"{k}: {kk}", _setting(x)) for kk, x in v.items() if x is not None]
        else:
            rows.append((k, _setting(v)))
    return pd.DataFrame(rows, columns=["parameter", "value"]).set_index("parameter")


# ------------------------------------------------------------------------------------- prose helpers
def span(values, fmt: str = "{:.1f}") -> str:
    """The range of ``values`` as ``lo-hi`` (:func:`value_range`), ``n/a`` when none is a number."""
    v = [float(x) for x in values if x is not None and x == x]
    return value_range(min(v), max(v), fmt) if v else "n/a"


def each(fn, dsets, sep: str = ", ") -> str:
    """``fn(d)`` for every dataset key of ``dsets``, each after its name (:data:`NAME`): ``MNIST 9.8, ...``."""
    return sep.join(f"{NAME.get(d, d)} {fn(d)}" for d in dsets)


__all__ += ["profile_table", "span", "each"]
