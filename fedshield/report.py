"""Helpers the book's notebooks share: the paper's numbers, measured tables, image grids.

Measured tables are written per profile to ``results/tables/<profile>/<name>.json`` (or
``$FEDSHIELD_RESULTS/tables/...``) so that the summary chapter can put every measured number beside
the paper's.
"""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FedshieldError


def results_dir(root=None) -> Path:
    """Where measured tables live: ``root`` if given, else ``$FEDSHIELD_RESULTS``, else the
    repository's ``results/``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("FEDSHIELD_RESULTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "results"


def paper_numbers() -> dict:
    """The paper's published numbers and settings (``fedshield/paper_numbers.json``)."""
    with resources.files("fedshield").joinpath("paper_numbers.json").open() as f:
        return json.load(f)


PAPER_TABLES = ("II[A]", "II[B]", "III[A]", "III[B]", "III[C]", "III[D]", "III[E]")


def paper_table(table: str):
    """The paper's published values of ``table`` (one of :data:`PAPER_TABLES`) as a long DataFrame:
    ``dataset, row, x, metric, value, source`` (ACC in percent, ART in percent over undefended,
    PSNR in dB; ``x`` is the swept parameter of Table III[B-D], else None)."""
    import pandas as pd

    if table not in PAPER_TABLES:
        raise FedshieldError(f"unknown paper table {table!r}; choose from {list(PAPER_TABLES)}")
    rows = [r for r in paper_numbers()["values"] if r["table"] == table]
    return pd.DataFrame(rows, columns=["dataset", "row", "x", "metric", "value", "source"])


#: our dataset and defense names -> the paper's
PAPER_DATASET = {"mnist": "MNIST", "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
PAPER_DEFENSE = {"none": "none", "ours": "Ours", "gc": "GC", "dp-g": "DP-G", "dp-l": "DP-L", "pld": "PLD"}


def beside_paper(ours, table: str, *, on: tuple[str, ...] = ("dataset", "row", "metric")):
    """``ours`` (long: columns ``on`` + ``value``, in the paper's units and names) beside the paper's
    values of ``table``: columns ``paper``, ``ours``, ``delta`` (ours - paper), one row per cell
    either side has (a cell the paper prints as '-' or that we did not run reads NaN). The outer
    merge sorts the rows; :func:`paper_wide` puts them in the paper's order."""
    import pandas as pd

    paper = paper_table(table)[[*on, "value"]].rename(columns={"value": "paper"})
    mine = ours[[*on, "value"]].rename(columns={"value": "ours"})
    out = pd.merge(paper, mine, on=list(on), how="outer")
    out["delta"] = out["ours"] - out["paper"]
    return out


def fewer_rounds(tab):
    """Boolean Series over the rows of a FedAvg campaign table (columns ``dataset, rounds``): True
    for a cell run at fewer rounds than the longest cell of its dataset in ``tab``, i.e. a cell
    that did not fit the budget and ran at a reduced scale (its ``rounds`` says which). Its final
    accuracy is not the paper's-scale ACC; its round time still is a per-round cost."""
    import pandas as pd

    if tab is None or not len(tab) or "rounds" not in tab:
        return pd.Series(False, index=getattr(tab, "index", None), dtype=bool)
    r = tab.rounds.astype(int)
    return r < r.groupby(tab.dataset).transform("max")


def accuracy_at(tab, dataset: str, row: str, rounds: int) -> float:
    """The mean over seeds of ``row``'s accuracy at evaluation round ``rounds`` on ``dataset``, read
    from the cells' accuracy curves (``eval_rounds``, ``accuracy``); NaN where no cell of that row
    was evaluated at that round."""
    if tab is None or not len(tab):
        return float("nan")
    sel = tab[(tab.dataset == dataset) & (tab.row == row)]
    vals = [a[list(e).index(rounds)] for e, a in zip(sel.eval_rounds, sel.accuracy) if rounds in list(e)]
    return float(np.mean(vals)) if vals else float("nan")


def accuracy_beside_paper(tab, dataset: str, *, table: str = "II[A]",
                          rows=("none", "ours", "gc", "dp-g", "dp-l", "pld")) -> str:
    """One Markdown sentence of the final accuracies of a FedAvg campaign table ``tab`` (columns
    ``dataset, row, final_accuracy``; one row per seed) on ``dataset``, each defense's mean over its
    seeds beside the paper's ACC of ``table``, then the defenses of ``rows`` not run yet, e.g.
    ``"undefended <acc> % (1 seed; paper 54.15 %); Ours <acc> % (1 seed; paper 52.47 %); not run yet:
    GC, PLD"`` (``<acc>`` the measured mean). A cell run at fewer rounds than the rest
    (:func:`fewer_rounds`, a cell over the budget) is marked with its scale and put beside the undefended run's accuracy at that round,
    not beside the paper's 2000-round number. The chapters print it from the committed table
    instead of keeping the numbers in their prose."""
    if dataset not in PAPER_DATASET:
        raise FedshieldError(f"unknown dataset {dataset!r}; choose from {list(PAPER_DATASET)}")
    unknown = [r for r in rows if r not in PAPER_DEFENSE]
    if unknown:
        raise FedshieldError(f"unknown defense rows {unknown}; choose from {list(PAPER_DEFENSE)}")
    paper = paper_table(table).query("metric == 'ACC' and dataset == @PAPER_DATASET[@dataset]")
    paper = dict(zip(paper.row, paper.value))
    mine = tab[tab.dataset == dataset] if tab is not None and len(tab) else None
    short = fewer_rounds(mine) if mine is not None else None
    done, left = [], []
    for r in rows:
        sel = mine[mine.row == r] if mine is not None else None
        v = sel.final_accuracy if sel is not None else ()
        name = "undefended" if r == "none" else PAPER_DEFENSE[r]
        if not len(v):
            left.append(name)
            continue
        seeds = f"{len(v)} seed{'s' if len(v) > 1 else ''}"
        if short[sel.index].any():
            n = int(sel.rounds.min())
            base = accuracy_at(mine, dataset, "none", n)
            done.append(f"{name} {100 * float(v.mean()):.1f} % after only {n} rounds ({seeds}; 2000 rounds are over "
                        f"the budget at {float(sel.mean_round_time.mean()):.1f} s a round; undefended "
                        + ("n/a" if base != base else f"{100 * base:.1f} %") + f" at round {n})")
            continue
        ref = paper.get(PAPER_DEFENSE[r])
        done.append(f"{name} {100 * float(v.mean()):.1f} % ({seeds}"
                    + (f"; paper {ref:.2f} %" if ref is not None else "") + ")")
    return "; ".join(done + ([f"not run yet: {', '.join(left)}"] if left else []))


def table2_long(t, *, stat: str = "mean"):
    """A Table II frame of the book (``dataset, defense, muted, psnr_<stat>, ssim_<stat>, acc,
    art_ratio``) in the paper's units and names, long: PSNR dB, SSIM, ACC %, ART % over undefended.
    ``stat``: which statistic over victims stands for "ours" (``"median"``: robust to one lucky
    victim and to an exact reconstruction's infinite PSNR)."""
    import pandas as pd

    if stat not in ("mean", "median"):
        raise ValueError(f"stat must be 'mean' or 'median', got {stat!r}")
    rows = []
    for r in t.itertuples():
        name = PAPER_DEFENSE[r.defense] + ("-muted" if r.muted else "")
        ds = PAPER_DATASET[r.dataset]
        vals = {"PSNR": getattr(r, f"psnr_{stat}"), "SSIM": getattr(r, f"ssim_{stat}")}
        if not r.muted:
            vals["ACC"] = 100 * r.acc
            if r.defense != "none":
                vals["ART"] = 100 * (r.art_ratio - 1)
        rows += [dict(dataset=ds, row=name, metric=m, value=v) for m, v in vals.items()]
    return pd.DataFrame(rows)


def paper_wide(cmp, *, index=("dataset", "row"), metrics=("PSNR", "SSIM", "ACC", "ART"), order=None):
    """A :func:`beside_paper` frame as one row per ``index`` and, per metric, the columns
    ``paper · ours · Δ`` (rows in ``order`` of the ``row`` field when given)."""
    import pandas as pd

    metrics = [m for m in metrics if m in set(cmp.metric)]
    w = cmp.pivot_table(index=list(index), columns="metric", values=["paper", "ours", "delta"], dropna=False,
                        sort=False)
    w = w.swaplevel(0, 1, axis=1)
    w = w.reindex(columns=pd.MultiIndex.from_product([metrics, ["paper", "ours", "delta"]]))
    w = w.rename(columns={"delta": "Δ"}, level=1)
    key = {r: i for i, r in enumerate(order or ())}
    groups = {(d,): i for i, d in enumerate(PAPER_DATASET.values())}   # the paper's column order
    for k in cmp[list(index)[:-1]].itertuples(index=False, name=None):  # then any other, as it comes
        groups.setdefault(tuple(k), len(groups))

    def rank(i):
        idx = w.index[i] if isinstance(w.index[i], tuple) else (w.index[i],)
        row = str(idx[-1])
        head, _, tail = row.rpartition(" ")
        try:                                   # "root size 50" < "root size 100": by the number
            num = (head, float(tail))
        except ValueError:
            num = (row, 0.0)
        return (groups.get(tuple(idx[:-1]), len(groups)), key.get(row, len(key)), num)

    w = w.iloc[sorted(range(len(w)), key=rank)]
    return w.dropna(how="all")


def paper_bars(cmp, metric: str, *, title: str = "", order=None):
    """Grouped bars of ``metric``: one group per row (defense / setting), paper vs ours, one panel
    per dataset."""
    import matplotlib.pyplot as plt

    d = cmp[cmp.metric == metric]
    present = list(dict.fromkeys(d.dataset))
    sets = [x for x in PAPER_DATASET.values() if x in present] + [x for x in present if x not in PAPER_DATASET.values()]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.2), squeeze=False, sharey=True)
    for ax, ds in zip(axes[0], sets):
        g = d[d.dataset == ds]
        rows = [r for r in (order or list(dict.fromkeys(g.row))) if r in set(g.row)]
        g = g.set_index("row").reindex(rows)
        xs = np.arange(len(rows))
        ax.bar(xs - 0.2, g.paper, 0.4, label="paper", color="0.65")
        ax.bar(xs + 0.2, g.ours, 0.4, label="ours (this book)", color="tab:red")
        ax.set_xticks(xs, rows, rotation=45, ha="right", fontsize=8)
        ax.set_title(ds, fontsize=9)
    axes[0][0].set_ylabel(metric)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def save_table(name: str, df, profile: str, *, root=None) -> None:
    """Store a measured table (a pandas DataFrame) for the summary chapter (in
    ``<root>/tables/<profile>/<name>.json``, :func:`results_dir`). Returns nothing, so that a
    notebook cell ending with it prints no machine-specific path."""
    p = results_dir(root) / "tables" / profile / f"{name}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    rows = [{k: _jsonable(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
    p.write_text(json.dumps({"name": name, "profile": profile, "columns": list(df.columns), "rows": rows},
                            default=str, indent=1))


def load_table(name: str, profile: str, *, root=None):
    """The measured table ``name`` of ``profile`` under ``root`` (:func:`results_dir`) as a
    DataFrame, or None if it was not run."""
    import pandas as pd

    p = results_dir(root) / "tables" / profile / f"{name}.json"
    if not p.exists():
        return None
    d = json.loads(p.read_text())
    return pd.DataFrame(d["rows"], columns=d["columns"])


def table_names(profile: str) -> list[str]:
    """The names of the tables saved at ``profile``, sorted."""
    d = results_dir() / "tables" / profile
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def image_grid(rows: list[list], row_labels: list[str], col_labels: list[str], *, title: str | None = None,
               scale: float = 1.4):
    """Draw a grid of images (CHW tensors/arrays in [0,1]; None = blank) with labels."""
    import matplotlib.pyplot as plt

    nr, nc = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(nr, nc, figsize=(scale * nc + 1.2, scale * nr + (0.4 if title else 0)), squeeze=False)
    for i, r in enumerate(rows):
        for j in range(nc):
            ax = axes[i][j]
            ax.set_xticks([]); ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            img = r[j] if j < len(r) else None
            if img is not None:
                a = np.asarray(img.detach().cpu() if hasattr(img, "detach") else img, dtype=float)
                a = np.clip(a, 0, 1)
                if a.ndim == 3 and a.shape[0] in (1, 3):
                    a = a.transpose(1, 2, 0)
                if a.ndim == 3 and a.shape[2] == 1:
                    a = a[..., 0]
                ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1)
            if i == 0:
                ax.set_title(col_labels[j] if j < len(col_labels) else "", fontsize=8)
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
