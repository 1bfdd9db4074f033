"""Paragraphs that chapters 2, 3 and 5 still print from the committed tables.

What remains of the summary chapter's generated discussion, while those chapters move to sentences
written by hand with glued numbers (:mod:`fedshield.book.findings`). The numbers come from
:mod:`fedshield.book.findings`; every verdict from :mod:`fedshield.claims` (:func:`fedshield.claims.verdict`),
none is decided here. A missing table or cell reads "not run yet".
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pandas as pd

from .baselines import paper_defense_kwargs
from .book.findings import (Tables, committed_results, f1, f2, fedavg, ig_scale, load_tables, paper_value, pct, present,
                            table3_value, value_range)
from .claims import MARGIN_DB, claim, gia_slicing_pairs, verdict_of
from .errors import FedshieldError
from .experiments.campaign import clip_bound
from .profiles import get_profile
from .report import PAPER_DATASET, paper_table

__all__ = ["NOT_RUN", "committed_results", "load_tables", "value_range", "ITEMS", "standalone", "item_slicing",
           "item_root_set", "item_clipping"]

NOT_RUN = "not run yet"


def _s(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _db(v: float, n: int) -> str:
    return NOT_RUN if n == 0 else f"{v:.1f} dB ({_s(n, 'victim')})"


def acc_seeds(v: float, n: int) -> str:
    return NOT_RUN if n == 0 else f"{pct(v)} % ({_s(n, 'seed')})"


def _verdict(tables: Tables, key: str) -> str:
    """The verdict of claim ``key`` (:mod:`fedshield.claims`), in bold."""
    return f"**{verdict_of(claim(key), tables)['verdict']}**"


def item_slicing(tables: Tables) -> str:
    """Table III[A] at the GIA scale: risk-based against layer-size slicing, with the verdict of
    :func:`fedshield.claims.risk_vs_size` (on the victims both slicings were attacked on)."""
    ig_it, width = ig_scale()
    pairs = {PAPER_DATASET.get(ds, ds): j for ds, j in gia_slicing_pairs(tables).items()}
    got, left = [], []
    for ds in ("MNIST", "Fashion-MNIST", "CIFAR-10"):
        r, z = table3_value(tables, "III[A]", ds, "sensitivity"), table3_value(tables, "III[A]", ds, "layer size")
        if r[1] and z[1]:
            j = pairs.get(ds)   # the (risk, size) medians the verdict reads: on the shared victims where known
            med = (r[0], z[0]) if j is None else (float(j.psnr_risk.median()), float(j.psnr_size.median()))
            got.append((ds, r, z, j, med))
        else:
            left.append(ds)
    head = (f"**Risk-based vs size-based slicing (Table III[A])**, at the paper's GIA scale (Inverting Gradients, "
            f"{ig_it} Adam steps,\nwidth-{width} ConvNet, Ours at ratio {paper_defense_kwargs('ours', 'ig')['ratio']:g}): ")
    if not got:
        return head + f"{NOT_RUN} ({', '.join(left)})."
    paired = lambda j, med: "" if j is None else (
        f", on the {_s(len(j), 'shared victim')} {med[0]:.1f} vs {med[1]:.1f} dB (at most "
        f"{(j.psnr_risk - j.psnr_size).abs().max():.1f} dB apart victim by victim)")
    verdict = _verdict(tables, "risk_slicing")
    sm = present(tables, "table3a_slicing")
    small = ""
    if sm is not None and {"ours, risk slicing, muted attacker", "ours, size slicing, muted attacker"} <= set(sm.setting):
        s = sm.set_index("setting").psnr.astype(float)
        sp = get_profile("slicing", "default")
        small = (f" Against the attacker who locates the slices, Chapter 3's small-scale run (width-{sp.ig_width} ConvNet, "
                 f"{sp.ig_iterations} Adam steps) leaks alike under both "
                 f"slicings ({f1(s['ours, risk slicing, muted attacker'])} vs {f1(s['ours, size slicing, muted attacker'])} dB, "
                 f"undefended {f1(s.get('no defense', float('nan')))}).")
    lay = present(tables, "leakage_risk_layers")
    spread = ("" if lay is None else
              f" The risk *is* unevenly spread (Chapter 2: {lay.share.astype(float).min() * 100:.1f}-"
              f"{lay.share.astype(float).max() * 100:.1f} % of it per tensor),")
    return head + "risk slicing against layer-size slicing, medians " + "; ".join(
        f"{ds} {_db(*r)} vs {_db(*z)}{paired(j, med)} (the paper: {f2(paper_value('III[A]', ds, 'sensitivity', 'PSNR'))} vs "
        f"{f2(paper_value('III[A]', ds, 'layer size', 'PSNR'))} dB)" for ds, r, z, j, med in got) + (
        f"; {', '.join(left)}: {NOT_RUN}" if left else "") + f""". The paper's claim that risk slicing protects
   better (a lower PSNR by more than {MARGIN_DB:g} dB, on the shared victims where both were attacked) is {verdict}.{spread} but against an attacker who does not locate the slices the noised ones destroy the
reconstruction whichever way they were cut.{small}"""


def item_root_set(tables: Tables) -> str:
    """The root set: risk estimation error, boundary shifts, and Table III[B, C] at the GIA scale (the
    spread of the attack's PSNR over each sweep beside the paper's; no verdict)."""
    b, c = present(tables, "table3b_root_size"), present(tables, "table3c_root_bias")
    est = (f"the root-size sweep has {NOT_RUN}" if b is None else
           f"root sets of {int(b['root size'].min())} to {int(b['root size'].max())} images estimate the risk within "
           f"{100 * b['risk rel.err'].astype(float).abs().max():.1f} %")
    if c is None:
        shift = f"the class-biased root set has {NOT_RUN}"
    else:
        top = c.sort_values("bias").iloc[-1]
        shift = (f"a class-biased root set moves the slice boundaries by up to {float(top['max shift %P']):.0f} % of the "
                 f"parameters at bias {float(top['bias']):.1f}")
    gia, partial = [], False
    for tab, rows, what in (("III[B]", [f"root size {n}" for n in (50, 100, 200, 300, 400)], "over root sizes 50-400"),
                            ("III[C]", [f"root bias {x}" for x in (0.1, 0.2, 0.4, 0.6, 1.0)], "over root bias 0.1-1.0")):
        for ds in ("MNIST", "CIFAR-10"):
            vals = [table3_value(tables, tab, ds, r) for r in rows]
            have = [v for v, n in vals if n]
            pap = [paper_value(tab, ds, r, "PSNR") for r in rows]
            partial = partial or len(have) < len(rows)
            if not have:
                gia.append(f"{tab} {ds} {NOT_RUN}")
                continue
            ns = [n for _, n in vals if n]
            if len(have) < len(rows):
                what = "at " + ", ".join(r for r, (_, n) in zip(rows, vals) if n) + " only"
            gia.append(f"{tab} {ds} {value_range(min(have), max(have))} dB {what} ({len(have)} of {len(rows)} rows, "
                       f"{value_range(min(ns), max(ns), '{:d}')} victims each; the paper: "
                       f"{value_range(np.nanmin(pap), np.nanmax(pap))} dB)")
    moves = []
    long3 = present(tables, "table3_long")
    for tab in ("III[B]", "III[C]"):
        for ds in ("MNIST", "CIFAR-10"):
            if long3 is None:
                continue
            v = long3[(long3.table == tab) & (long3.dataset == ds) & (long3.metric == "PSNR")].value.astype(float)
            if len(v) > 1:
                p = paper_table(tab)
                pv = p[(p.dataset == ds) & (p.metric == "PSNR")].value.astype(float)
                moves.append((v.max() - v.min(), pv.max() - pv.min()))
    verdict = ("The sweeps have " + NOT_RUN if not moves else
               f"{'So far the' if partial else 'The'} attack's PSNR moves by at most {max(m for m, _ in moves):.1f} dB "
               f"within a sweep, the paper's by up to {max(p for _, p in moves):.1f} dB")
    lay = present(tables, "leakage_risk_layers")
    fc = "" if lay is None or not (lay.tensor == "fc.weight").any() else (
        f" The authors' ones-vector probe reports the last layer as nearly risk-free, where the Gaussian-probe "
        f"estimate puts {100 * float(lay.set_index('tensor').share['fc.weight']):.1f} % of the risk in its weights (Chapter 2).")
    return f"""**The root set.** {est[0].upper() + est[1:]} (Chapter 2); {shift}. At the paper's GIA scale
(Inverting Gradients on the width-{ig_scale()[1]} ConvNet): {'; '.join(gia)}. {verdict}.{fc}"""


def item_clipping(tables: Tables) -> str:
    """Clipping: the single-update denoising argument (the verdict of
    :func:`fedshield.claims.clipping_stops_denoising`), DLG under clipping, Table III[E]."""
    e = present(tables, "table3e_clipping")
    if e is None:
        small = f"The small-scale clipping experiment (Chapter 5) has {NOT_RUN}."
    else:
        num = e[pd.to_numeric(e.B, errors="coerce").notna()]
        num = num.assign(B=num.B.astype(float))
        none = e[e.B.astype(str) == "none"]
        gain = (float(none.psnr_dlg_compensated.iloc[0]) - float(none.psnr_dlg.iloc[0])) if len(none) else float("nan")
        low = num[num.B <= 10]
        small = (f"At our scale the server's own compensation of one client's update changes DLG's PSNR by {f1(gain)} dB "
                 f"even *without* clipping (Chapter 5), so the claim that without clipping a server could denoise one "
                 f"client's update is {_verdict(tables, 'denoising')} at this scale"
                 + (f"; clipping to B ≤ 10 lowers DLG's PSNR to {f1(low.psnr_dlg.astype(float).min())}-"
                    f"{f1(low.psnr_dlg.astype(float).max())} dB, partly because DLG matches a rescaled gradient." if len(low) else "."))
    clip = fedavg(tables, "fig2_table3de", "mnist", "clipping")
    q6 = fedavg(tables, "fig2_table3de", "mnist", "Q=6")
    gia, left = [], []
    for ds in ("MNIST", "Fashion-MNIST", "CIFAR-10"):
        c, n = table3_value(tables, "III[E]", ds, "clipping"), table3_value(tables, "III[E]", ds, "no clipping")
        if not (c[1] and n[1]):
            left.append(ds)
            continue
        gia.append(f"{ds} {_db(*c)} with clipping against {_db(*n)} without (paper "
                   f"{f2(paper_value('III[E]', ds, 'clipping', 'PSNR'))} vs {f2(paper_value('III[E]', ds, 'no clipping', 'PSNR'))} dB)")
    gia = "; ".join(gia + ([f"{', '.join(left)} {NOT_RUN}"] if left else []))
    return f"""**Clipping (Section 5C).** The paper argues clipping stops a server from denoising a single
client's update. {small} Its cost in training at 2000 rounds (Table III[E], GIA setting,
B = σ√P = {clip_bound('mnist'):.2f}): {acc_seeds(*clip)} with clipping against {acc_seeds(*q6)} without (paper
{f2(paper_value('III[E]', 'MNIST', 'clipping', 'ACC'))} vs {f2(paper_value('III[E]', 'MNIST', 'no clipping', 'ACC'))} %). Inverting Gradients at the paper's scale: {gia}."""


#: the paragraphs :func:`standalone` prints
ITEMS = (item_slicing, item_root_set, item_clipping)


def standalone(item: Callable[[Tables], str], tables: Tables) -> str:
    """One item of the discussion as a paragraph of its own (without its list number and
    indentation), for the chapter whose table it discusses, e.g. ``standalone(item_slicing, t)``."""
    if item not in ITEMS:
        raise FedshieldError(f"standalone: {getattr(item, '__name__', item)!r} is not an item of the discussion")
    return re.sub(r"^\d+\. ", "", item(tables)).replace("\n   ", "\n")
