"""The learned-inversion attacker (``fedshield.experiments.learned``) on the cells of the frontier
plan: one cell at a time, each finished cell's victims merged into
``results/tables/<profile>/attacks_frontier_learned.json`` at once; stops starting cells after
``--budget-min``.

    OMP_NUM_THREADS=1 .venv/bin/python tools/learned_campaign.py --datasets mnist fmnist --budget-min 40

Cells: the undefended one (``dlg_config(dataset, "none")``, not in the frontier plan) and the
frontier's defense points, named by the plan's ``setting`` (the defense point: "DP-G", "Ours",
"Ours, ratio 1.0", ...; a muted DLG row's name without "-muted" also works). The learned attacker
uses every entry of the update, so each point is one cell whether DLG's attacker there is muted or
not. Default rows: ``none``, the paper's DP-G / Ours / GC / PLD, and the frontier points
"DP-G, variance 1e-3", "DP-G, variance 1e-4", "Ours, ratio 1.0", "Ours + floor 0.03"; PLD last
(its defense scores every training image's features: the slowest cell).

The table's rows have the columns of the DLG campaign's tables
(``fedshield.experiments.attack_campaign``) with ``attack = "learned"``, ``row`` = the defense
point, ``muted`` False, ``cell`` the learned result's key, ``iterations`` the training epochs,
``evaluations`` the training pairs (one gradient each), ``seconds`` the whole attack's time (pairs,
defense, training, inversion) over the victims, and ``x_true`` / ``x_rec`` for every victim.
``--status`` prints what is done and, per cell, the medians beside DLG's on the same victims
(``attacks_frontier.json``; the undefended cell: ``attacks_dlg.json``) and the floor: the median
PSNR of the best guess made without the update (the victim's class mean over the training split,
or its best constant image), which a network that only reads the label off the update reaches.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time

import numpy as np
import pandas as pd
import torch

from fedshield.data import load_dataset
from fedshield.experiments.attack_campaign import (AttackCell, attack_plan, cell_summary, decode_image, dlg_config,
                                                   encode_image)
from fedshield.experiments.campaign import NOISE_NEEDED, table_lock
from fedshield.experiments.learned import LearnedOptions, learned_config, learned_key, run_learned
from fedshield.metrics import psnr_floor
from fedshield.report import load_table, save_table

NAME = "attacks_frontier_learned"
ROWS = ("none", "DP-G", "DP-G, variance 1e-3", "DP-G, variance 1e-4", "Ours", "Ours, ratio 1.0",
        "Ours + floor 0.03", "GC", "PLD")


def learned_cells(datasets, rows=ROWS, images: int = 8) -> list[AttackCell]:
    """The cells of ``rows`` (defense points, in this order) for each dataset, ``images`` victims."""
    out = []
    for ds in datasets:
        plan = {c.setting: c for c in attack_plan("attacks_frontier", datasets=[ds])}
        plan["none"] = AttackCell(dlg_config(ds, "none"), "none", "frontier", "none")
        for row, d, opts in NOISE_NEEDED:   # the stronger noise of Chapter 10.6
            plan[row] = AttackCell(dlg_config(ds, d, defense_kwargs=opts), row, "frontier", row)
        for r in rows:
            name = r[:-len("-muted")] if r.endswith("-muted") else r
            if name not in plan:
                raise SystemExit(f"no frontier cell {r!r} for {ds}; choose from {sorted(plan)}")
            c = plan[name]
            out.append(dataclasses.replace(c, config=dataclasses.replace(c.config, images=int(images))))
    return out


def dlg_rows(cell: AttackCell, dlg_tables: dict) -> pd.DataFrame:
    """DLG's rows of the same config and victims (the frontier's cell; the undefended: Table II[A]'s)."""
    tab = dlg_tables["attacks_dlg" if cell.setting == "none" else "attacks_frontier"]
    if tab is None or tab.empty:
        return pd.DataFrame()
    key = dataclasses.replace(cell.config, images=8).cache_key()  # the DLG campaigns' cells have 8 victims
    rows = tab[tab.cell == key]
    return rows[rows.victim < cell.config.images]


def table_rows(cell: AttackCell, res: dict, opts: LearnedOptions) -> list[dict]:
    cfg = learned_config(cell.config)
    key = res["key"]
    return [{"key": f"{key}/v{r['victim']:04d}", "cell": key, "table": cell.table, "row": cell.setting,
             "setting": cell.setting, "dataset": cfg.dataset, "defense": cfg.defense, "muted": False,
             "attack": "learned", "model": cfg.model, "width": dict(cfg.model_kwargs).get("width"),
             "iterations": opts.epochs, "images": cfg.images, "victim": int(r["victim"]), "index": r["index"],
             "label": r["label"], "psnr": r["psnr"], "ssim": r["ssim"], "grad_loss": r["grad_loss"],
             "seconds": r["seconds"], "evaluations": int(res["train"]), "label_correct": None,
             "detect_precision": None, "threads": torch.get_num_threads(), "machine": platform.machine(),
             "x_true": encode_image(res["x_true"][r["victim"]]), "x_rec": encode_image(res["x_rec"][r["victim"]])}
            for r in res["rows"]]


def merge(rows: list[dict], profile: str) -> None:
    with table_lock(NAME, profile):
        old = load_table(NAME, profile)
        new = pd.DataFrame(rows)
        tab = new if old is None or old.empty else pd.concat([old[~old.key.isin(set(new.key))], new],
                                                             ignore_index=True)
        save_table(NAME, tab, profile)


def done_victims(cell: AttackCell, opts: LearnedOptions, tab) -> int:
    if tab is None or tab.empty:
        return 0
    got = tab[tab.cell == learned_key(cell.config, opts)]
    return len(set(got.victim.astype(int)) & set(range(cell.config.images)))


def floor_median(rows: pd.DataFrame, public: tuple) -> float:
    """Median over the victims of the PSNR an attacker reaches without the update: the better of the
    victim's best constant image and its class's mean public image (:func:`fedshield.metrics.psnr_floor`)."""
    x = torch.from_numpy(np.stack([decode_image(s) for s in rows.x_true])).flatten(0, 1)   # [V, C, H, W], B = 1
    return float(psnr_floor(x, label=torch.tensor(rows.label.astype(int).to_numpy()), public=public).median())


def status(cells, opts: LearnedOptions, profile: str) -> None:
    tab = load_table(NAME, profile)
    dlg = {n: load_table(n, profile) for n in ("attacks_dlg", "attacks_frontier")}
    done = sum(done_victims(c, opts, tab) for c in cells)
    print(f"{NAME}: {done}/{sum(c.config.images for c in cells)} victims done "
          f"(train {opts.train}, hidden {opts.hidden}, epochs {opts.epochs})")
    print(f"  {'dataset':8s} {'row':22s} {'done':>5s}  {'learned PSNR / SSIM':>20s}  {'DLG PSNR / SSIM':>16s}  "
          f"{'s/victim':>8s}  {'floor PSNR':>10s}")
    public = {}
    for c in cells:
        n = done_victims(c, opts, tab)
        line = f"  {c.config.dataset:8s} {c.setting:22s} {n:>2d}/{c.config.images:<2d}"
        rows = tab[tab.cell == learned_key(c.config, opts)] if n else None
        line += (f"  {cell_summary(rows)['psnr']['median']:8.2f} / {cell_summary(rows)['ssim']['median']:.3f}" if n
                 else f"  {'-':>20s}")
        d = dlg_rows(c, dlg)
        d = d[d.victim.isin(set(rows.victim))] if n and len(d) else d
        if len(d):
            sd = cell_summary(d)
            line += f"  {sd['psnr']['median']:6.2f} / {sd['ssim']['median']:.3f}"
        else:
            line += f"  {'-':>16s}"
        if n:
            ds = c.config.dataset
            if ds not in public:
                public[ds] = load_dataset(ds, "train", progress=False)
            line += f"  {rows.seconds.mean():8.1f}  {floor_median(rows, public[ds]):10.2f}"
        print(line)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["mnist", "fmnist"])
    p.add_argument("--rows", nargs="+", default=list(ROWS), help="defense points (the frontier plan's settings)")
    p.add_argument("--images", type=int, default=8, help="victims per cell (default 8, DLG's)")
    p.add_argument("--train", type=int, default=LearnedOptions.train, help="training pairs (public images)")
    p.add_argument("--epochs", type=int, default=LearnedOptions.epochs)
    p.add_argument("--hidden", type=int, default=LearnedOptions.hidden)
    p.add_argument("--budget-min", type=float, default=40.0, help="start no cell after this many minutes")
    p.add_argument("--profile", default="default")
    p.add_argument("--progress", action="store_true", help="progress bars")
    p.add_argument("--status", action="store_true", help="print what is done, beside DLG, and exit")
    a = p.parse_args(argv)
    opts = LearnedOptions(train=a.train, epochs=a.epochs, hidden=a.hidden).validate()
    cells = learned_cells(a.datasets, a.rows, a.images)
    if not a.status:
        torch.set_num_threads(1)
        t0 = time.monotonic()
        for i, cell in enumerate(cells):
            if done_victims(cell, opts, load_table(NAME, a.profile)) == cell.config.images:
                continue
            if time.monotonic() - t0 > 60 * a.budget_min:
                print(f"[{NAME}] budget of {a.budget_min:.0f} min spent", flush=True)
                break
            s = time.monotonic()
            res = run_learned(cell.config, opts, progress=a.progress)
            merge(table_rows(cell, res, opts), a.profile)
            t = res["timing"]
            ps = np.array([r["psnr"] for r in res["rows"]])
            ss = np.array([r["ssim"] for r in res["rows"]])
            print(f"[{NAME}] {i + 1}/{len(cells)} {cell.config.dataset} {cell.setting}: PSNR median "
                  f"{np.median(ps):.2f} dB, SSIM median {np.median(ss):.3f}; pairs {t['pairs_s']:.0f} s, "
                  f"defense {t['defend_s']:.0f} s, training {t['train_s']:.0f} s "
                  f"({time.monotonic() - s:.0f} s{', cached' if res['cached'] else ''})", flush=True)
    status(cells, opts, a.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
