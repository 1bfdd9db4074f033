"""Glue the book's notebooks share: defenses for FedAvg runs with a root set drawn outside every
client's data, and one call that runs a defended FedAvg experiment through the result cache.

Each experiment is one config (:class:`fedshield.fl.FLConfig` /
:class:`fedshield.attacks.AttackConfig`) plus a defense name and its options; results are cached
on disk keyed by both, so a notebook that is re-run (or interrupted) loses nothing.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from .errors import FedshieldError


def fl_root_set(cfg, n: int = 100, *, bias: Optional[float] = None, bias_class: int = 0,
                data_dir=None, seed: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """The server's public root set for the federation of ``cfg``: ``n`` training images that no
    client holds (optionally class-biased, Table III[C])."""
    from .data import root_set
    from .fl import build_federation

    x, y, parts, _ = build_federation(cfg, data_dir, progress=False)
    idx = root_set(y, n, exclude=parts, bias=bias, bias_class=bias_class,
                   seed=cfg.seed if seed is None else seed)
    return x[idx], y[idx]


def fl_defense(name: str, cfg, *, attack: str = "dlg", root_size: int = 100, root_bias: Optional[float] = None,
               data_dir=None, **kwargs):
    """A defense for a FedAvg run of ``cfg`` with the paper's settings against ``attack``
    (:func:`fedshield.baselines.paper_defense_kwargs`), overridden by ``kwargs``. For 'ours' the
    root set comes from :func:`fl_root_set` and the noise seed from ``cfg.seed``."""
    from .baselines import make_defense

    root = None
    if name == "ours":
        root = fl_root_set(cfg, root_size, bias=root_bias, data_dir=data_dir)
        kwargs.setdefault("seed", (cfg.seed or 0) + 1009)
    elif name in ("dp-g", "dp-l", "pld"):  # pld: draws its scored samples when max_samples is set
        kwargs.setdefault("seed", (cfg.seed or 0) + 1009)
    return make_defense(name, root=root, attack=attack, **kwargs)


def run_fl(cfg, defense: str = "none", *, attack: str = "dlg", root_size: int = 100,
           root_bias: Optional[float] = None, data_dir=None, progress: bool = True, **kwargs) -> dict:
    """Run (or fetch from the cache) FedAvg under ``cfg`` with defense ``defense``; the defense's
    name and options are part of the cache key."""
    from .fl import run_fedavg

    if not isinstance(defense, str):
        raise FedshieldError("defense must be a name; build custom defenses and call run_fedavg directly")
    d = fl_defense(defense, cfg, attack=attack, root_size=root_size, root_bias=root_bias,
                   data_dir=data_dir, **kwargs)
    return run_fedavg(cfg, d, data_dir=data_dir, progress=progress)
