"""The frontier of Chapter 10 as one table: for every defense and strength, the accuracy after the
run (the FedAvg frontier cells and Table II[A]'s) and the privacy left against the strongest
single-round attacker that was run on it.

Privacy is read against the no-information floor (:mod:`fedshield.experiments.scoring`): for each
attacker the median ``psnr_gain`` over the victims (the PSNR above the best guess made without the
update) and the fraction of victims ``identified`` among 100 same-class test images (chance 1 %).
The attackers are DLG with the adaptive masks (``attacks_frontier``; its identification is known
only for the victims whose reconstruction the table keeps), the noise-aware MAP attacker
(``attacks_frontier_map``) and the learned inversion (``attacks_frontier_learned``); the strongest at
a point is the one with the highest median gain, ties broken by identification; the goal is held
against all of them (the worst victim and the highest identification rate of any). A table an
attacker has not been run into yet leaves its columns NaN.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..experiments import campaign as C
from ..experiments.attack_campaign import attack_plan
from ..report import load_table

__all__ = ["ATTACKERS", "PAPER_ROWS", "family", "attacker_summary", "frontier_points"]

#: the attackers of the frontier: name -> (attack table, row suffix the table gives a setting)
ATTACKERS = {"DLG": "attacks_frontier", "MAP": "attacks_frontier_map", "learned": "attacks_frontier_learned"}
#: the paper-setting rows of the frontier and their defense in Table II[A]'s accuracy tables
PAPER_ROWS = {"DP-G": "dp-g", "GC": "gc", "Ours": "ours", "PLD": "pld"}


def family(setting: str) -> str:
    """The defense family a frontier setting belongs to ('Ours + floor', 'DP-G', ...)."""
    if setting in ("none", "undefended"):
        return "undefended"
    return "Ours + floor" if "floor" in setting else "Ours + jitter" if "jitter" in setting else setting.split(",")[0]


def _setting_rows(tab: Optional[pd.DataFrame], attacker: str) -> pd.DataFrame:
    """An attack table's rows with the frontier setting they attack (``none`` for undefended)."""
    if tab is None or tab.empty:
        return pd.DataFrame()
    t = tab.copy()
    if attacker == "DLG":
        t["setting"] = t.setting.fillna("")
    else:
        t["setting"] = t.setting.where(t.setting.astype(str) != "", t.row)
    t["setting"] = t.setting.replace({"": "none"}).astype(str).str.replace(r"-(map|learned)$", "", regex=True)
    return t


def attacker_summary(profile: str = "default", datasets: Optional[Sequence[str]] = None, *,
                     root=None) -> pd.DataFrame:
    """One row per (dataset, setting, attacker): victims, median PSNR, floor, gain, worst victim's
    gain, identification rate (over the victims with a kept reconstruction) and how many those are."""
    out = []
    for att, name in ATTACKERS.items():
        t = _setting_rows(load_table(name, profile, root=root), att)
        if att == "DLG":   # DLG against the undefended update is Table II[A]'s row
            dlg = load_table("attacks_dlg", profile, root=root)
            if dlg is not None and len(dlg) and "psnr_gain" in dlg:
                none = dlg[(dlg.row == "none") & (dlg.table == "II[A]")].assign(setting="none")
                t = pd.concat([t, none], ignore_index=True) if len(t) else none
        if t.empty or "psnr_gain" not in t:
            continue
        if datasets is not None:
            t = t[t.dataset.isin(datasets)]
        for (ds, st), g in t.groupby(["dataset", "setting"], sort=False):
            ident = g.identified.dropna() if "identified" in g else pd.Series(dtype=float)
            out.append(dict(dataset=ds, setting=st, attacker=att, victims=len(g), psnr=float(g.psnr.median()),
                            psnr_max=float(g.psnr.max()),
                            psnr_floor=float(g.psnr_floor.median()), psnr_gain=float(g.psnr_gain.median()),
                            gain_max=float(g.psnr_gain.max()), identified=float(ident.mean()) if len(ident) else np.nan,
                            ranked=len(ident)))
    return pd.DataFrame(out)


def _accuracy(profile, datasets, seeds, root=None) -> pd.DataFrame:
    """Mean final accuracy (and seeds) per (dataset, setting) from the committed FedAvg tables."""
    rows = []
    fl = load_table("frontier", profile, root=root)
    if fl is not None and len(fl):
        fl = fl[fl.seed.isin(seeds)]
        for (ds, row), g in fl.groupby(["dataset", "row"]):
            rows.append(dict(dataset=ds, setting=row, acc=g.final_accuracy.mean(), seeds=len(g)))
    nn = load_table("noise_needed", profile, root=root)
    if nn is not None and len(nn):
        nn = nn[nn.seed.isin(seeds)]
        for (ds, row), g in nn.groupby(["dataset", "row"]):
            rows.append(dict(dataset=ds, setting=row, acc=g.final_accuracy.mean(), seeds=len(g)))
    paper = [load_table(n, profile, root=root) for n in ("table2a_acc", "table2a_pld")]
    cif = load_table("table2a_cifar", profile, root=root)
    if cif is not None and len(cif):
        paper.append(C.at_paper_scale(cif))
    paper = pd.concat([p for p in paper if p is not None and len(p)], ignore_index=True) if any(
        p is not None and len(p) for p in paper) else pd.DataFrame(columns=["dataset", "row", "seed", "final_accuracy"])
    paper = paper[paper.seed.isin(seeds)]
    for setting, d in {**PAPER_ROWS, "none": "none"}.items():
        for ds, g in paper[paper.row == d].groupby("dataset"):
            rows.append(dict(dataset=ds, setting=setting, acc=g.final_accuracy.mean(), seeds=len(g)))
    acc = pd.DataFrame(rows, columns=["dataset", "setting", "acc", "seeds"])
    return acc[acc.dataset.isin(datasets)] if datasets is not None else acc


def frontier_points(profile: str = "default", datasets: Sequence[str] = ("mnist", "fmnist", "cifar10"), *,
                    seeds: Sequence[int] = (0,), root=None) -> pd.DataFrame:
    """The frontier as Chapter 10 plots it: per (dataset, setting) the family, the accuracy
    (``acc``, mean over ``seeds``), every attacker's median gain and identification rate
    (``gain_<attacker>``, ``identified_<attacker>``), the strongest attacker by median gain (``attacker``,
    its ``psnr_floor``, ``psnr_gain``, ``victims``), and what the goal is held to, over every attacker:
    ``gain_max`` (the worst victim's gain of any attacker) and ``identified`` (the highest identification rate),
    plus DLG's median and worst-victim PSNR (``psnr_median``, ``psnr_max``: the reading the paper's
    tables use, which ignores the floor)."""
    settings = ["none"] + list(PAPER_ROWS) + [r for r, _, _ in C.FRONTIER] + [r for r, _, _ in C.NOISE_NEEDED]
    att = attacker_summary(profile, datasets, root=root)
    acc = _accuracy(profile, datasets, list(seeds), root=root)
    pts = []
    for ds in datasets:
        for st in settings:
            a = att[(att.dataset == ds) & (att.setting == st)] if len(att) else att
            r = acc[(acc.dataset == ds) & (acc.setting == st)]
            if not len(a) and not len(r):
                continue
            row = dict(dataset=ds, family=family(st), setting=st, acc=float(r.acc.iloc[0]) if len(r) else np.nan,
                       seeds=int(r.seeds.iloc[0]) if len(r) else 0)
            for name in ATTACKERS:
                b = a[a.attacker == name] if len(a) else a
                row[f"gain_{name}"] = float(b.psnr_gain.iloc[0]) if len(b) else np.nan
                row[f"identified_{name}"] = float(b.identified.iloc[0]) if len(b) else np.nan
                if name == "DLG":
                    row["psnr_median"] = float(b.psnr.iloc[0]) if len(b) else np.nan
                    row["psnr_max"] = float(b.psnr_max.iloc[0]) if len(b) else np.nan
            if len(a):
                best = a.assign(_i=a.identified.fillna(-1)).sort_values(["psnr_gain", "_i"], ascending=False).iloc[0]
                # the goal holds against every attacker: the highest identification rate and the worst victim of any
                row.update(attacker=best.attacker, victims=int(best.victims), psnr_floor=best.psnr_floor,
                           psnr_gain=best.psnr_gain, gain_max=float(a.gain_max.max()),
                           identified=float(a.identified.max()) if a.identified.notna().any() else np.nan)
            else:
                row.update(attacker=None, victims=0, psnr_floor=np.nan, psnr_gain=np.nan, gain_max=np.nan,
                           identified=np.nan)
            pts.append(row)
    return pd.DataFrame(pts)
