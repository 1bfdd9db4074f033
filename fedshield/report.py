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


def results_dir() -> Path:
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

    from .errors import FedshieldError

    if table not in PAPER_TABLES:
        raise FedshieldError(f"unknown paper table {table!r}; choose from {list(PAPER_TABLES)}")
    rows = [r for r in paper_numbers()["values"] if r["table"] == table]
    return pd.DataFrame(rows, columns=["dataset", "row", "x", "metric", "value", "source"])


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def save_table(name: str, df, profile: str) -> None:
    """Store a measured table (a pandas DataFrame) for the summary chapter (in
    ``results/tables/<profile>/<name>.json``). Returns nothing, so that a notebook cell ending
    with it prints no machine-specific path."""
    p = results_dir() / "tables" / profile / f"{name}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    rows = [{k: _jsonable(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
    p.write_text(json.dumps({"name": name, "profile": profile, "columns": list(df.columns), "rows": rows},
                            default=str, indent=1))


def load_table(name: str, profile: str):
    """The measured table ``name`` of ``profile`` as a DataFrame, or None if it was not run."""
    import pandas as pd

    p = results_dir() / "tables" / profile / f"{name}.json"
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
