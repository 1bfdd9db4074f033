"""FedAvg experiments by defense name: the root set outside every client's data, the defense from
the registry, one cached run."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..data import root_set
from ..errors import FedshieldError
from ..fl import FLConfig, build_federation, fedavg_key, run_fedavg, snapshot_path
from .registry import build_defense

__all__ = ["fl_root_set", "fl_defense", "run_fl", "global_model_states"]


def fl_root_set(cfg: FLConfig, n: int = 100, *, bias: Optional[float] = None, bias_class: int = 0,
                data_dir=None, seed: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """The server's public root set for the federation of ``cfg``: ``n`` training images that no
    client holds (optionally class-biased, Table III[C]), drawn with ``seed`` (default ``cfg.seed``)."""
    x, y, parts, _ = build_federation(cfg, data_dir, progress=False)
    idx = root_set(y, n, exclude=parts, bias=bias, bias_class=bias_class,
                   seed=cfg.seed if seed is None else seed)
    return x[idx], y[idx]


def fl_defense(name: str, cfg: FLConfig, *, attack: str = "dlg", root_size: int = 100,
               root_bias: Optional[float] = None, data_dir=None, **kwargs):
    """:func:`~fedshield.experiments.registry.build_defense` for a FedAvg run of ``cfg``: the
    paper's settings against ``attack`` overridden by ``kwargs``, noise seed
    ``defense_seed(cfg.seed)``, for 'ours' the root set :func:`fl_root_set`."""
    return build_defense(name, seed=cfg.seed, attack=attack, options=kwargs, root_size=root_size,
                         root_bias=root_bias,
                         root_source=lambda n, bias: fl_root_set(cfg, n, bias=bias, data_dir=data_dir))


def run_fl(cfg: FLConfig, defense: str = "none", *, attack: str = "dlg", root_size: int = 100,
           root_bias: Optional[float] = None, data_dir=None, progress: bool = True, snapshots=(), **kwargs) -> dict:
    """Run (or fetch from the cache) FedAvg under ``cfg`` with defense ``defense``; the defense's
    name and options are part of the cache key (through its ``repr``). ``snapshots``: rounds whose
    global model is kept (:func:`fedshield.fl.run_fedavg`; the result gains ``key``, for
    :func:`global_model_states`)."""
    if not isinstance(defense, str):
        raise FedshieldError("defense must be a name; build custom defenses and call run_fedavg directly")
    d = fl_defense(defense, cfg, attack=attack, root_size=root_size, root_bias=root_bias,
                   data_dir=data_dir, **kwargs)
    return run_fedavg(cfg, d, data_dir=data_dir, progress=progress, snapshots=snapshots)


def global_model_states(cfg: FLConfig, defense: str = "none", rounds=(0,), *, data_dir=None, progress: bool = False,
                        **kwargs) -> dict:
    """``{round: state_dict}`` of the global model of the FedAvg run :func:`run_fl` ``(cfg, defense,
    **kwargs)`` after each of ``rounds`` (0: the initial model), from the result cache (the run is
    repeated once if its snapshots are not there)."""
    d = fl_defense(defense, cfg, data_dir=data_dir, **kwargs)
    run_fedavg(cfg, d, data_dir=data_dir, progress=progress, snapshots=rounds)
    key = fedavg_key(cfg, d, True, None)
    return {int(r): torch.load(snapshot_path(key, r), weights_only=True) for r in rounds}
