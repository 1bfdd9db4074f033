"""The paper's claims as code: each claim is one function of the book's measured tables that returns
what was measured and whether that supports the claim.

The summary chapter calls :func:`evaluate` on the tables the chapters saved
(:func:`fedshield.report.load_table`). A verdict is one of

- ``supported`` / ``NOT supported``: the measurement decides the claim;
- ``inconclusive``: the tables exist but cannot decide at this scale (e.g. the model never left
  chance, so an accuracy claim has nothing to compare, or the claim was measured only at a scale
  the paper did not run); the measurement says why;
- ``not tested``: a table the claim needs was not run at this profile.

This module is the only code that decides a claim: every margin is a named constant below, and the
book's chapters quote the verdicts (:func:`evaluate`, :func:`verdict_of`) and the constants, never
re-derive them.

Only a missing table gives ``not tested``. Any other error (a renamed column, a malformed table,
a bug in a check) propagates: a check that cannot run must fail loudly, not read as "not tested".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import pandas as pd

from .errors import FedshieldError
from .report import fewer_rounds, paper_table
from .stats import paired_victims

VERDICTS = ("supported", "NOT supported", "inconclusive", "not tested")

# --- the margins of every verdict ------------------------------------------------------------------
#: two median PSNRs closer than this (dB) count as the same protection
MARGIN_DB = 1.0
#: an attack "reconstructs" the image: median PSNR above this (dB)
LEAK_PSNR = 20.0
#: a defense "protects": it lowers the median PSNR by more than this (dB)
PROTECT_DB = 5.0
#: locating the noisy slices "does not help": the muted attacker gains less than this (dB)
MUTED_GAIN_DB = 3.0
#: the muted attacker's slice detector "works": mean precision at least this
DETECTS = 0.8
#: a paired comparison over victims decides at this one-sided p-value, with at least this many victims
#: (with n victims the smallest one-sided exact p is 2^-n: 4 victims can never reach 0.05)
P_VALUE = 0.05
MIN_PAIRED_VICTIMS = 5
#: the paper's headline: Ours' PSNR "more than 60 %" lower than the baseline defenses'
HEADLINE_REDUCTION = 0.60
#: PLD's muted attack "recovers the data": its median PSNR at least this many times PLD's (the paper:
#: 1.9-2.5 times, 18.49 against 9.57 dB on MNIST)
PLD_MUTED_RATIO = 1.5
#: the paper's "< 2 % accuracy loss": two final accuracies closer than this count as the same
ACC_TOLERANCE = 0.02
#: GC "loses most of the accuracy": more than this (the paper: 55 points)
GC_LOSS = 0.25
#: DP "falls to chance": below this accuracy (the paper: about 10 %)
CHANCE_ACC = 0.15
#: PLD "keeps accuracy": within this of undefended (the paper: about 4 points lower)
PLD_TOLERANCE = 0.05
#: the paper's "< 10 % round-time overhead"
ROUND_TIME_LIMIT = 0.10
#: Table III[D]: Q = 1 "loses accuracy" against Q = 6 by more than this (the paper: 3.95 points)
Q1_LOSS = 0.02
#: Table III[E]: clipping "costs under 1 point"
CLIPPING_TOLERANCE = 0.01
#: Table III[B]: a root set "estimates the risk" within this relative error
ROOT_RISK_TOLERANCE = 0.05
#: Sec. 5B: the measured aggregate noise energy "equals" the derived one within this relative error
VARIANCE_TOLERANCE = 0.10
#: beyond the paper: per-layer shrinkage "trains as well": within this of undefended
SHRINK_TOLERANCE = 0.01

#: the accuracy of a 10-class model that learnt nothing, and the margin above it that counts as learnt
CHANCE = 0.1
LEARNT = 0.2
#: the baseline defenses of Table II
BASELINES = ("gc", "dp-g", "dp-l", "pld")


class MissingTable(LookupError):
    """A table a claim needs was not run at this profile."""


class Inconclusive(Exception):
    """The tables exist but cannot decide the claim at this scale (the message says why)."""


Tables = Mapping[str, Optional[pd.DataFrame]]


def table(tables: Tables, name: str) -> pd.DataFrame:
    t = tables.get(name)
    if t is None:
        raise MissingTable(name)
    return t


def _plain(d: pd.DataFrame, defense: str) -> pd.DataFrame:
    """Rows of ``defense`` against the plain (not muted) attacker."""
    return d[(d.defense == defense) & (~d.muted.astype(bool))]


# --- Table II ------------------------------------------------------------------------------------

def _psnr(d: pd.DataFrame, defense: str, muted: bool = False) -> pd.Series:
    """Median PSNR per dataset of ``defense`` (plain or ``muted`` attacker), the rows that ran."""
    rows = _plain(d, defense) if not muted else d[(d.defense == defense) & d.muted.astype(bool)]
    return rows.set_index("dataset").psnr_median.dropna()


def undefended_leaks(tables: Tables, name: str, *, min_psnr: float = LEAK_PSNR) -> tuple[str, bool]:
    """Undefended, the attack reconstructs: median PSNR over victims above ``min_psnr`` dB on every
    dataset that ran."""
    d = _psnr(table(tables, name), "none")
    if not len(d):
        raise Inconclusive(f"no undefended row of {name} has run")
    meas = f"undefended median PSNR {', '.join(f'{k}: {v:.1f}' for k, v in d.items())} dB"
    return meas, bool((d > min_psnr).all())


def ours_protects(tables: Tables, name: str, *, margin: float = PROTECT_DB) -> tuple[str, bool]:
    """The defense lowers the plain attacker's median PSNR by more than ``margin`` dB on every
    dataset."""
    d = table(tables, name)
    none, ours = _psnr(d, "none"), _psnr(d, "ours")
    meas = "; ".join(f"{k}: {none[k]:.1f} -> {ours[k]:.1f} dB" for k in ours.index if k in none.index)
    gap = (none - ours).dropna()
    if not len(gap):
        raise Inconclusive(f"no dataset with both an undefended and an 'ours' row in {name}")
    return meas, bool((gap > margin).all())


def muted_fails(tables: Tables, name: str, *, margin: float = MUTED_GAIN_DB) -> tuple[str, bool]:
    """Locating the noisy slices gains the attacker less than ``margin`` dB (medians)."""
    d = table(tables, name)
    ours, muted = _psnr(d, "ours"), _psnr(d, "ours", muted=True)
    meas = "; ".join(f"{k}: {ours[k]:.1f} vs muted {muted[k]:.1f} dB" for k in muted.index if k in ours.index)
    gain = (muted - ours).dropna()
    if not len(gain):
        raise Inconclusive(f"no dataset with both a plain and a muted 'ours' row in {name}")
    return meas, bool((gain < margin).all())


def _paired(tables: Tables, tab: str, a: tuple, b: tuple, alternative: str) -> dict:
    """Per dataset: :func:`fedshield.stats.paired_comparison` of the PSNR of row ``a`` against row
    ``b`` (``(defense, muted)``) over the victims both have, in ``table2_victims`` table ``tab``."""
    v = table(tables, "table2_victims")
    v = v[v["table"] == tab]
    out = {}
    for ds, g in v.groupby("dataset", sort=False):
        rows = [g[(g.defense == d) & (g.muted.astype(bool) == m)] for d, m in (a, b)]
        c = paired_victims(*rows, alternative=alternative, alpha=P_VALUE)
        if c is not None:
            out[ds] = c
    return out


def _deciding(c: dict) -> tuple[dict, str]:
    """The datasets of a paired comparison with at least :data:`MIN_PAIRED_VICTIMS` victims and a
    note on the others; raises :class:`Inconclusive` when none is left."""
    ok = {k: r for k, r in c.items() if r["n"] >= MIN_PAIRED_VICTIMS}
    few = [f"{k} ({r['n']} victims)" for k, r in c.items() if r["n"] < MIN_PAIRED_VICTIMS]
    if not ok:
        raise Inconclusive(f"too few victims for p < {P_VALUE:g}: "
                           + (", ".join(few) or "no dataset with victims of both rows"))
    note = f" (not counted, too few victims: {', '.join(few)})" if few else ""
    return ok, note


def _describe_paired(c: dict) -> str:
    return "; ".join(f"{k}: median {r['median_diff']:+.1f} dB, {r['wins']}/{r['n']} victims, p={r['p']:.3g}"
                     for k, r in c.items())


def ours_protects_paired(tables: Tables, tab: str = "A") -> tuple[str, bool]:
    """Ours lowers the plain attacker's PSNR against no defense, victim by victim: one-sided exact
    Wilcoxon p < :data:`P_VALUE` on every dataset with at least :data:`MIN_PAIRED_VICTIMS` paired victims."""
    c, note = _deciding(_paired(tables, tab, ("ours", False), ("none", False), "less"))
    return _describe_paired(c) + note, all(r["verdict"] for r in c.values())


def muted_fails_paired(tables: Tables, tab: str = "A") -> tuple[str, bool]:
    """The muted attacker does not beat the plain one victim by victim: 'Ours-muted > Ours' is not
    significant (p >= :data:`P_VALUE`) on any dataset with at least :data:`MIN_PAIRED_VICTIMS` paired victims."""
    c, note = _deciding(_paired(tables, tab, ("ours", True), ("ours", False), "greater"))
    return _describe_paired(c) + note, not any(r["verdict"] for r in c.values())


def psnr_reduction(d: pd.DataFrame) -> pd.DataFrame:
    """Per dataset of a Table II frame (``dataset, defense, muted, psnr_median``; the plain rows are
    read): Ours' median PSNR, the baseline of :data:`BASELINES` with the lowest one, its PSNR, and
    the reduction ``1 - ours / lowest`` (negative: Ours' PSNR is the higher). A dataset without an
    'ours' row or without any baseline row is left out. Columns ``dataset, ours, baseline, lowest,
    reduction``."""
    rows = []
    for ds, g in d[~d.muted.astype(bool)].groupby("dataset", sort=False):
        v = g.set_index("defense").psnr_median.dropna()
        base = v[[b for b in BASELINES if b in v.index]]
        if "ours" not in v.index or not len(base):
            continue
        rows.append(dict(dataset=ds, ours=float(v["ours"]), baseline=str(base.idxmin()), lowest=float(base.min()),
                         reduction=1.0 - float(v["ours"]) / float(base.min())))
    return pd.DataFrame(rows, columns=["dataset", "ours", "baseline", "lowest", "reduction"])


def paper_table2(table: str = "II[A]") -> pd.DataFrame:
    """The paper's Table II[A] or II[B] PSNR and SSIM in a Table II frame (``dataset, defense,
    muted, psnr_median, ssim_median``; the paper reports one number per cell, set in both columns'
    place of the median), for :func:`psnr_reduction` on the paper's own numbers."""
    p = paper_table(table)
    names = {"none": "none", "Ours": "ours", "GC": "gc", "DP-G": "dp-g", "DP-L": "dp-l", "PLD": "pld",
             "PLD-muted": "pld"}
    p = p[p.row.isin(names) & p.metric.isin(["PSNR", "SSIM"])]
    w = p.pivot_table(index=["dataset", "row"], columns="metric", values="value", sort=False).reset_index()
    return pd.DataFrame(dict(dataset=w.dataset, defense=w.row.map(names), muted=w.row.str.endswith("-muted"),
                             psnr_median=w.get("PSNR"), ssim_median=w.get("SSIM")))


def headline_reduction(tables: Tables, *, reduction: float = HEADLINE_REDUCTION) -> tuple[str, bool]:
    """The paper's conclusion: Ours lowers the PSNR between raw and reconstructed images by more than
    ``reduction`` (60 %) compared with the baseline defenses. Decided against every baseline at once
    (the one with the lowest median PSNR, :func:`psnr_reduction`), plain attacker, on every dataset
    of Table II[A] (DLG) and, where it has run, II[B] (Inverting Gradients)."""
    parts, ok = [], []
    for name, tab in (("table2a", "II[A]"), ("table2b", "II[B]")):
        d = tables.get(name) if name == "table2b" else table(tables, name)
        if d is None:
            continue
        r = psnr_reduction(d)
        parts += [f"{tab} {x.dataset}: Ours {x.ours:.1f} vs {x.baseline} {x.lowest:.1f} dB ({100 * x.reduction:+.0f} %)"
                  for x in r.itertuples()]
        ok += [bool(x > reduction) for x in r.reduction]
    if not ok:
        raise Inconclusive("no dataset with both an 'ours' row and a baseline row in Table II")
    return "; ".join(parts), all(ok)


def pld_muted_recovers(tables: Tables, name: str, *, ratio: float = PLD_MUTED_RATIO) -> tuple[str, bool]:
    """The paper's "PLD keeps accuracy but its muted attack recovers the data": the attacker who
    ignores PLD's pruned entries (PLD-muted) reconstructs with a median PSNR at least ``ratio`` times
    PLD's against the plain attacker, on every dataset (the paper: 1.9-2.5 times; 18.49 dB against
    9.57 on MNIST in Table II[A])."""
    d = table(tables, name)
    pld, muted, none = _psnr(d, "pld"), _psnr(d, "pld", muted=True), _psnr(d, "none")
    dss = [k for k in muted.index if k in pld.index]
    if not dss:
        raise Inconclusive(f"no dataset with both a plain and a muted 'pld' row in {name}")
    meas = "; ".join(f"{k}: PLD {pld[k]:.1f} -> muted {muted[k]:.1f} dB"
                     + (f" (undefended {none[k]:.1f})" if k in none.index else "") for k in dss)
    return meas, all(muted[k] >= ratio * pld[k] for k in dss)


# --- Table I -------------------------------------------------------------------------------------

def muted_table1(tables: Tables, *, margin: float = MUTED_GAIN_DB) -> tuple[str, bool]:
    """Table I's setting: the muted attacker gains less than ``margin`` dB on every dataset."""
    d = table(tables, "table1_threat_model").set_index(["dataset", "column"]).psnr
    ds = d.index.get_level_values(0).unique()
    parts = [f"{k}: {d[(k, 'ours (perturbed)')]:.1f} -> muted {d[(k, 'ours, muted attacker')]:.1f}" for k in ds]
    return "; ".join(parts) + " dB", bool(all(d[(k, "ours, muted attacker")] - d[(k, "ours (perturbed)")] < margin
                                              for k in ds))


# --- Section 4: risk, root set, slicing ----------------------------------------------------------

def small_root_enough(tables: Tables, *, tolerance: float = ROOT_RISK_TOLERANCE) -> tuple[str, bool]:
    """Every root-set size of Table III[B] estimates the normalised risk (of Chapter 2's DLG LeNet)
    within ``tolerance``."""
    d = table(tables, "table3b_root_size")
    return (f"risk rel. error {d['risk rel.err'].max() * 100:.1f}% at most over root sizes {list(d['root size'])}",
            bool(d["risk rel.err"].max() < tolerance))


#: the paper's GIA scale (Inverting Gradients, 1000 Adam steps, the width-64 ConvNet)
GIA_SCALE = {"iterations": 1000, "width": 64}


def gia_slicing_pairs(tables: Tables) -> dict:
    """Per dataset, Table III[A] at the GIA scale: the PSNR of risk slicing (Table II[B]'s plain
    Ours, ``attacks_ig``) and of layer-size slicing (``attacks_table3``, III[A]) on the same test
    images (joined on ``index``), ``{dataset: DataFrame(index, psnr_risk, psnr_size)}``; empty where
    either table is absent or holds no such victims (the optional tables of the claim)."""
    ig, t3 = tables.get("attacks_ig"), tables.get("attacks_table3")
    if ig is None or t3 is None or ig.empty or t3.empty:
        return {}
    at = lambda d: (d.iterations == GIA_SCALE["iterations"]) & (d.width == GIA_SCALE["width"]) & (~d.muted.astype(bool))
    risk = ig[at(ig) & (ig.row == "Ours")]
    size = t3[at(t3) & (t3.table == "III[A]") & (t3.setting == "layer size")]
    out = {}
    for ds in dict.fromkeys(size.dataset):
        j = risk[risk.dataset == ds][["index", "psnr"]].merge(size[size.dataset == ds][["index", "psnr"]], on="index",
                                                               suffixes=("_risk", "_size"))
        if len(j):
            out[ds] = j
    return out


def risk_vs_size(tables: Tables, *, margin: float = MARGIN_DB) -> tuple[str, bool]:
    """Risk slicing protects better than size slicing: lower PSNR by more than ``margin`` dB.

    Decided at the paper's GIA scale (``attacks_ig`` and ``attacks_table3``: the median over the
    victims both slicings were attacked on, per dataset, on every dataset). Where that has not run,
    Chapter 3's small-regime table (``table3a_slicing``: a width-16 ConvNet, 120 steps) is quoted but
    decides nothing: inconclusive."""
    d = table(tables, "table3a_slicing").set_index("setting").psnr
    r, z = d["ours, risk slicing"], d["ours, size slicing"]
    small = f"small regime (width-16 ConvNet): risk slicing {r:.2f} vs size slicing {z:.2f} dB"
    pairs = gia_slicing_pairs(tables)
    if not pairs:
        raise Inconclusive(f"not run at the paper's GIA scale; {small}")
    med = {ds: (float(j.psnr_risk.median()), float(j.psnr_size.median()), len(j)) for ds, j in pairs.items()}
    meas = "; ".join(f"{ds} {a:.2f} vs {b:.2f} dB ({n} victims)" for ds, (a, b, n) in med.items())
    return (f"Inverting Gradients PSNR at the GIA scale (1000 Adam steps, ConvNet-64), risk vs size slicing on the "
            f"same victims: {meas}; {small}", all(a < b - margin for a, b, _ in med.values()))


# --- Section 5: compensation, clipping, convergence ----------------------------------------------

def comp_reduces_error(tables: Tables) -> tuple[str, bool]:
    """With our variance, compensation brings one aggregate closer to the clean one."""
    r = table(tables, "compensation_spectrum").set_index("variance").loc["ours"]
    return (f"relative error of the aggregate {r.err_perturbed:.2f} -> {r.err_compensated:.2f}",
            bool(r.err_compensated < r.err_perturbed))


def paper_variance_harmful(tables: Tables) -> tuple[str, bool]:
    """With the paper's (m² too large) variance compensation makes the aggregate worse."""
    d = table(tables, "compensation_spectrum")
    r = d[d.variance.str.startswith("paper")].iloc[0]
    return (f"with the paper's variance: error {r.err_perturbed:.2f} -> {r.err_compensated:.2f}, "
            f"{int(r.dropped)} direction(s) dropped", bool(r.err_compensated > r.err_perturbed))


def q_matters(tables: Tables) -> tuple[str, bool]:
    """A square matrix (Q = 1) compensates worse than some Q > 1."""
    d = table(tables, "table3d_q").set_index("Q").err_compensated
    return "; ".join(f"Q={q}: {v:.3f}" for q, v in d.items()), bool(d.loc[1] > d.drop(1).min())


def clipping_stops_denoising(tables: Tables, *, margin: float = MARGIN_DB) -> tuple[str, bool]:
    """Without clipping, the attacker's own compensation of one client's update gains > ``margin`` dB."""
    d = table(tables, "table3e_clipping")
    r = d[d.B == "none"].iloc[0]
    return (f"without clipping the attacker's own compensation gives {r.psnr_dlg_compensated:.2f} dB "
            f"vs {r.psnr_dlg:.2f} dB without it", bool(r.psnr_dlg_compensated > r.psnr_dlg + margin))


def bound_holds(tables: Tables) -> tuple[str, bool]:
    """Sec. 5D: the average squared gradient norm stays under the bound in every setting."""
    d = table(tables, "convergence")
    return f"{int(d.holds.sum())}/{len(d)} settings satisfy the bound", bool(d.holds.all())


def variance_derivation(tables: Tables, *, tolerance: float = VARIANCE_TOLERANCE) -> tuple[str, bool]:
    """Measured aggregate noise energy equals the derived σ²(k/s)Σw_i² (times P) within ``tolerance``."""
    d = table(tables, "convergence")
    d = d[(d.sigma > 0) & (~d.compensated.astype(bool))]
    if not len(d):
        raise Inconclusive("no uncompensated run with noise in the table")
    rel = (d.psi / d.psi_theory - 1).abs().max()
    return f"measured / derived aggregate noise energy within {100 * rel:.1f}%", bool(rel < tolerance)


# --- at the paper's scale (Chapter 8: 2000 rounds, calibrated setting, mean over seeds) ----------

#: tables a claim reads where they exist, and does without (CIFAR-10's FedAvg cells at the paper's
#: partition take one to two hours of a core each and arrive one by one; the GIA-scale attacks of
#: Table III[A] minutes a victim)
OPTIONAL_TABLES = ("table2a_cifar", "attacks_ig", "attacks_table3")


def _fedavg_table(tables: Tables) -> pd.DataFrame:
    """Table II[A]'s FedAvg cells at the paper's scale: ``table2a_acc`` (MNIST, Fashion-MNIST) and,
    where it exists, ``table2a_cifar`` (CIFAR-10)."""
    d = table(tables, "table2a_acc")
    c = tables.get("table2a_cifar")
    if c is not None and not c.empty:
        c = c[~fewer_rounds(c)]   # a cell over the budget (run at fewer rounds) is no 2000-round ACC
    return d if c is None or c.empty else pd.concat([d, c], ignore_index=True)


def _mean_acc(d: pd.DataFrame) -> pd.Series:
    """Mean final accuracy per (dataset, row) of a campaign table."""
    return d.groupby(["dataset", "row"], sort=False).final_accuracy.mean()


def _learnt_datasets(acc: pd.Series) -> list:
    return [ds for ds in dict.fromkeys(acc.index.get_level_values(0)) if acc.get((ds, "none"), 0.0) >= LEARNT]


def _seeds(d: pd.DataFrame) -> str:
    n = d.groupby(["dataset", "row"]).seed.nunique()
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"


def paper_scale_ours_accuracy(tables: Tables, *, tolerance: float = ACC_TOLERANCE) -> tuple[str, bool]:
    """The paper's "< 2 % accuracy loss": Ours' mean accuracy within ``tolerance`` of undefended on
    every dataset whose undefended run learnt (``table2a_acc`` and ``table2a_cifar``)."""
    d = _fedavg_table(tables)
    acc = _mean_acc(d)
    dss = [ds for ds in _learnt_datasets(acc) if (ds, "ours") in acc]
    if not dss:
        raise Inconclusive("no dataset with a learnt undefended run and an 'ours' run")
    meas = "; ".join(f"{ds}: {acc[(ds, 'none')]:.3f} vs {acc[(ds, 'ours')]:.3f}" for ds in dss)
    return f"mean over {_seeds(d)} seeds: {meas}", all(acc[(ds, "none")] - acc[(ds, "ours")] < tolerance for ds in dss)


def paper_scale_dp_chance(tables: Tables, *, chance: float = CHANCE_ACC) -> tuple[str, bool]:
    """The paper's DP columns at chance: DP-G and DP-L below ``chance`` (``table2a_acc`` and
    ``table2a_cifar``)."""
    d = _fedavg_table(tables)
    acc = _mean_acc(d)
    cells = [(ds, r) for ds in dict.fromkeys(acc.index.get_level_values(0)) for r in ("dp-g", "dp-l") if (ds, r) in acc]
    if not cells:
        raise Inconclusive("no DP run in the table")
    return "; ".join(f"{ds} {r}: {acc[(ds, r)]:.3f}" for ds, r in cells), all(acc[c] < chance for c in cells)


def paper_scale_gc_loses(tables: Tables, *, loss: float = GC_LOSS) -> tuple[str, bool]:
    """The paper's GC column: GC loses more than ``loss`` of accuracy (paper: 55 points)."""
    d = _fedavg_table(tables)
    acc = _mean_acc(d)
    dss = [ds for ds in _learnt_datasets(acc) if (ds, "gc") in acc]
    if not dss:
        raise Inconclusive("no dataset with a learnt undefended run and a GC run")
    return ("; ".join(f"{ds}: {acc[(ds, 'none')]:.3f} -> {acc[(ds, 'gc')]:.3f}" for ds in dss),
            all(acc[(ds, "none")] - acc[(ds, "gc")] > loss for ds in dss))


def paper_scale_pld_accuracy(tables: Tables, *, tolerance: float = PLD_TOLERANCE) -> tuple[str, bool]:
    """PLD keeps accuracy: within ``tolerance`` of undefended (paper: about 4 points lower)."""
    d = table(tables, "table2a_pld")
    acc = _mean_acc(pd.concat([_fedavg_table(tables), d], ignore_index=True))
    dss = [ds for ds in _learnt_datasets(acc) if (ds, "pld") in acc]
    if not dss:
        raise Inconclusive("no dataset with a learnt undefended run and a PLD run")
    return ("; ".join(f"{ds}: {acc[(ds, 'none')]:.3f} vs {acc[(ds, 'pld')]:.3f}" for ds in dss),
            all(acc[(ds, "none")] - acc[(ds, "pld")] < tolerance for ds in dss))


def paper_scale_ours_round_time(tables: Tables, *, limit: float = ROUND_TIME_LIMIT) -> tuple[str, bool]:
    """The paper's "< 10 % round-time overhead": the time inside Ours' hooks over the undefended
    round of the same dataset and seed (timed inside each run, so not shifted by load changes
    between runs)."""
    d = table(tables, "table2a_acc")
    none = d[d.defense == "none"].set_index(["dataset", "seed"]).mean_round_time
    o = d[d.defense == "ours"]
    share = [(r.defense_round_start + r.defense_client + r.defense_server) / none[(r.dataset, r.seed)]
             for r in o.itertuples() if (r.dataset, r.seed) in none.index]
    if not share:
        raise Inconclusive("no 'ours' run with an undefended run of the same dataset and seed")
    m = sum(share) / len(share)
    return f"defense time {100 * m:.2f} % of the undefended round (mean of {len(share)} runs)", bool(m < limit)


def paper_scale_compensation_helps(tables: Tables) -> tuple[str, bool]:
    """Fig. 2 at 2000 rounds: compensated Ours (``table2a_acc``) at least as accurate as uncompensated
    (``fig2_table3de``), mean over seeds, MNIST."""
    f2, t2 = table(tables, "fig2_table3de"), table(tables, "table2a_acc")
    unc = f2[(f2.dataset == "mnist") & (f2.row == "uncompensated")].final_accuracy
    com = t2[(t2.dataset == "mnist") & (t2.row == "ours")].final_accuracy
    if not len(unc) or not len(com):
        raise Inconclusive("no MNIST pair of compensated and uncompensated runs")
    return f"compensated {com.mean():.3f} vs uncompensated {unc.mean():.3f}", bool(com.mean() >= unc.mean())


def paper_scale_q1_loses(tables: Tables, *, loss: float = Q1_LOSS) -> tuple[str, bool]:
    """Table III[D]: Q = 1 loses more than ``loss`` accuracy against Q = 6 (paper: 3.95 points)."""
    f2 = table(tables, "fig2_table3de")
    acc = f2[f2.row.str.startswith("Q=")].groupby("row").final_accuracy.mean()
    if "Q=1" not in acc or "Q=6" not in acc:
        raise Inconclusive("Q = 1 or Q = 6 not run")
    return "; ".join(f"{q}: {v:.3f}" for q, v in acc.items()), bool(acc["Q=6"] - acc["Q=1"] > loss)


def paper_scale_clipping_accuracy(tables: Tables, *, tolerance: float = CLIPPING_TOLERANCE) -> tuple[str, bool]:
    """Table III[E]: clipping costs less than ``tolerance`` accuracy against no clipping (Q = 6)."""
    f2 = table(tables, "fig2_table3de")
    acc = f2.groupby("row").final_accuracy.mean()
    if "clipping" not in acc or "Q=6" not in acc:
        raise Inconclusive("clipping or its unclipped run not run")
    return (f"clipping {acc['clipping']:.3f} vs no clipping {acc['Q=6']:.3f}",
            bool(acc["Q=6"] - acc["clipping"] < tolerance))


def beyond_shrink_trains(tables: Tables, *, tolerance: float = SHRINK_TOLERANCE) -> tuple[str, bool]:
    """Beyond the paper: Ours with per-layer optimal-shrinkage compensation at least as accurate as
    uncompensated Ours and within ``tolerance`` of undefended (MNIST, 2000 rounds, mean over seeds)."""
    cr, f2, t2 = table(tables, "compensation_rules"), table(tables, "fig2_table3de"), table(tables, "table2a_acc")
    shrink = cr[(cr.dataset == "mnist") & (cr.row == "per-layer shrink")].final_accuracy
    unc = f2[(f2.dataset == "mnist") & (f2.row == "uncompensated")].final_accuracy
    none = t2[(t2.dataset == "mnist") & (t2.row == "none")].final_accuracy
    if not len(shrink) or not len(unc) or not len(none):
        raise Inconclusive("a shrinkage, uncompensated or undefended MNIST run is missing")
    if none.mean() < LEARNT:
        raise Inconclusive("the undefended run did not learn at this scale")
    return (f"shrink {shrink.mean():.3f}, uncompensated {unc.mean():.3f}, undefended {none.mean():.3f}",
            bool(shrink.mean() >= unc.mean() and none.mean() - shrink.mean() <= tolerance))


#: the three readings of the paper's noise variance (Chapter 8.3): the table and rows of each
NOISE_READINGS = {"gradient units": ("table2a_acc", {"dp-g": "dp-g", "dp-l": "dp-l", "ours": "ours"}),
                  "update units": ("noise_readings", {"dp-g": "dp-g, update units", "dp-l": "dp-l, update units",
                                                      "ours": "ours, update units"}),
                  "every local step": ("noise_readings", {"dp-g": "dp-g, every local step",
                                                          "dp-l": "dp-l, every local step"})}


def noise_reading_dp_chance(tables: Tables, *, chance: float = CHANCE_ACC) -> tuple[str, bool]:
    """Chapter 8.3: some reading of the paper's noise (:data:`NOISE_READINGS`) takes DP-G and DP-L
    below ``chance`` while Ours, where that reading has an Ours run, still learns (:data:`LEARNT`):
    the paper's DP columns (about 10 %) beside its Ours column (90 %). MNIST, 2000 rounds, mean over
    seeds."""
    tabs = {n: table(tables, n) for n in ("noise_readings", "table2a_acc")}
    readings = []
    for reading, (name, rows) in NOISE_READINGS.items():
        t = tabs[name]
        t = t[t.dataset == "mnist"]
        if "rounds" in t:
            t = t[~fewer_rounds(t)]
        acc = t.groupby("row").final_accuracy.mean()
        got = {k: float(acc[r]) for k, r in rows.items() if r in acc.index}
        if "dp-g" in got and "dp-l" in got:
            readings.append((reading, got))
    if not readings:
        raise Inconclusive("no reading with both DP runs on MNIST")
    meas = "; ".join(f"{r}: " + ", ".join(f"{k} {v:.3f}" for k, v in g.items()) for r, g in readings)
    hit = [r for r, g in readings if max(g["dp-g"], g["dp-l"]) < chance and g.get("ours", 1.0) >= LEARNT]
    return meas, bool(hit)


def beyond_shrink_error(tables: Tables) -> tuple[str, bool]:
    """Beyond the paper: per-layer optimal shrinkage brings the aggregate closer to the clean one than
    the paper's global projection (Q = 6) at every measured round of a real run (mean error over the
    noise draws, ``compensation_rules_error``)."""
    e = table(tables, "compensation_rules_error")
    m = e.groupby(["round", "method"]).error.mean().unstack("method")
    cols = ["per-layer shrink", "paper (global, Q = 6)"]
    if any(c not in m for c in cols) or not len(m):
        raise Inconclusive("the shrinkage or the paper's projection was not measured")
    meas = "; ".join(f"round {r}: {x[cols[0]]:.3f} vs {x[cols[1]]:.3f}" for r, x in m[cols].iterrows())
    return f"relative error, shrink vs paper: {meas}", bool((m[cols[0]] < m[cols[1]]).all())


#: the groups of :data:`CLAIMS`, in the order the summary discusses them
GROUPS = {"protection": "The plain attacker",
          "adaptive": "The attacker who knows the defense",
          "accuracy": "Accuracy and cost at the paper's scale",
          "risk": "Leakage risk and slicing",
          "compensation": "Compensation, clipping and convergence",
          "beyond": "Beyond the paper"}


@dataclass(frozen=True)
class Claim:
    """One claim: its words, the paper's section, the check deciding it, a short unique ``key`` the
    chapters name it by and its :data:`GROUPS` entry."""
    claim: str
    section: str
    check: Callable[[Tables], tuple[str, bool]]
    key: str = ""
    group: str = ""


#: the frontier's first goal, read on DLG's PSNR: median PSNR below this (dB) ...
FRONTIER_MAX_PSNR = 15.0
#: ... with accuracy within this of undefended (both goals)
FRONTIER_MAX_LOSS = 0.02
#: the frontier's goal read against the no-information floor: the strongest single-round attacker
#: identifies at most this fraction of the victims among 100 same-class images (2 / N, chance 1 / N) ...
IDENTIFY_MAX = 0.02
#: ... and gains at most this over the floor (dB) on every victim (its worst victim's psnr_gain)
GAIN_MAX_DB = 1.0


def paired_loss(base: pd.Series, point: pd.Series) -> pd.Series:
    """The accuracy a defense costs, in points, paired by seed: ``100 * (base - point)`` on the seeds
    (the index of both: final accuracy by seed) that both runs have, sorted by seed. Pairing removes
    the seed's own effect (its partition and initialisation), which on Fashion-MNIST moves an
    undefended run by 3 points; a seed only one side has is left out, not compared with a mean."""
    for name, v in (("base", base), ("point", point)):
        if not v.index.is_unique:
            raise FedshieldError(f"{name}: one accuracy per seed, got seeds {list(v.index)}")
    seeds = sorted(set(base.index) & set(point.index))
    return 100 * (base.loc[seeds].astype(float) - point.loc[seeds].astype(float))


def _frontier_datasets(points: pd.DataFrame):
    """``(dataset, undefended accuracy, the other points)`` of each dataset of the frontier's ``points``
    that has an undefended accuracy."""
    for ds, g in points.groupby("dataset", sort=False):
        base = g[g.family == "undefended"].acc
        if len(base) and not base.isna().all():
            yield ds, float(base.iloc[0]), g[g.family != "undefended"]


def frontier_goal(points: pd.DataFrame, *, max_psnr: float = FRONTIER_MAX_PSNR,
                  max_loss: float = FRONTIER_MAX_LOSS) -> dict:
    """Per dataset of the frontier's ``points`` (``frontier_points``: ``dataset, family, setting,
    acc, psnr_median``, optionally ``psnr_max``, one ``family == "undefended"`` row each):
    ``{"base": undefended accuracy, "points": the strengths with both an accuracy and an attack,
    "meets": those with a median below ``max_psnr`` dB within ``max_loss`` of ``base``,
    "meets_every_victim": those of "meets" whose *worst* victim (``psnr_max``) is below ``max_psnr``
    too (``None`` without a ``psnr_max`` column): a median hides a minority of victims
    reconstructed in full, "attack_only": the strengths with an attack but no accuracy}``. A dataset
    without an undefended accuracy is left out."""
    out = {}
    for ds, base, pts in _frontier_datasets(points):
        both = pts[pts.acc.notna() & pts.psnr_median.notna()]
        meets = both[(both.psnr_median < max_psnr) & (both.acc >= base - max_loss)]
        out[ds] = {"base": base, "points": both, "all": pts, "meets": meets,
                   "meets_every_victim": meets[meets.psnr_max < max_psnr] if "psnr_max" in meets else None,
                   "attack_only": pts[pts.acc.isna() & pts.psnr_median.notna()]}
    return out


def frontier_goal_identified(points: pd.DataFrame, *, max_identified: float = IDENTIFY_MAX,
                             max_gain: float = GAIN_MAX_DB, max_loss: float = FRONTIER_MAX_LOSS) -> dict:
    """The frontier's goal read against the no-information floor, per dataset of ``points``
    (:func:`fedshield.book.frontier.frontier_points`: ``acc``, the strongest attacker's
    ``identified`` and ``gain_max``, its worst victim's gain over the floor): ``{"base", "points"
    (strengths with an accuracy and an attack), "meets" (within ``max_loss`` of undefended accuracy,
    at most ``max_identified`` of the victims identified and no victim more than ``max_gain`` dB
    above the floor), "private_no_accuracy" (strengths that meet the privacy half but have no
    accuracy yet)}``. A dataset without an undefended accuracy is left out."""
    out = {}
    for ds, base, pts in _frontier_datasets(points):
        scored = pts[pts.identified.notna() & pts.gain_max.notna()]
        private = scored[(scored.identified <= max_identified + 1e-12) & (scored.gain_max <= max_gain)]
        both = scored[scored.acc.notna()]
        meets = private[private.acc.notna() & (private.acc >= base - max_loss - 1e-12)]
        out[ds] = {"base": base, "points": both, "all": pts, "meets": meets,
                   "private_no_accuracy": private[private.acc.isna()]}
    return out


def beyond_frontier_identified(tables: Tables, *, required: Sequence[str] = ("mnist", "fmnist", "cifar10")
                               ) -> tuple[str, bool]:
    """Beyond the paper: one configuration within 2 points of undefended accuracy at which the
    strongest single-round attacker identifies at most 2 % of the victims and gains at most 1 dB over
    the floor on every victim, on every dataset of ``required`` (:func:`frontier_goal_identified`).
    A measured dataset where no point meets it, and none could (no strength meets the privacy half
    while its accuracy is still unmeasured): not supported, whatever the others say. A dataset still
    waiting for such a strength's accuracy, or not measured at all: inconclusive."""
    d = table(tables, "frontier_points")
    for col in ("identified", "gain_max"):
        if col not in d:
            raise Inconclusive(f"frontier_points has no {col} column (the floor-relative measure)")
    parts, status, common = [], {}, None
    for ds, f in frontier_goal_identified(d).items():
        pts, meets, waiting = f["points"], f["meets"], f["private_no_accuracy"]
        if not len(pts) and not len(waiting):
            continue
        parts.append(f"{ds}: {len(meets)} of {len(pts)} strengths ({', '.join(meets.setting) or 'none'})"
                     + (f"; private, accuracy not measured: {', '.join(waiting.setting)}" if len(waiting) else ""))
        status[ds] = "meets" if len(meets) else "waiting" if len(waiting) else "fails"
        common = set(meets.setting) if common is None else common & set(meets.setting)
    if not status:
        raise Inconclusive("no frontier point with an accuracy and a scored attack yet")
    text = "; ".join(parts)
    if "fails" in status.values():
        return text, False
    missing = [r for r in required if r not in status]
    if "waiting" in status.values() or missing:
        raise Inconclusive(text + (f"; not measured yet: {', '.join(missing)}" if missing else ""))
    both = sorted(common or ())
    return text + f"; on every one: {', '.join(both) or 'none'}", bool(both)


def pareto_front(points: pd.DataFrame, *, acc_tol: float = 0.0, psnr_tol: float = 0.0,
                 measure: str = "psnr_median") -> pd.Series:
    """Which of ``points`` (``acc``, ``psnr_median``; one dataset) no other point dominates. ``j``
    dominates ``i`` when it is as accurate up to ``acc_tol`` (a fraction) and more private by more
    than ``psnr_tol`` dB, or more accurate by more than ``acc_tol`` and as private up to
    ``psnr_tol``: differences inside the tolerances (the seed spread of an accuracy, the spread of
    reconstructions that carry no information) decide nothing, and two points that close are both
    kept. With zero tolerances this is the usual Pareto front. A point without both halves is on
    no front (``False``)."""
    if acc_tol < 0 or psnr_tol < 0:
        raise FedshieldError(f"acc_tol and psnr_tol must be >= 0, got {acc_tol}, {psnr_tol}")
    ok = (points.acc.notna() & points[measure].notna()).to_numpy()
    a, p = points.acc.to_numpy(float)[:, None], points[measure].to_numpy(float)[:, None]
    # [i, j]: j dominates i
    dom = ((a.T >= a - acc_tol) & (p.T < p - psnr_tol)) | ((a.T > a + acc_tol) & (p.T <= p + psnr_tol))
    dom &= ok[None, :]
    return pd.Series(ok & ~dom.any(axis=1), index=points.index)


def frontier_dominance(points: pd.DataFrame, budgets: Sequence[float] = (0.01, 0.02, 0.05, 1.0)) -> pd.DataFrame:
    """The question "which defense dominates at equal accuracy?", read off the frontier's
    ``points`` (:func:`frontier_goal`'s input): per dataset and accuracy budget ``b`` (a fraction;
    1.0 = any accuracy), each family's strength with the lowest adaptive PSNR among those within
    ``b`` of the undefended accuracy. Columns ``dataset, budget, family, setting, acc, psnr_median,
    lowest`` (``lowest``: the lowest PSNR of that dataset and budget). A family with no strength in
    a budget has no row there."""
    if any(not 0 < b <= 1 for b in budgets):
        raise FedshieldError(f"budgets must be accuracy fractions in (0, 1], got {list(budgets)}")
    rows = []
    for ds, f in frontier_goal(points).items():
        pts = f["points"]
        for b in budgets:
            ok = pts[pts.acc >= f["base"] - b - 1e-12]
            if not len(ok):
                continue
            best = ok.loc[ok.groupby("family", sort=False).psnr_median.idxmin()]
            low = best.psnr_median.min()
            rows += [dict(dataset=ds, budget=b, family=r.family, setting=r.setting, acc=r.acc,
                          psnr_median=r.psnr_median, lowest=bool(r.psnr_median == low)) for r in best.itertuples()]
    return pd.DataFrame(rows, columns=["dataset", "budget", "family", "setting", "acc", "psnr_median", "lowest"])


def beyond_frontier_goal(tables: Tables, *, max_psnr: float = FRONTIER_MAX_PSNR, max_loss: float = FRONTIER_MAX_LOSS,
                         required: Sequence[str] = ("mnist", "fmnist", "cifar10"),
                         every_victim: bool = False) -> tuple[str, bool]:
    """Beyond the paper: one configuration keeps the adaptive attacker's median PSNR
    below ``max_psnr`` dB with accuracy within ``max_loss`` of undefended on every dataset of
    ``required`` (the same setting on all of them) (``frontier_points``, Chapter 10.5); the measurement names them. A measured
    dataset without such a configuration: not supported; all measured ones with one but a
    ``required`` dataset not on the frontier yet (no point with both an accuracy and an attack):
    inconclusive (the goal is stated for all three). ``every_victim``: the stricter reading, every
    attacked victim below ``max_psnr`` (the table's ``psnr_max``; inconclusive without it)."""
    d = table(tables, "frontier_points")
    if every_victim and "psnr_max" not in d:
        raise Inconclusive("frontier_points has no psnr_max (the worst victim) column")
    parts, ok, measured, common = [], [], set(), None
    for ds, f in frontier_goal(d, max_psnr=max_psnr, max_loss=max_loss).items():
        pts, meets = f["points"], f["meets_every_victim" if every_victim else "meets"]
        if not len(pts):
            continue
        measured.add(ds)
        parts.append(f"{ds}: {len(meets)} of {len(pts)} strengths ({', '.join(meets.setting) or 'none'})")
        ok.append(len(meets) > 0)
        common = set(meets.setting) if common is None else common & set(meets.setting)
    if not ok:
        raise Inconclusive("no frontier point with both an accuracy and an attack yet")
    # a dataset is on the frontier when one of its points has both halves, not when it has a row
    missing = [r for r in required if r not in measured]
    if all(ok) and missing:
        raise Inconclusive(f"{'; '.join(parts)}; not on the frontier yet: {', '.join(missing)}")
    # the goal is one configuration for every dataset, not one per dataset
    both = sorted(common or ())
    return "; ".join(parts) + f"; on every one: {', '.join(both) or 'none'}", all(ok) and bool(both)


CLAIMS: tuple[Claim, ...] = (
    # the plain attacker (Tables I and II at the paper's attack scale)
    Claim("Undefended DLG reconstructs the image (LeNet)", "Table II[A]", lambda t: undefended_leaks(t, "table2a"),
          key="leaks_dlg", group="protection"),
    Claim("Undefended Inverting Gradients reconstructs (ConvNet)", "Table II[B]",
          lambda t: undefended_leaks(t, "table2b"), key="leaks_gia", group="protection"),
    Claim("Ours lowers DLG's PSNR far below the undefended one", "Table II[A]", lambda t: ours_protects(t, "table2a"),
          key="protects_dlg", group="protection"),
    Claim("Ours lowers GIA's PSNR far below the undefended one", "Table II[B]", lambda t: ours_protects(t, "table2b"),
          key="protects_gia", group="protection"),
    Claim(f"Ours lowers DLG's PSNR, victim by victim (paired, p < {P_VALUE:g})", "Table II[A]",
          lambda t: ours_protects_paired(t, "A"), key="protects_paired", group="protection"),
    Claim(f"Ours' PSNR is more than {100 * HEADLINE_REDUCTION:.0f} % lower than every baseline defense's",
          "Conclusion, Table II", headline_reduction, key="headline", group="protection"),
    # the attacker who knows the defense
    Claim("Locating the noisy slices does not help the attacker (DLG)", "Table II[A] muted",
          lambda t: muted_fails(t, "table2a"), key="muted_dlg", group="adaptive"),
    Claim("... victim by victim (DLG; paired: Ours-muted not above Ours)", "Table II[A] muted",
          lambda t: muted_fails_paired(t, "A"), key="muted_paired", group="adaptive"),
    Claim("... the same, Table I setting (4 datasets)", "Table I", muted_table1, key="muted_table1", group="adaptive"),
    Claim("... the same against Inverting Gradients (ConvNet)", "Table II[B] muted",
          lambda t: muted_fails(t, "table2b"), key="muted_gia", group="adaptive"),
    Claim("PLD's muted attack recovers the data (DLG)", "Table II[A] PLD-muted",
          lambda t: pld_muted_recovers(t, "table2a"), key="pld_muted_dlg", group="adaptive"),
    Claim("PLD's muted attack recovers the data (Inverting Gradients)", "Table II[B] PLD-muted",
          lambda t: pld_muted_recovers(t, "table2b"), key="pld_muted_gia", group="adaptive"),
    # accuracy and cost at the paper's scale (2000 FedAvg rounds)
    Claim("Ours loses under 2 points of accuracy (LeNet, 2000 rounds)", "Table II[A]", paper_scale_ours_accuracy,
          key="ours_accuracy", group="accuracy"),
    Claim("DP-G and DP-L fall to chance (LeNet, 2000 rounds)", "Table II[A]", paper_scale_dp_chance,
          key="dp_chance", group="accuracy"),
    Claim("... under some reading of the paper's noise, while Ours learns (MNIST, 2000 rounds)", "Chapter 8.3",
          noise_reading_dp_chance, key="dp_chance_readings", group="accuracy"),
    Claim("GC loses most of the accuracy (LeNet, 2000 rounds)", "Table II[A]", paper_scale_gc_loses,
          key="gc_loses", group="accuracy"),
    Claim("PLD keeps accuracy (LeNet, 2000 rounds)", "Table II[A]", paper_scale_pld_accuracy,
          key="pld_accuracy", group="accuracy"),
    Claim("Ours adds under 10 % round time", "Table II[A]", paper_scale_ours_round_time, key="round_time",
          group="accuracy"),
    # leakage risk and slicing
    Claim("A small root set suffices to estimate the risk (the risk estimate on Chapter 2's LeNet)", "Table III[B]",
          small_root_enough, key="root_size", group="risk"),
    Claim("Risk-based slicing protects better than layer-size slicing (GIA scale)", "Table III[A]", risk_vs_size,
          key="risk_slicing", group="risk"),
    # compensation, clipping, convergence
    Claim("Compensation brings the aggregate closer to the clean one", "Sec. 5B", comp_reduces_error,
          key="comp_error", group="compensation"),
    Claim("The paper's aggregate variance (m^2 too large) makes compensation harmful (our derivation)", "Sec. 5B",
          paper_variance_harmful, key="paper_variance", group="compensation"),
    Claim("Aggregate noise variance is sigma^2 (k/s) sum w_i^2 (ours; the paper's is m^2 larger)", "Sec. 5B",
          variance_derivation, key="variance", group="compensation"),
    Claim("Q matters: a square matrix (Q=1) compensates worse", "Table III[D]", q_matters, key="q_matters",
          group="compensation"),
    Claim("Compensation improves accuracy over uncompensated training (2000 rounds)", "Fig. 2",
          paper_scale_compensation_helps, key="fig2", group="compensation"),
    Claim("Q = 1 loses accuracy against Q = 6 (2000 rounds)", "Table III[D]", paper_scale_q1_loses, key="q1_loses",
          group="compensation"),
    Claim("Clipping costs under 1 point of accuracy (2000 rounds)", "Table III[E]", paper_scale_clipping_accuracy,
          key="clipping_accuracy", group="compensation"),
    Claim("Without clipping, a server could denoise one client's update (Chapter 5's small-scale DLG)", "Sec. 5C",
          clipping_stops_denoising, key="denoising", group="compensation"),
    Claim("Training with the defense converges within the bound", "Sec. 5D", bound_holds, key="bound",
          group="compensation"),
    # beyond the paper
    Claim("Beyond the paper: per-layer shrinkage compensation trains as well as no compensation, within 1 point "
          "of undefended", "Chapter 10", beyond_shrink_trains, key="shrink_trains", group="beyond"),
    Claim("Beyond the paper: per-layer shrinkage brings a real round's aggregate closer to the clean one than the "
          "paper's projection", "Chapter 10", beyond_shrink_error, key="shrink_error", group="beyond"),
    Claim("Beyond the paper, read on DLG's PSNR (which ignores the floor): a configuration keeps the adaptive DLG "
          "below 15 dB within 2 points of undefended accuracy on MNIST, Fashion-MNIST and CIFAR-10", "Chapter 10.5",
          beyond_frontier_goal, key="frontier",
          group="beyond"),
    Claim("... with every attacked victim below 15 dB, not only the median", "Chapter 10.5",
          lambda t: beyond_frontier_goal(t, every_victim=True), key="frontier_every_victim", group="beyond"),
    Claim("Beyond the paper: a configuration within 2 points of undefended accuracy keeps the strongest single-round "
          "attacker at no more than 2 % of the victims identified and 1 dB over the no-information floor on every "
          "victim (MNIST, Fashion-MNIST, CIFAR-10)", "Chapter 10.5", beyond_frontier_identified,
          key="frontier_identified", group="beyond"),
)


def claim(key: str) -> Claim:
    """The claim of :data:`CLAIMS` with ``key``."""
    found = [c for c in CLAIMS if c.key == key]
    if not found:
        raise FedshieldError(f"no claim with key {key!r}; the keys: {[c.key for c in CLAIMS]}")
    return found[0]


def verdict(tables: Tables, key: str) -> str:
    """The verdict of the claim ``key`` on ``tables`` (one of :data:`VERDICTS`)."""
    return verdict_of(claim(key), tables)["verdict"]


def verdict_of(claim: Claim, tables: Tables) -> dict:
    """One row of the summary: the claim, its section, what was measured and the verdict."""
    try:
        measured, ok = claim.check(tables)
        verdict = "supported" if ok else "NOT supported"
    except MissingTable as e:
        measured, verdict = f"table {e.args[0]!r} not run at this profile", "not tested"
    except Inconclusive as e:
        measured, verdict = str(e), "inconclusive"
    return dict(claim=claim.claim, section=claim.section, measured=measured, verdict=verdict, key=claim.key,
                group=claim.group)


def evaluate(tables: Tables, claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """The verdict table of ``claims`` on ``tables`` (name -> DataFrame, or None if not run); columns
    ``claim, section, measured, verdict, key, group``."""
    return pd.DataFrame([verdict_of(c, tables) for c in claims],
                        columns=["claim", "section", "measured", "verdict", "key", "group"])


def tables_needed(claims: tuple[Claim, ...] = CLAIMS) -> list[str]:
    """The table names the claims read (found by evaluating them on no tables)."""
    names = []
    for c in claims:
        try:
            c.check({})
        except MissingTable as e:
            names.append(e.args[0])
    return list(dict.fromkeys(names + list(OPTIONAL_TABLES)))
