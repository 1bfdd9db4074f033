"""What every gradient-leakage attack shares: the victims' updates, the attack's input checks, the
gradient-matching objectives and :class:`AttackResult`.

Victims
-------
:func:`victim_gradient` (one client, one local step: the loss gradient), :func:`victim_gradients`
(``V`` victims in one vmapped pass) and :func:`fedavg_update` (several local SGD steps, the update
``w0 - w1``).

Objectives
----------
For a dummy input ``x'`` with (soft) label ``t`` the attacker compares the gradient
``g(x', t) = d/dw CE(f_w(x'), t)`` with the shared one ``g`` on the entries of an optional mask
``w``: ``l2`` = ``|| w * (g(x', t) - g) ||^2`` (DLG) or ``cos`` =
``1 - <w g(x', t), w g> / (||w g(x', t)|| ||w g||)`` (Inverting Gradients), plus
``tv * TV(x')``. :func:`batched_objective` evaluates it for ``V`` victims at once with
``torch.func`` (``vmap`` over ``grad_and_value``, each victim's loss depending only on its own
dummy); :func:`reference_loss` is the same objective for one victim with plain autograd (the
reference path the batched one is tested against).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, vmap
from tqdm.auto import tqdm, trange

from ..errors import FedshieldError
from ..params import n_params, named_trainable, trainable
from ..utils import eval_mode, make_generator

__all__ = ["INITS", "AttackResult", "AttackProblem", "attack_problem", "victim_gradient", "victim_gradients",
           "fedavg_update", "input_shape", "n_classes", "check_target", "check_positive_int", "init_dummy",
           "param_grad_fn", "batched_objective", "reference_loss", "total_variation", "match_loss",
           "stack_results", "history_matrix", "progress_range", "progress_bar", "Timer"]

INITS = ("uniform", "randn", "gray")


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------

def input_shape(model: nn.Module, x_shape) -> tuple[int, int, int, int]:
    """One victim's input shape as ``(B, C, H, W)`` (``(C, H, W)`` means B = 1), checked by
    running the model on zeros: it must map ``[B, C, H, W]`` to ``[B, classes]`` logits."""
    try:
        shape = tuple(int(s) for s in x_shape)
    except TypeError:
        raise FedshieldError(f"x_shape must be (C, H, W) or (B, C, H, W), got {x_shape!r}") from None
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or min(shape) < 1:
        raise FedshieldError(f"x_shape must be (C, H, W) or (B, C, H, W) with positive sizes, got {x_shape!r}")
    p = next(model.parameters())
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(torch.zeros(shape, dtype=p.dtype, device=p.device))
    except RuntimeError as e:
        raise FedshieldError(f"image shape {shape[1:]} does not fit the model "
                             f"({type(model).__name__}): {str(e).splitlines()[0]}") from None
    if out.dim() != 2 or out.shape[0] != shape[0]:
        raise FedshieldError(f"the model maps {shape} to {tuple(out.shape)}; expected [B, classes] logits")
    return shape


def n_classes(model: nn.Module, shape) -> int:
    """Number of logits the model produces for inputs of ``shape``."""
    p = next(model.parameters())
    with torch.no_grad(), eval_mode(model):
        return int(model(torch.zeros(shape, dtype=p.dtype, device=p.device)).shape[1])


def check_target(model: nn.Module, target, *, batched: bool) -> Tensor:
    """The shared gradient(s), ``[P]`` (or ``[V, P]`` when ``batched``), finite, detached, on the
    model's dtype and device."""
    if not isinstance(target, Tensor):
        raise FedshieldError("the target gradient must be a torch.Tensor")
    P = n_params(model)
    want = 2 if batched else 1
    if target.dim() != want or target.shape[-1] != P:
        lead = "[V, P]" if batched else "[P]"
        raise FedshieldError(f"target gradient must be {lead} with P = {P} (the model's trainable parameters), "
                             f"got shape {tuple(target.shape)}")
    if not torch.isfinite(target).all():
        raise FedshieldError("target gradient contains NaN or Inf")
    p = next(model.parameters())
    return target.detach().to(dtype=p.dtype, device=p.device)


def _check_mask(mask, V: int, P: int, device) -> Optional[Tensor]:
    if mask is None:
        return None
    mask = torch.as_tensor(mask, device=device)
    if mask.dtype != torch.bool:
        raise FedshieldError("mask must be a boolean tensor")
    if mask.shape == (P,):
        mask = mask.expand(V, P)
    if mask.shape != (V, P):
        raise FedshieldError(f"mask must be [P] or [V, P] with P = {P}, got {tuple(mask.shape)}")
    if not mask.any(1).all():
        raise FedshieldError("mask selects no gradient entry for at least one victim")
    return mask


def _check_labels(label, V: int, B: int, K: int, device) -> Optional[Tensor]:
    if label is None:
        return None
    lab = torch.as_tensor(label, device=device)
    if lab.dtype.is_floating_point or lab.dtype == torch.bool:
        raise FedshieldError("labels must be integer class indices")
    lab = lab.to(torch.long).reshape(-1)
    if lab.numel() != V * B:
        raise FedshieldError(f"expected {V * B} labels ({V} victim(s) x batch {B}), got {lab.numel()}")
    if (lab < 0).any() or (lab >= K).any():
        raise FedshieldError(f"labels must be in [0, {K - 1}]")
    return lab.view(V, B)


def check_positive_int(v, name: str = "iterations") -> int:
    """``v`` as a positive int (bools refused), else one clear error naming ``name``."""
    if isinstance(v, bool) or int(v) != v or int(v) <= 0:
        raise FedshieldError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class AttackProblem:
    """``V`` victims to attack, validated: ``target`` ``[V, P]`` shared gradients, one victim's
    input ``shape`` ``(B, C, H, W)``, ``K`` classes, known labels ``[V, B]`` (``None``: optimised
    jointly) and the attacker's mask ``[V, P]`` (``None``: every entry)."""

    target: Tensor
    shape: tuple[int, int, int, int]
    K: int
    label: Optional[Tensor]
    mask: Optional[Tensor]

    @property
    def V(self) -> int:
        return self.target.shape[0]

    @property
    def B(self) -> int:
        return self.shape[0]

    def with_label(self, label) -> "AttackProblem":
        """The same problem with known labels ``label`` (``[V, B]`` or ``[V]``), validated."""
        return replace(self, label=_check_labels(label, self.V, self.B, self.K, self.target.device))

    def onehot(self) -> Optional[Tensor]:
        """``[V, B, K]`` one-hot targets of the known labels (``None`` when unknown)."""
        return None if self.label is None else F.one_hot(self.label, self.K).to(self.target.dtype)


def attack_problem(model: nn.Module, target_grads: Tensor, x_shape, *, label=None, mask=None) -> AttackProblem:
    """Validate an attack's inputs once (shapes, labels in range, a mask that keeps an entry)."""
    target = check_target(model, target_grads, batched=True)
    V, P = target.shape
    shape = input_shape(model, x_shape)
    K = n_classes(model, shape)
    dev = target.device
    return AttackProblem(target, shape, K, _check_labels(label, V, shape[0], K, dev), _check_mask(mask, V, P, dev))


def init_dummy(init, V: int, shape, generator: torch.Generator, dtype, device) -> Tensor:
    """Starting images ``[V, B, C, H, W]``: 'uniform' U[0, 1] (DLG's ``torch.rand``), 'randn'
    N(0, 1) (DLG's other choice), 'gray' N(0.5, 0.25^2) (Inverting Gradients' ``randn`` in its
    normalised coordinates, std ~0.25, mapped to [0, 1] pixels), or an explicit tensor."""
    full = (V,) + tuple(shape)
    if isinstance(init, Tensor):
        x = init.detach().to(dtype=dtype, device=device)
        if x.shape != full and x.numel() == math.prod(full) and x.shape[-3:] == full[-3:]:
            x = x.reshape(full)
        if x.shape != full:
            raise FedshieldError(f"init tensor must have shape {full}, got {tuple(x.shape)}")
        return x.clone()
    gdev = generator.device
    if init == "uniform":
        return torch.rand(full, generator=generator, dtype=dtype, device=gdev).to(device)
    if init == "randn":
        return torch.randn(full, generator=generator, dtype=dtype, device=gdev).to(device)
    if init == "gray":
        return (0.5 + 0.25 * torch.randn(full, generator=generator, dtype=dtype, device=gdev)).to(device)
    raise FedshieldError(f"unknown init {init!r}; choose from {list(INITS)} or pass a tensor")


def generator_or_entropy(generator: Optional[torch.Generator]) -> torch.Generator:
    """``generator``, or a fresh OS-entropy one when ``None``."""
    return generator if generator is not None else make_generator(None)


# ----------------------------------------------------------------------------------------------
# victims
# ----------------------------------------------------------------------------------------------

def _ce_soft(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy with a probability target, mean over the batch:
    ``mean_b sum_k -t_bk log softmax(logits)_bk`` (equals ``F.cross_entropy`` for one-hot t)."""
    return -(target * logits.log_softmax(-1)).sum(-1).mean()


def victim_gradient(model: nn.Module, x: Tensor, y: Tensor, *, loss_fn: Optional[Callable] = None) -> Tensor:
    """The flat loss gradient a client shares after one local step on ``(x, y)``.

    ``g = d/dw (1/B) sum_b loss(f_w(x_b), y_b)``, flattened in ``model.parameters()`` order
    (trainable tensors only). The model runs in eval mode.

    Parameters
    ----------
    model : the global model.
    x : ``[B, C, H, W]`` images (or one ``[C, H, W]`` image), B >= 1.
    y : ``[B]`` int64 labels (or a scalar).
    loss_fn : ``loss_fn(logits, y) -> scalar``; default softmax cross-entropy (mean).
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    y = torch.as_tensor(y, device=x.device).reshape(-1).long()
    if x.dim() != 4 or x.shape[0] < 1 or y.numel() != x.shape[0]:
        raise FedshieldError(f"x must be [B, C, H, W] with B >= 1 and y [B]; got {tuple(x.shape)} and {tuple(y.shape)}")
    input_shape(model, x.shape)
    loss_fn = loss_fn or F.cross_entropy
    params = trainable(model)
    with eval_mode(model), torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(model(x), y), params)
    return torch.cat([g.reshape(-1) for g in grads]).detach()


def _functional(model: nn.Module):
    """``(names, trainable params, constants)`` for ``torch.func.functional_call``."""
    named = named_trainable(model)
    names = [n for n, _ in named]
    params = {n: p.detach() for n, p in named}
    buffers = {n: b for n, b in model.named_buffers()}
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    return names, params, {**buffers, **frozen}


def param_grad_fn(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """``pgrad(x, t) -> flat [P]``: the loss gradient for images x ``[B, C, H, W]`` and probability
    targets t ``[B, K]``, written with torch.func so that it vmaps and differentiates in x."""
    names, params, consts = _functional(model)

    def loss(p, x, t):
        return _ce_soft(functional_call(model, ({**p, **consts},), (x,)), t)

    def pgrad(x, t):
        g = grad(loss)(params, x, t)
        return torch.cat([g[n].reshape(-1) for n in names])

    return pgrad


def victim_gradients(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per-victim gradients ``[V, P]`` for ``V`` victims of batch ``B`` each, in one vectorised
    pass: ``x`` ``[V, B, C, H, W]`` (or ``[V, C, H, W]`` for B = 1), ``y`` ``[V, B]`` (or ``[V]``).
    Row v equals ``victim_gradient(model, x[v], y[v])``."""
    if x.dim() == 4:
        x = x.unsqueeze(1)
    y = torch.as_tensor(y, device=x.device).long()
    if y.dim() == 1:
        y = y.unsqueeze(1)
    if x.dim() != 5 or y.shape != x.shape[:2]:
        raise FedshieldError(f"x must be [V, B, C, H, W] and y [V, B]; got {tuple(x.shape)} and {tuple(y.shape)}")
    shape = input_shape(model, x.shape[1:])
    K = n_classes(model, shape)
    with eval_mode(model):
        pgrad = param_grad_fn(model)
        onehot = F.one_hot(y, K).to(x.dtype)
        return vmap(pgrad)(x, onehot).detach()


def fedavg_update(model: nn.Module, x: Tensor, y: Tensor, *, lr: float = 1e-2, epochs: int = 1,
                  batch_size: Optional[int] = None) -> Tensor:
    """A FedAvg client update ``w0 - w1`` after ``epochs`` passes of plain SGD (step ``lr``) over
    ``(x, y)`` in consecutive mini-batches of ``batch_size`` (default: the whole set).

    With one step, ``w0 - w1 = lr * victim_gradient(...)``; with several, the update mixes the
    gradients along the local trajectory (the multi-step setting of Geiping et al., Sec. 5).
    The model is not modified.
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    y = torch.as_tensor(y, device=x.device).reshape(-1).long()
    if x.shape[0] != y.numel() or x.shape[0] < 1:
        raise FedshieldError("x and y must hold the same number (>= 1) of samples")
    if not lr > 0:
        raise FedshieldError(f"lr must be > 0, got {lr}")
    epochs = check_positive_int(epochs, "epochs")
    bs = x.shape[0] if batch_size is None else int(batch_size)
    if bs < 1:
        raise FedshieldError(f"batch_size must be >= 1, got {batch_size}")
    names, params, consts = _functional(model)
    w = dict(params)

    def loss(p, xb, yb):
        return F.cross_entropy(functional_call(model, ({**p, **consts},), (xb,)), yb)

    with eval_mode(model):
        for _ in range(epochs):
            for i in range(0, x.shape[0], bs):
                g = grad(loss)(w, x[i:i + bs], y[i:i + bs])
                w = {n: w[n] - lr * g[n] for n in names}
    return torch.cat([(params[n] - w[n]).reshape(-1) for n in names]).detach()


# ----------------------------------------------------------------------------------------------
# the per-victim objective (torch.func) and the reference objective (plain autograd)
# ----------------------------------------------------------------------------------------------

def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation of Inverting Gradients:
    ``mean |x[..., :, 1:] - x[..., :, :-1]| + mean |x[..., 1:, :] - x[..., :-1, :]|``."""
    return (x[..., :, 1:] - x[..., :, :-1]).abs().mean() + (x[..., 1:, :] - x[..., :-1, :]).abs().mean()


def match_loss(g: Tensor, target: Tensor, w: Optional[Tensor], cost: str) -> Tensor:
    """Gradient-matching cost on the entries of ``w``: ``'l2'`` (squared distance, DLG) or
    ``'cos'`` (1 - cosine similarity, Inverting Gradients' 'sim')."""
    if w is not None:
        g = g * w
        target = target * w
    if cost == "l2":
        return ((g - target) ** 2).sum()
    return 1.0 - (g * target).sum() / (g.norm() * target.norm()).clamp_min(1e-30)


def _soft_targets(lab_logits: Optional[Tensor], onehot: Optional[Tensor]) -> Tensor:
    return onehot if lab_logits is None else lab_logits.softmax(-1)


def batched_objective(model: nn.Module, cost: str, tv: float):
    """``run(x [V,B,C,H,W], l [V,B,K] or None, target [V,P], w [V,P] or None, onehot)`` ->
    ``(grad_x, grad_l or None), (loss [V], match [V])`` with each victim's own loss
    ``match + tv * TV(x)``."""
    pgrad = param_grad_fn(model)

    def obj(x, lab, target, w, onehot):
        m = match_loss(pgrad(x, _soft_targets(lab, onehot)), target, w, cost)
        loss = m + tv * total_variation(x) if tv else m
        return loss, m

    def run(x, lab, target, w, onehot):
        argnums = (0,) if lab is None else (0, 1)
        f = vmap(grad_and_value(obj, argnums=argnums, has_aux=True),
                 in_dims=(0, None if lab is None else 0, 0, None if w is None else 0,
                          None if onehot is None else 0))
        grads, (loss, m) = f(x, lab, target, w, onehot)
        return (grads[0], grads[1] if lab is not None else None), (loss.detach(), m.detach())

    return run


def reference_loss(model: nn.Module, params: Sequence[Tensor], x: Tensor, lab: Optional[Tensor], *,
                   target: Tensor, mask: Optional[Tensor], onehot: Optional[Tensor], cost: str,
                   tv: float) -> tuple[Tensor, Tensor]:
    """Plain-autograd objective of one victim (the per-image reference path):
    ``(match + tv * TV(x), match)``, differentiable in ``x`` (and the label logits ``lab``)."""
    t = _soft_targets(lab, onehot)
    g = torch.autograd.grad(_ce_soft(model(x), t), params, create_graph=True)
    m = match_loss(torch.cat([gi.reshape(-1) for gi in g]), target, mask, cost)
    return (m + tv * total_variation(x) if tv else m), m


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------

@dataclass
class AttackResult:
    """What an attack returns.

    Attributes
    ----------
    x : reconstructions, ``[B, C, H, W]`` for one victim or ``[V, B, C, H, W]`` for a batch.
    label : the labels used or recovered (argmax of the optimised soft label), ``[B]`` / ``[V, B]``.
    loss : final gradient-matching loss (DLG: squared L2; IG: 1 - cosine, no TV), scalar / ``[V]``.
    history : loss per iteration, ``[T]`` / ``[T, V]`` (L-BFGS: the loss at the start of each step).
    seconds : wall time.
    evaluations : gradient-matching evaluations (per victim for a batch).
    """

    x: Tensor
    label: Tensor
    loss: Tensor
    history: Tensor
    seconds: float = 0.0
    evaluations: Any = 0

    def __getitem__(self, v: int) -> "AttackResult":
        """Victim ``v`` of a batched result."""
        ev = self.evaluations[v] if isinstance(self.evaluations, (list, tuple, Tensor)) else self.evaluations
        return AttackResult(self.x[v], self.label[v], self.loss[v], self.history[:, v],
                            self.seconds / max(1, self.x.shape[0]), int(ev))

    def single(self) -> "AttackResult":
        """The only victim of a one-victim batched result, with the batch's wall time."""
        return AttackResult(self.x[0], self.label[0], self.loss[0], self.history[:, 0], self.seconds,
                            self.evaluations[0])


def history_matrix(hist: Sequence[Sequence[float]]) -> Tensor:
    """``[T, V]`` float64 from per-victim loss lists of different lengths; a victim that stopped
    early repeats its last value (NaN when it has none)."""
    T = max(len(h) for h in hist)
    H = torch.full((T, len(hist)), float("nan"), dtype=torch.float64)
    for v, h in enumerate(hist):
        h = torch.as_tensor(h, dtype=torch.float64)
        H[:len(h), v] = h
        H[len(h):, v] = h[-1] if len(h) else float("nan")
    return H


def stack_results(results: Sequence[AttackResult], seconds: float) -> AttackResult:
    """One batched result from per-victim results."""
    return AttackResult(torch.stack([r.x for r in results]), torch.stack([r.label for r in results]),
                        torch.stack([torch.as_tensor(r.loss, dtype=torch.float64) for r in results]),
                        history_matrix([r.history for r in results]), seconds,
                        [int(r.evaluations) for r in results])


def as_batch(target_grad: Tensor, mask, label):
    """A one-victim attack's ``[P]`` gradient, ``[P]`` mask and ``[B]`` labels as a batch of 1."""
    if mask is not None:
        mask = torch.as_tensor(mask)
        mask = mask.unsqueeze(0) if mask.dim() == 1 else mask
    if label is not None:
        label = torch.as_tensor(label).reshape(1, -1)
    return target_grad.unsqueeze(0), mask, label


def progress_range(n: int, progress: bool, desc: str):
    """``range(n)`` with a tqdm bar when ``progress``."""
    return trange(n, desc=desc, disable=not progress, leave=False)


def progress_bar(progress: bool, total: int, desc: str):
    """A tqdm bar (silent unless ``progress``)."""
    return tqdm(total=total, desc=desc, disable=not progress, leave=False)


class Timer:
    """Wall time since construction: ``Timer()()`` -> seconds."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0
