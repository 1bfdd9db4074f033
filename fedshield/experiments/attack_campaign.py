"""The paper-scale attack campaign: DLG with 500 L-BFGS steps on the LeNet (Tables I and
II[A]) and Inverting Gradients with 1000 Adam steps on the width-64 ConvNet (Tables II[B], III),
and DLG against the global model during training (Chapter 10), resumable per victim across machines through the committed result tables.

An :class:`AttackCell` is one :class:`~fedshield.experiments.attack.AttackConfig` with the name of
its row in the paper's table. A *plan* is a named list of cells whose victims form one table,
``results/tables/<profile>/<plan>.json``, one row per (cell, victim). :func:`run_attack_campaign`
attacks the victims its table does not hold yet, ``chunk`` victims at a time (vectorised), and
merges each finished chunk's rows into the table at once (under the FedAvg campaign's file lock,
so two workers can share a plan). A machine that is reclaimed loses at most the chunk it was
running. Victim ``v`` of a cell is the same test image in every cell of a plan (a seeded
permutation of the test split, whatever the cell's number of victims), so cells compare victim by
victim (:func:`fedshield.stats.paired_comparison`) on the victims they share.

The first ``keep_images`` victims of each cell keep their image and reconstruction in the table
(uint8, base64; :func:`decode_image`), for the image grids of Table I and Table II.
"""
from __future__ import annotations

import base64
import dataclasses
import platform
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import FedshieldError
from ..metrics import summarize
from ..report import PAPER_DATASET, load_table, save_table
from .attack import AttackConfig, attack_setup, attack_victims
from .campaign import FRONTIER, NOISE_NEEDED, clip_bound, table_lock
from .scoring import SCORE_COLUMNS, score_reconstruction

#: the frontier's rows by name: (defense, options)
FRONTIER_ROWS = {row: (d, opts) for row, d, opts in FRONTIER}

__all__ = ["AttackCell", "dlg_config", "ig_config", "IG_HYPER", "ATTACK_PLANS", "attack_plan", "run_attack_campaign",
           "attack_status", "cell_status", "collect_attacks", "cell_summary", "encode_image", "decode_image", "TABLE2_ROWS",
           "TRAINING_ROUNDS", "TABLE3_REFERENCE", "table3_long", "rescore_table"]

#: Table II's rows: (the paper's name, defense, muted)
TABLE2_ROWS = (("none", "none", False), ("Ours", "ours", False), ("Ours-muted", "ours", True),
               ("PLD-muted", "pld", True), ("GC", "gc", False), ("DP-G", "dp-g", False), ("DP-L", "dp-l", False),
               ("PLD", "pld", False))
#: rows whose verdicts decide the paper's claims: more victims (>= 8 for DLG: the paired test of
#: :mod:`fedshield.stats` cannot reach p < 0.05 with fewer)
_MANY = ("none", "Ours", "Ours-muted", "PLD-muted")

#: Inverting Gradients' hyper-parameters in the campaign: the attack's defaults (Geiping et al.'s
#: CIFAR-10 recipe: cosine distance, signed gradients, box constraint, step decay at 3/8, 5/8, 7/8,
#: Adam 0.1, TV 1e-4), here on [0, 1] pixels. Undefended (ConvNet-64, 1000 steps) they give
#: recognisable CIFAR-10 images, so no other setting is searched; the undefended row of Table II[B]
#: reports their PSNR and SSIM. (Their code applies these to std-normalised images, std about 0.25, so
#: its pixel step is about 4x smaller; not compared here.)
IG_HYPER = dict(lr=0.1, tv=1e-4)


def dlg_config(dataset: str, defense: str = "none", muted: bool = False, *, images: int = 8, iterations: int = 500,
               seed: int = 0, **changes) -> AttackConfig:
    """The paper's DGA setting: DLG (L-BFGS on the squared gradient distance, known labels, one
    image per victim) against the paper's 4-conv LeNet with DLG's U(-0.5, 0.5) initialisation."""
    return AttackConfig(dataset=dataset, model="lenet", attack="dlg", defense=defense, muted=muted, images=images,
                        iterations=iterations, seed=seed, label="known", model_init="dlg", **changes)


def ig_config(dataset: str, defense: str = "none", muted: bool = False, *, images: int = 2, iterations: int = 1000,
              width: int = 64, seed: int = 0, **changes) -> AttackConfig:
    """The paper's GIA setting: Inverting Gradients (:data:`IG_HYPER`) against the ConvNet of
    ``width`` (the paper: 64), known labels, one image per victim."""
    kw = {**IG_HYPER, **changes}
    return AttackConfig(dataset=dataset, model="convnet", attack="ig", defense=defense, muted=muted, images=images,
                        iterations=iterations, seed=seed, label="known", model_kwargs=(("width", int(width)),), **kw)


@dataclass(frozen=True)
class AttackCell:
    """One attack experiment of the campaign: ``config`` and the name of its ``row`` in the paper's
    ``table`` (e.g. "II[A]", "Ours-muted"); ``setting`` a label for sweeps (e.g. "root 200")."""
    config: AttackConfig
    row: str
    table: str
    setting: str = ""

    def key(self) -> str:
        return self.config.cache_key()


def _table2(attack: str, datasets, *, many: int, few: int, iterations: int, seed: int = 0, width: int = 64,
            table: str = "") -> list[AttackCell]:
    build = dlg_config if attack == "dlg" else (lambda *a, **k: ig_config(*a, width=width, **k))
    cells = []
    for ds in datasets:
        for name, d, m in TABLE2_ROWS:
            n = many if name in _MANY else few
            cells.append(AttackCell(build(ds, d, m, images=n, iterations=iterations, seed=seed), name, table))
    return cells


def _dlg_plan(*, many=8, few=4, iterations=500, datasets=("mnist", "fmnist", "cifar10", "cifar100")) -> list[AttackCell]:
    """Table II[A] (every row on MNIST, Fashion-MNIST, CIFAR-10) and Table I (no defense, Ours and
    the muted attacker also on CIFAR-100)."""
    main = [d for d in datasets if d != "cifar100"]
    cells = _table2("dlg", main, many=many, few=few, iterations=iterations, table="II[A]")
    if "cifar100" in datasets:
        cells += [AttackCell(dlg_config("cifar100", d, m, images=few, iterations=iterations), name, "I")
                  for name, d, m in TABLE2_ROWS[:3]]
    return cells


def _ig_plan(*, many=4, few=2, iterations=1000, width=64, datasets=("cifar10", "mnist", "fmnist")) -> list[AttackCell]:
    """Table II[B]: every row, CIFAR-10 first (the dataset the attack is known for)."""
    return _table2("ig", datasets, many=many, few=few, iterations=iterations, width=width, table="II[B]")


def _table3_plan(*, many=2, few=2, iterations=1000, width=64, datasets=("cifar10", "mnist", "fmnist")) -> list[AttackCell]:
    """Table III with the GIA defense setting (Ours at ratio 0.3): [A] layer-size slicing, [B] root
    set sizes 50 ... 400, [C] root bias 0.1 ... 1.0, [E] clipping (MNIST and CIFAR-10 for [B], [C],
    as in the paper). Ours at the default setting (risk slicing, root 100, uniform) is II[B]'s cell."""
    def ours(ds, setting, table, **kw):
        return AttackCell(ig_config(ds, "ours", images=many, iterations=iterations, width=width, **kw), "Ours", table,
                          setting)
    cells = []
    for ds in datasets:
        cells.append(ours(ds, "layer size", "III[A]", defense_kwargs=(("slicing", "size"),)))
        cells.append(ours(ds, "clipping", "III[E]", defense_kwargs=(("clip_bound", clip_bound(ds)),)))
        if ds in ("mnist", "cifar10"):
            cells += [ours(ds, f"root size {n}", "III[B]", root_size=n) for n in (50, 200, 300, 400)]
            cells += [ours(ds, f"root bias {b}", "III[C]", root_bias=b) for b in (0.1, 0.2, 0.4, 0.6, 1.0)]
    return cells


#: Table III's rows whose cell is Table II[B]'s Ours (the paper's GIA setting: risk slicing, a
#: uniform root set of 100, no clipping)
TABLE3_REFERENCE = {"III[A]": "sensitivity", "III[B]": "root size 100", "III[E]": "no clipping"}


def table3_long(*, profile: str = "default", run: bool = False, iterations: Optional[int] = None,
                images: Optional[int] = None, width: Optional[int] = None,
                datasets: Optional[Sequence[str]] = None, data_dir=None,
                root=None) -> tuple[pd.DataFrame, list[AttackCell]]:
    """Table III[A, B, C, E]'s PSNR / SSIM at the paper's GIA scale (plans ``attacks_table3`` and,
    for the rows at the paper's default setting, :data:`TABLE3_REFERENCE`, ``attacks_ig``'s Ours),
    long like :func:`fedshield.report.beside_paper` wants it: ``table, dataset`` (the paper's
    name), ``row, metric, value`` (the median over victims) plus ``q1, q3, victims``; and the cells
    not complete. ``run`` attacks what is missing first (the arguments scale both plans); ``root``
    reads the tables from another results folder (:func:`fedshield.report.results_dir`)."""
    scale = dict(iterations=iterations, images=images, width=width, datasets=datasets)
    t3 = attack_plan("attacks_table3", **scale)
    ref = [c for c in attack_plan("attacks_ig", **scale) if c.row == "Ours"]
    got3, miss3 = collect_attacks("attacks_table3", t3, profile=profile, run=run, data_dir=data_dir, root=root)
    gotr, missr = collect_attacks("attacks_ig", ref, profile=profile, run=run, data_dir=data_dir, root=root)
    entries = [(c.table, c, got3.get(c.key()), c.setting) for c in t3]
    for tab, row in TABLE3_REFERENCE.items():
        sets = {c.config.dataset for c in t3 if c.table == tab}
        entries += [(tab, c, gotr.get(c.key()), row) for c in ref if c.config.dataset in sets]
    out = []
    for tab, c, r, row in entries:
        if r is None:
            continue
        s = r["summary"]
        for metric in ("psnr", "ssim"):
            out.append(dict(table=tab, dataset=PAPER_DATASET.get(c.config.dataset, c.config.dataset), row=row,
                            metric=metric.upper(), value=s[metric]["median"], q1=s[metric]["q1"], q3=s[metric]["q3"],
                            victims=s["victims"]))
    cols = ["table", "dataset", "row", "metric", "value", "q1", "q3", "victims"]
    return pd.DataFrame(out, columns=cols), miss3 + missr


#: the rounds of a training run whose global model is attacked (Chapter 10)
TRAINING_ROUNDS = (0, 100, 1000, 2000)


def _training_plan(*, images=8, iterations=500, datasets=("mnist", "fmnist"), rounds=TRAINING_ROUNDS,
                   total=2000) -> list[AttackCell]:
    """Attack during training (Chapter 10): DLG against the global model of Table II[A]'s training run
    (the calibrated paper-scale FedAvg, seed 0) after each of ``rounds``: undefended updates on the
    undefended run's model, Ours' updates (plain and muted attacker) on Ours' run's model."""
    return [AttackCell(dlg_config(ds, d, m, images=images, iterations=iterations, trained_round=int(r),
                                  trained_defense=d, trained_total=int(total)), name, "training", f"round {r}")
            for ds in datasets for r in rounds for name, d, m in TABLE2_ROWS[:3]]


def _frontier_plan(*, images=8, iterations=500, datasets=("mnist",)) -> list[AttackCell]:
    """The adaptive attacker's frontier (Chapter 10): DLG (Table II[A]'s setting, 8 victims) by the
    strongest attacker that knows the defense, at each strength of
    :data:`fedshield.experiments.campaign.FRONTIER` and at the paper's: the slice detector against
    Ours (widened by the jitter against randomised boundaries), matching the unpruned entries
    against GC, dropping the FC layer against PLD, the plain attack against DP and against Ours at
    ratio 1 (noise on every entry: nothing to locate)."""
    paper = (("DP-G", "dp-g", ()), ("GC", "gc", ()), ("Ours", "ours", ()), ("PLD", "pld", ()))
    cells = []
    for ds in datasets:
        for row, d, opts in paper + FRONTIER:
            # every slice noisy (ratio 1): nothing left to locate, the plain attack is the strongest
            muted = d in ("gc", "pld") or (d == "ours" and float(dict(opts).get("ratio", 0.2)) < 1.0)
            cells.append(AttackCell(dlg_config(ds, d, muted, images=images, iterations=iterations,
                                               defense_kwargs=tuple(o for o in opts if o[0] != "risk_every")),
                                    row + ("-muted" if muted else ""), "frontier", row))
    return cells


#: the MAP attacker's optimiser: line-searched L-BFGS iterations from each of ``MAP_RESTARTS`` starts
MAP_ITERATIONS = 300
MAP_RESTARTS = 4


def _frontier_map_plan(*, images=8, iterations=MAP_ITERATIONS, datasets=("mnist", "fmnist", "cifar10")) -> list[AttackCell]:
    """The noise-aware MAP attacker (:func:`fedshield.attacks.map.map_attack_batch`) at every point
    of the frontier and undefended (it must reconstruct an undefended update as DLG does), on the
    victims of the DLG frontier: it knows each defense's noise law, mask and slice detector
    (:func:`fedshield.experiments.attack._map_knowledge`) and calibrates its TV prior on public
    images (:func:`fedshield.experiments.attack.map_tv`)."""
    paper = (("none", "none", ()), ("DP-G", "dp-g", ()), ("GC", "gc", ()), ("Ours", "ours", ()), ("PLD", "pld", ()))
    return [AttackCell(dataclasses.replace(dlg_config(ds, d, False, images=images if ds != "cifar10" else min(images, 4),
                                                      iterations=iterations,
                                                      defense_kwargs=tuple(o for o in opts if o[0] != "risk_every")),
                                           attack="map", restarts=MAP_RESTARTS),
                       row + "-map", "frontier", row)
            for ds in datasets for row, d, opts in paper + FRONTIER + NOISE_NEEDED]


def _jitter_plan(*, images=8, iterations=500, datasets=("mnist", "fmnist")) -> list[AttackCell]:
    """The randomised boundaries (``PaperDefense(jitter=0.5)``) against the two attackers the
    frontier's (widened, ``detector="expanded"``) is not: the plain attack, and the muted attacker
    that drops the server's own slices (``detector="slices"``, the Chapter 7 detector)."""
    opts = (("jitter", 0.5),)
    cells = []
    for ds in datasets:
        cells.append(AttackCell(dlg_config(ds, "ours", False, images=images, iterations=iterations,
                                           defense_kwargs=opts), "Ours + jitter 0.5", "jitter", "plain attack"))
        cells.append(AttackCell(dlg_config(ds, "ours", True, images=images, iterations=iterations,
                                           defense_kwargs=opts, detector="slices"),
                                "Ours + jitter 0.5-muted", "jitter", "server's slices"))
    return cells


def _label_aware_plan(*, iterations=500, datasets=("cifar100", "cifar10")) -> list[AttackCell]:
    """The muted attacker against Ours with a label-aware clean reference (``reference="label"``:
    the root images relabelled to each victim's label), on the victims of Table I's / II[A]'s
    Ours-muted cells: a root set of 100 images misses 39 of CIFAR-100's classes, and the plain
    reference then takes the victim's own output row for noise."""
    many = {"cifar100": 4}
    return [AttackCell(dlg_config(ds, "ours", True, images=many.get(ds, 8), iterations=iterations, reference="label"),
                       "Ours-muted, label-aware", "I" if ds == "cifar100" else "II[A]") for ds in datasets]


def _image_size_plan(*, images=8, iterations=500, datasets=("cifar10",)) -> list[AttackCell]:
    """Chapter 10.5's test of why DP-G at variance 1e-3 stops DLG on CIFAR-10 and not on MNIST: the
    same CIFAR-10 victims converted to MNIST's shape (``images_as="mnist"``: grayscale 28 x 28, 784
    unknowns instead of 3072, the MNIST LeNet's 21.7 shared numbers per unknown instead of 6.3),
    undefended and under that DP-G. If the number of shared numbers per unknown is what protects
    CIFAR-10, its converted victims fall to the attack as MNIST's do."""
    _, dpg = FRONTIER_ROWS["DP-G, variance 1e-3"]
    return [AttackCell(dlg_config(ds, d, False, images=images, iterations=iterations, images_as="mnist",
                                  defense_kwargs=opts), row, "image size", "as MNIST (1 x 28 x 28)")
            for ds in datasets for row, d, opts in (("none", "none", ()), ("DP-G, variance 1e-3", "dp-g", dpg))]


ATTACK_PLANS = {"attacks_dlg": _dlg_plan, "attacks_image_size": _image_size_plan, "attacks_frontier": _frontier_plan,
                "attacks_frontier_map": _frontier_map_plan, "attacks_ig": _ig_plan, "attacks_table3": _table3_plan,
                "attacks_training": _training_plan, "attacks_jitter": _jitter_plan,
                "attacks_label_aware": _label_aware_plan}


def attack_plan(name: str, *, iterations: Optional[int] = None, images: Optional[int] = None,
                datasets: Optional[Sequence[str]] = None, width: Optional[int] = None,
                rounds: Optional[Sequence[int]] = None, total: Optional[int] = None) -> list[AttackCell]:
    """The cells of plan ``name`` (one of :data:`ATTACK_PLANS`). ``iterations`` / ``images`` replace
    every cell's (the smoke profile's miniature: a few steps, one victim), ``width`` the ConvNet's,
    ``rounds`` / ``total`` the attacked rounds and the length of the training run
    (``attacks_training``), ``datasets`` keeps only those datasets' cells."""
    if name not in ATTACK_PLANS:
        raise FedshieldError(f"unknown attack plan {name!r}; choose from {sorted(ATTACK_PLANS)}")
    kw = {}
    if width is not None and name in ("attacks_ig", "attacks_table3"):
        kw["width"] = int(width)
    if name == "attacks_training":
        kw.update({k: v for k, v in (("rounds", rounds), ("total", total)) if v is not None})
    if datasets is not None:
        kw["datasets"] = tuple(datasets)
    cells = ATTACK_PLANS[name](**kw)
    if datasets is not None:
        cells = [c for c in cells if c.config.dataset in datasets]
    changes = {k: int(v) for k, v in (("iterations", iterations), ("images", images)) if v is not None}
    if changes:
        cells = [dataclasses.replace(c, config=dataclasses.replace(c.config, **changes)) for c in cells]
    return cells


# ------------------------------------------------------------------------------------ images
def encode_image(x: np.ndarray) -> str:
    """An image (or stack) in [0, 1] as ``"C,H,W:<base64 of uint8>"``: 8 bits a pixel, the PSNR
    of the rounding itself about 59 dB, far above any defended reconstruction."""
    a = np.clip(np.rint(np.asarray(x, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    return ",".join(map(str, a.shape)) + ":" + base64.b64encode(a.tobytes()).decode("ascii")


def decode_image(s: Optional[str]) -> Optional[np.ndarray]:
    """:func:`encode_image`'s inverse (float32 in [0, 1]); ``None`` stays ``None``."""
    if s is None or (isinstance(s, float) and s != s):
        return None
    shape, data = s.split(":", 1)
    a = np.frombuffer(base64.b64decode(data), dtype=np.uint8)
    return (a.reshape(tuple(int(d) for d in shape.split(","))).astype(np.float32) / 255.0)


# ------------------------------------------------------------------------------------ running
def _done_victims(tab: Optional[pd.DataFrame]) -> dict:
    if tab is None or tab.empty:
        return {}
    return {k: set(g.victim.astype(int)) for k, g in tab.groupby("cell")}


def _merge_rows(name: str, profile: str, rows: list[dict]) -> None:
    with table_lock(name, profile):
        old = load_table(name, profile)
        new = pd.DataFrame(rows)
        keys = set(new.key)
        tab = new if old is None or old.empty else pd.concat([old[~old.key.isin(keys)], new], ignore_index=True)
        save_table(name, tab, profile)


def _row(cell: AttackCell, v: int, row: dict, rec: np.ndarray, x_true: np.ndarray, keep: bool) -> dict:
    cfg = cell.config
    key = cell.key()
    score = score_reconstruction(cfg.dataset, x_true, rec, row["index"], row["label"], psnr_value=row["psnr"])
    return {**score, "key": f"{key}/v{v:04d}", "cell": key, "table": cell.table, "row": cell.row, "setting": cell.setting,
            "dataset": cfg.dataset, "defense": cfg.defense, "muted": bool(cfg.muted), "attack": cfg.attack,
            "model": cfg.model, "width": dict(cfg.model_kwargs).get("width"), "iterations": cfg.iterations,
            "images": cfg.images, "victim": int(v), "index": row["index"], "label": row["label"],
            "psnr": row["psnr"], "ssim": row["ssim"], "grad_loss": row["grad_loss"], "seconds": row["seconds"],
            "evaluations": row["evaluations"], "label_correct": row["label_correct"],
            "detect_precision": row["detect_precision"], "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "x_true": encode_image(x_true) if keep else None, "x_rec": encode_image(rec) if keep else None}


def _reusable_rows(name: str, profile: str) -> dict:
    """The other plans' committed rows of ``profile``, by cell key: a cell of plan ``name`` whose
    config another plan has already attacked (same key, same victims, same result) takes those rows
    instead of attacking again."""
    out: dict = {}
    for other in ATTACK_PLANS:
        if other == name:
            continue
        tab = load_table(other, profile)
        if tab is not None and not tab.empty:
            for k, g in tab.groupby("cell"):
                out.setdefault(k, (other, g))
    return out


def run_attack_campaign(name: str, cells: Sequence[AttackCell], *, profile: str = "default",
                        budget_s: Optional[float] = None, chunk: Optional[int] = None,
                        keep_images: Optional[int] = None,
                        progress: bool = False, log=print, data_dir=None) -> pd.DataFrame:
    """Attack the victims of plan ``name``'s ``cells`` that its table lacks, in order, ``chunk``
    victims at a time (default: 8 for DLG, 2 for IG), merging each chunk's rows into the table as
    soon as it finishes; start no chunk after ``budget_s`` seconds (a started chunk runs to its
    end). Victims another plan of the profile has already attacked with the same config (the same
    cell key, e.g. the frontier's paper-setting cells and Table II[A]'s) are copied from its table,
    under this plan's table / row / setting names, not attacked again. Returns the table."""
    if not cells:
        raise FedshieldError(f"plan {name!r} has no cells")
    if chunk is not None and int(chunk) < 1:
        raise FedshieldError(f"chunk must be >= 1, got {chunk}")
    t0 = time.monotonic()
    reusable = None
    for i, cell in enumerate(cells):
        cfg = cell.config
        done = _done_victims(load_table(name, profile)).get(cell.key(), set())
        todo = [v for v in range(cfg.images) if v not in done]
        if not todo:
            continue
        reusable = _reusable_rows(name, profile) if reusable is None else reusable
        if cell.key() in reusable:
            other, g = reusable[cell.key()]
            g = g[g.victim.astype(int).isin(todo)]
            if len(g):
                _merge_rows(name, profile, g.assign(table=cell.table, row=cell.row, setting=cell.setting).to_dict("records"))
                log(f"[{name}] {i + 1}/{len(cells)} {cfg.dataset} {cell.row} {cell.setting}: "
                    f"{len(g)} victims taken from {other} (same config)")
                todo = [v for v in todo if v not in set(g.victim.astype(int))]
        if not todo:
            continue
        if budget_s is not None and time.monotonic() - t0 > budget_s:
            log(f"[{name}] budget of {budget_s:.0f} s spent")
            break
        setup = attack_setup(cfg, data_dir)
        xs = setup[1].x.numpy()
        size = int(chunk or (2 if cfg.attack == "ig" else 8))
        s = time.monotonic()
        for part in attack_victims(cfg, todo, chunk=size, progress=progress, setup=setup):
            rows = [_row(cell, v, r, rec, xs[v], keep_images is None or v < keep_images) for v, r, rec in part]
            _merge_rows(name, profile, rows)
            psnr = ", ".join(f"{r['psnr']:.1f}" for _, r, _ in part)
            log(f"[{name}] {i + 1}/{len(cells)} {cfg.dataset} {cell.row} {cell.setting} victims "
                f"{[v for v, _, _ in part]}: PSNR {psnr} dB, {time.monotonic() - s:.0f} s")
            if budget_s is not None and time.monotonic() - t0 > budget_s:
                break
    return load_table(name, profile)


def cell_status(name: str, cells: Sequence[AttackCell], profile: str = "default") -> list[tuple[AttackCell, int]]:
    """``[(cell, victims done)]`` of a plan's ``cells``, in their order (a cell counts its first
    ``images`` victims only)."""
    done = _done_victims(load_table(name, profile))
    return [(c, len(done.get(c.key(), set()) & set(range(c.config.images)))) for c in cells]


def attack_status(name: str, cells: Sequence[AttackCell], profile: str = "default") -> tuple[int, int]:
    """``(victims done, victims planned)`` of a plan."""
    st = cell_status(name, cells, profile)
    return sum(n for _, n in st), sum(c.config.images for c, _ in st)


def rescore_table(name: str, profile: str = "default", *, force: bool = False) -> pd.DataFrame:
    """Add the floor and identification columns (:data:`fedshield.experiments.scoring.SCORE_COLUMNS`)
    to every row of attack table ``name`` from what the row stores, without attacking again: the
    victim's test index and label, its stored reconstruction where the row keeps one (``rank`` and
    ``identified`` stay NaN where it does not), the attack's own PSNR. Rows already scored are kept
    unless ``force``. Saves and returns the table."""
    with table_lock(name, profile):
        tab = load_table(name, profile)
        if tab is None or tab.empty:
            raise FedshieldError(f"no attack table {name!r} at profile {profile!r}")
        for col in SCORE_COLUMNS:
            if col not in tab.columns:
                tab[col] = np.nan
        todo = tab.index if force else tab.index[tab.psnr_floor.isna()]
        for i in todo:
            r = tab.loc[i]
            xt, xr = decode_image(r.x_true), decode_image(r.x_rec)
            score = score_reconstruction(r.dataset, xt, xr, r["index"], r.label, psnr_value=float(r.psnr))
            for col in SCORE_COLUMNS:
                tab.at[i, col] = score[col]
        save_table(name, tab, profile)
    return tab


# ------------------------------------------------------------------------------------ reading
def cell_summary(rows: pd.DataFrame) -> dict:
    """PSNR / SSIM over a cell's victims: :func:`fedshield.metrics.summarize` plus the quartiles
    ``q1``, ``q3`` (PSNR in dB; an exact reconstruction's infinite PSNR counts in the median and
    quartiles, not in the mean)."""
    out = {}
    for m in ("psnr", "ssim"):
        a = rows[m].to_numpy(dtype=float)
        s = summarize(a)
        q = np.percentile(a, [25, 75]) if a.size else [float("nan")] * 2
        out[m] = {**s, "q1": float(q[0]), "q3": float(q[1])}
    det = rows.detect_precision.dropna()
    out["detect_precision"] = float(det.mean()) if len(det) else None
    out["seconds"] = float(rows.seconds.sum())
    out["victims"] = int(len(rows))
    return out


def collect_attacks(name: str, cells: Sequence[AttackCell], *, profile: str = "default", run: bool = False,
                    data_dir=None, root=None) -> tuple[dict, list[AttackCell]]:
    """``({cell key: result}, cells not complete)`` from plan ``name``'s table at ``profile``; with
    ``run``, the missing victims are attacked first (:func:`run_attack_campaign`). A result holds
    ``cell``, ``rows`` (the cell's victims, by victim), ``summary`` (:func:`cell_summary`) and the
    kept images ``x_true`` / ``x_rec`` (``{victim: [B, C, H, W]}``). A chapter that reads a long
    campaign (``run=False``) shows what is done and says what is not. ``root`` reads the table from
    another results folder (:func:`fedshield.report.results_dir`); it cannot be combined with ``run``."""
    if run and root is not None:
        raise FedshieldError("collect_attacks: run=True writes to the default results folder; "
                             "pass root only to read a table")
    if run and cells:
        run_attack_campaign(name, cells, profile=profile, log=lambda s: None, data_dir=data_dir)
    tab = load_table(name, profile, root=root)
    out, missing = {}, []
    for c in cells:
        rows = pd.DataFrame() if tab is None or tab.empty else tab[tab.cell == c.key()]
        rows = rows[rows.victim < c.config.images].sort_values("victim").reset_index(drop=True) if len(rows) else rows
        if len(rows) < c.config.images:
            missing.append(c)
        if len(rows):
            out[c.key()] = {"cell": c, "rows": rows, "summary": cell_summary(rows),
                            "x_true": {int(r.victim): decode_image(r.x_true) for r in rows.itertuples() if r.x_true},
                            "x_rec": {int(r.victim): decode_image(r.x_rec) for r in rows.itertuples() if r.x_rec}}
    return out, missing

