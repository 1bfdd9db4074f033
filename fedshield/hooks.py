"""The two hook points every defense plugs into (simulator, attack harness, Flower).

A *client hook* transforms the updates the clients share, a *server hook* transforms the
aggregate before it is applied. Both work on flat vectors in ``model.parameters()`` order and
on a whole round of clients at once (``updates`` is ``[m, P]``) so that they vectorise.

The sign convention: an *update* is what the client shares, ``w_global - w_local`` for FedAvg
(a pseudo-gradient, equal to ``lr * grad`` after one SGD step), or the raw loss gradient in the
single-step attack setting. The server applies ``w <- w - server_lr * aggregate``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn


@dataclass
class RoundContext:
    """What a hook may look at in one round.

    Attributes
    ----------
    round: round index (0-based).
    model: the global model of this round (before the update); hooks must not modify it.
    weights: ``[m]`` aggregation weights of the participating clients, summing to 1.
    client_ids: ids of the participating clients.
    client_data: optional per-client ``(x, y)`` tensors (PLD needs the client's inputs).
    generator: the round's random generator (defense noise).
    extra: free-form dict for hooks to pass information (e.g. chosen slices, dropped eigen-directions).
    """

    round: int
    model: nn.Module
    weights: Tensor
    client_ids: Sequence[int] = ()
    client_data: Optional[Sequence[tuple[Tensor, Tensor]]] = None
    generator: Optional[torch.Generator] = None
    extra: dict[str, Any] = field(default_factory=dict)


class Defense:
    """Base class: the identity defense ("none"). Subclasses override what they need."""

    name = "none"

    def on_round_start(self, model: nn.Module, round_idx: int) -> None:
        """Called once per round with the global model (e.g. to compute the risk slices)."""

    def client(self, updates: Tensor, ctx: RoundContext) -> Tensor:
        """Transform the ``[m, P]`` updates the clients share. Default: unchanged."""
        return updates

    def server(self, aggregate: Tensor, ctx: RoundContext) -> Tensor:
        """Transform the ``[P]`` weighted-average aggregate. Default: unchanged."""
        return aggregate

    #: the simulator calls :meth:`local_step` at every local SGD step only when this is True
    on_local_steps = False

    def local_step(self, grads: dict[str, Tensor], active: Tensor) -> dict[str, Tensor]:
        """Transform one local SGD step's gradients of a group of ``g`` clients trained together:
        ``grads[name]`` is ``[g, *shape]`` (parameter ``name``), ``active`` the ``[g]`` boolean mask
        of the clients that take this step (a client whose data ran out takes none and must keep a
        zero gradient). Used by noise that the paper may have meant per local step (DP-SGD-like);
        called only when :attr:`on_local_steps`. Default: unchanged."""
        return grads

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
