"""The one place that turns a defense *name* into a defense for an experiment.

:func:`build_defense` is used by every path that runs a named defense: ``fedshield train`` and
:func:`fedshield.experiments.run_fl` (FedAvg), ``fedshield attack`` and
:func:`fedshield.experiments.run_attack` (attack experiments), the book's notebooks. It fixes

- the settings: the paper's for the attack (:func:`fedshield.baselines.paper_defense_kwargs`),
  overridden by ``options``;
- the noise seed: ``defense_seed(seed) = (seed or 0) + 1009`` for every defense that draws
  randomness ('ours', 'dp-g', 'dp-l', 'pld'), unless ``options`` sets ``seed``. (This is the
  FedAvg rule the book's cached results were computed with; the attack experiments adopted it.)
- the root set of 'ours': ``root_source(root_size, root_bias)``, drawn by the caller's context
  (FedAvg: training images outside every client; attacks: the training split), only when needed.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

from torch import Tensor, nn

from ..baselines import DEFENSES, make_defense
from ..errors import FedshieldError
from ..hooks import Defense

__all__ = ["build_defense", "defense_seed", "SEEDED_DEFENSES", "ROOT_OPTIONS", "DEFENSE_SEED_OFFSET",
           "RootSource", "split_root_options"]

DEFENSE_SEED_OFFSET = 1009
SEEDED_DEFENSES = ("ours", "dp-g", "dp-l", "pld")  # pld: draws its scored samples / probes when asked to
ROOT_OPTIONS = ("root_size", "root_bias")

RootSource = Callable[[int, Optional[float]], tuple[Tensor, Tensor]]
"""``root_source(n, bias) -> (x, y)``: ``n`` root images, a fraction ``bias`` from class 0 (``None``: uniform)."""


def defense_seed(seed: Optional[int]) -> int:
    """The defense's noise seed of an experiment seeded with ``seed``: ``(seed or 0) + 1009``
    (offset so that the noise stream differs from the experiment's other seeded streams)."""
    return (seed or 0) + DEFENSE_SEED_OFFSET


def split_root_options(options: Iterable[tuple[str, object]]) -> tuple[tuple, dict]:
    """``(other options, {root_size / root_bias found})``: the old spelling put the root set's
    size and bias among a defense's options; they choose data, not the defense."""
    rest, root = [], {}
    for k, v in options:
        if k in ROOT_OPTIONS:
            root[k] = v
        else:
            rest.append((k, v))
    return tuple(rest), root


def build_defense(name: str, *, seed: Optional[int], attack: str = "dlg", options: Iterable = (),
                  model: Optional[nn.Module] = None, root_source: Optional[RootSource] = None,
                  root_size: int = 100, root_bias: Optional[float] = None) -> Defense:
    """The defense ``name`` of an experiment seeded with ``seed`` (see the module docstring).

    Parameters
    ----------
    name : one of :data:`fedshield.baselines.DEFENSES`.
    seed : the experiment's seed; the defense's noise seed is :func:`defense_seed` of it.
    attack : whose paper settings ('dlg' or 'ig').
    options : ``(name, value)`` pairs (or a dict) overriding the paper's settings.
    model : for PLD outside a round context (the attack harness).
    root_source, root_size, root_bias : the root set of 'ours', ``root_source(root_size, root_bias)``.
    """
    if not isinstance(name, str) or name.lower() not in DEFENSES:
        raise FedshieldError(f"unknown defense {name!r}; choose from {list(DEFENSES)}")
    name = name.lower()
    opts = dict(options.items() if isinstance(options, dict) else options)
    clash = sorted(set(opts) & set(ROOT_OPTIONS))
    if clash:
        raise FedshieldError(f"{clash[0]} chooses the root set, not the defense: pass it as {clash[0]}=")
    if name in SEEDED_DEFENSES:
        opts.setdefault("seed", defense_seed(seed))
    root = None
    if name == "ours":
        if root_source is None:
            raise FedshieldError("defense 'ours' needs a root set: pass root_source=(n, bias) -> (x, y)")
        root = root_source(int(root_size), root_bias)
    return make_defense(name, model=model, root=root, attack=attack, **opts)
