"""The learned-inversion attacker (Wu, Chen, Guo, Weinberger, UAI 2023, "Learning to Invert: Simple
Adaptive Attacks for Gradient Inversion in Federated Learning").

Instead of searching, for each victim, for the image whose gradient matches the shared update
(DLG, Inverting Gradients), the attacker *learns* the inverse map once: it computes the updates of
public images (images it owns, never a victim) on the attacked model, passes them through the same
defense (fresh noise for every pair), and fits a network ``f`` with ``f(update) ~ image`` by mean
squared error. Whatever the defense does that the network can see through -- noise on randomly
chosen slices, the pruning pattern of gradient compression, the pruned feature columns of PLD --
the training pairs show it; nothing about the defense has to be modelled by hand.

The pieces, as this module builds them:

- **Input: every entry of the update, standardised per entry.** ``z = (u - mean) / std`` with the
  mean and standard deviation of each entry over the training updates (the *defended* ones), a
  fixed affine map. Not a random projection (Wu et al.'s choice for large models): a projection
  mixes every entry into every feature, so noise that lands on a few slices (the paper's defense)
  spreads over all features and the network can no longer find and ignore it; and not only the
  last layer's gradient: PLD zeroes most of its columns, and DP noise is averaged away better over
  every entry. The per-entry scale puts layers whose gradients differ by orders of magnitude on one
  footing (Adam on raw entries would hardly see the small ones). At MNIST scale (the DLG LeNet,
  ``P = 17,038``) the full input costs one ``P x hidden`` product per pair, a few minutes on one
  CPU core for thousands of pairs and tens of epochs.
- **Network:** Wu et al.'s MLP, ``Linear(P, hidden) - ReLU - Linear(hidden, hidden) - ReLU -
  Linear(hidden, C H W) - sigmoid``, so images lie in ``[0, 1]``; initialised from ``generator``.
- **Training:** Adam on the pixel MSE, mini-batches drawn from ``generator``, the step decayed by a
  cosine schedule to 0 over the epochs (Wu et al.: a step decay at 3/4 of 200 epochs; a few dozen
  epochs need a smooth schedule). ``resample`` optionally redraws a batch's updates on every
  epoch after the first (a new draw of the defense's noise): the network then never sees the same
  noise twice, and cannot memorise it.

:func:`train_inverter` fits a :class:`LearnedInversion`; :func:`invert` applies it to victims'
updates and returns an :class:`~fedshield.attacks.common.AttackResult`. The experiment (training
pairs from the training split, the defense of an attack config, the victims) is
:func:`fedshield.experiments.learned.run_learned`.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FedshieldError
from .common import AttackResult, Timer, check_positive_int, generator_or_entropy, progress_bar

__all__ = ["LearnedInversion", "train_inverter", "invert", "LEARNED_DEFAULTS"]

#: the defaults of :func:`train_inverter` (measured on MNIST, see its docstring)
LEARNED_DEFAULTS = dict(hidden=512, epochs=30, lr=1e-3, batch_size=128, weight_decay=0.0)

#: an entry whose standard deviation over the training updates is below this (times the largest
#: one) is constant there (e.g. always pruned): it is centred but not scaled up
_STD_FLOOR = 1e-6


class LearnedInversion(nn.Module):
    """A fitted inverter: ``forward(updates [V, P]) -> images [V, C, H, W]`` in ``[0, 1]``.

    Attributes
    ----------
    mean, scale : ``[P]`` the per-entry standardisation (buffers, from the training updates).
    net : the MLP (logits of the pixels; the sigmoid is applied in :meth:`forward`).
    shape : ``(C, H, W)`` of one image.
    history : training loss (pixel MSE) per epoch, a list.
    seconds : training wall time.
    """

    def __init__(self, n_inputs: int, shape: tuple[int, int, int], hidden: int, mean: Tensor, scale: Tensor):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)
        self.net = nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, math.prod(self.shape)))
        self.history: list[float] = []
        self.seconds = 0.0

    @property
    def n_inputs(self) -> int:
        return int(self.mean.numel())

    def standardise(self, updates: Tensor) -> Tensor:
        return (updates - self.mean) / self.scale

    def forward(self, updates: Tensor) -> Tensor:
        z = self.net(self.standardise(updates))
        return torch.sigmoid(z).view(-1, *self.shape)


def _check_updates(updates, name: str = "updates") -> Tensor:
    if not isinstance(updates, Tensor):
        raise FedshieldError(f"{name} must be a torch.Tensor")
    if updates.dim() != 2 or updates.shape[0] < 1 or updates.shape[1] < 1:
        raise FedshieldError(f"{name} must be [N, P] with N, P >= 1, got shape {tuple(updates.shape)}")
    if not updates.dtype.is_floating_point:
        raise FedshieldError(f"{name} must be floating point, got {updates.dtype}")
    if not torch.isfinite(updates).all():
        raise FedshieldError(f"{name} contain NaN or Inf")
    return updates.detach().float()


def _check_images(images, n: int) -> Tensor:
    if not isinstance(images, Tensor):
        raise FedshieldError("images must be a torch.Tensor")
    if images.dim() != 4:
        raise FedshieldError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
    if images.shape[0] != n:
        raise FedshieldError(f"{images.shape[0]} images for {n} updates: one image per update")
    if not images.dtype.is_floating_point or not torch.isfinite(images).all():
        raise FedshieldError("images must be finite floating-point values")
    if images.min() < 0 or images.max() > 1:
        raise FedshieldError("images must lie in [0, 1]")
    return images.detach().float()


def _init_(net: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default Linear initialisation (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weight and
    bias), drawn from ``generator`` instead of the global stream."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                b = 1.0 / math.sqrt(m.in_features)
                for p in (m.weight, m.bias):
                    p.copy_(torch.rand(p.shape, generator=generator, dtype=p.dtype) * (2 * b) - b)


def train_inverter(updates: Tensor, images: Tensor, *, hidden: int = LEARNED_DEFAULTS["hidden"],
                   epochs: int = LEARNED_DEFAULTS["epochs"], lr: float = LEARNED_DEFAULTS["lr"],
                   batch_size: int = LEARNED_DEFAULTS["batch_size"],
                   weight_decay: float = LEARNED_DEFAULTS["weight_decay"],
                   resample: Optional[Callable[[Tensor], Tensor]] = None,
                   generator: Optional[torch.Generator] = None, progress: bool = False) -> LearnedInversion:
    """Fit the inverter on ``N`` (update, image) pairs.

    Parameters
    ----------
    updates : ``[N, P]`` the (defended) updates of the attacker's public images, N >= 2, finite.
    images : ``[N, C, H, W]`` those images, in ``[0, 1]``.
    hidden : width of the MLP's two hidden layers.
    epochs, lr, batch_size, weight_decay : Adam (decoupled weight decay: AdamW when > 0) with the
        step decayed from ``lr`` to 0 by a cosine schedule over ``epochs`` passes of mini-batches of
        ``batch_size`` pairs (the last batch of an epoch may be smaller).
    resample : ``resample(idx [b]) -> [b, P]``: the updates of pairs ``idx`` drawn afresh (a new
        draw of the defense's noise), called for every batch after the first epoch; ``None``: the
        same ``updates`` every epoch. The standardisation uses ``updates`` (the first draw).
    generator : the initialisation and the batches' order (``None``: OS entropy); the same seed
        gives the same inverter.
    progress : a tqdm bar over the epochs.

    Returns
    -------
    :class:`LearnedInversion`, in eval mode, with its ``history`` (mean training MSE per epoch) and
    ``seconds``.
    """
    u = _check_updates(updates)
    N, P = u.shape
    if N < 2:
        raise FedshieldError(f"training needs at least 2 pairs, got {N}")
    x = _check_images(images, N)
    hidden = check_positive_int(hidden, "hidden")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise FedshieldError(f"lr must be a finite number > 0, got {lr!r}")
    if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise FedshieldError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if resample is not None and not callable(resample):
        raise FedshieldError("resample must be a callable idx -> updates, or None")
    gen = generator_or_entropy(generator)
    timer = Timer()
    mean = u.mean(0)
    std = u.std(0)
    scale = torch.where(std > _STD_FLOOR * std.max().clamp_min(1e-30), std, torch.ones_like(std))
    inv = LearnedInversion(P, tuple(x.shape[1:]), hidden, mean, scale)
    _init_(inv.net, gen)
    opt = (torch.optim.AdamW(inv.net.parameters(), lr=lr, weight_decay=weight_decay) if weight_decay > 0
           else torch.optim.Adam(inv.net.parameters(), lr=lr))
    steps = epochs * math.ceil(N / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    target = x.flatten(1)
    inv.train()
    with progress_bar(progress, epochs, "learned inverter") as bar:
        for ep in range(epochs):
            order = torch.randperm(N, generator=gen)
            total = 0.0
            for i in range(0, N, batch_size):
                idx = order[i:i + batch_size]
                ub = u[idx] if (resample is None or ep == 0) else _check_updates(resample(idx), "resampled updates")
                if ub.shape != (idx.numel(), P):
                    raise FedshieldError(f"resample returned shape {tuple(ub.shape)}, expected {(idx.numel(), P)}")
                pred = torch.sigmoid(inv.net(inv.standardise(ub)))
                loss = F.mse_loss(pred, target[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * idx.numel()
            inv.history.append(total / N)
            bar.update(1)
            bar.set_postfix(mse=f"{inv.history[-1]:.4f}")
    inv.eval()
    inv.seconds = timer()
    return inv


def invert(inverter: LearnedInversion, updates: Tensor) -> AttackResult:
    """The inverter's reconstructions of ``V`` victims' (defended) updates ``[V, P]``.

    Returns an :class:`~fedshield.attacks.common.AttackResult` with ``x`` ``[V, 1, C, H, W]`` in
    ``[0, 1]`` (one image per victim), ``label`` ``[V, 1]`` of -1 (the inverter recovers no label),
    ``loss`` ``[V]`` NaN (no gradient matching: compare the reconstruction's gradient with the update
    where the model is at hand), ``history`` the training MSE per epoch ``[T, V]``, ``seconds`` the
    inversion's wall time (the training's is ``inverter.seconds``) and ``evaluations`` 0 per victim.
    """
    if not isinstance(inverter, LearnedInversion):
        raise FedshieldError("invert expects a LearnedInversion (from train_inverter)")
    u = _check_updates(updates)
    if u.shape[1] != inverter.n_inputs:
        raise FedshieldError(f"updates have {u.shape[1]} entries, the inverter was trained on {inverter.n_inputs}")
    timer = Timer()
    with torch.no_grad():
        x = inverter(u).unsqueeze(1)
    V = u.shape[0]
    hist = torch.tensor(inverter.history, dtype=torch.float64).view(-1, 1).expand(-1, V).clone()
    return AttackResult(x, torch.full((V, 1), -1, dtype=torch.long), torch.full((V,), float("nan"), dtype=torch.float64),
                        hist, timer(), [0] * V)
