"""Gradient leakage attacks: DLG, Inverting Gradients, label inference, attack experiments.

Threat model (the paper's, Section 3): an honest-but-curious server sees the update one client
shares and the global model it was computed on, and searches for the input that explains it.

Attacks
-------
- :func:`dlg` -- *Deep Leakage from Gradients* (Zhu et al. 2019; the paper's "DGA"). Minimise
  ``D(x') = || w * (g(x', y') - g) ||_2^2`` over a dummy image ``x'`` (and, when the label is
  unknown, a soft label ``y' = softmax(l)``) with L-BFGS, learning rate 1, no line search, as in
  the reference code. One *iteration* is one ``torch.optim.LBFGS.step`` (up to ``max_iter = 20``
  inner L-BFGS updates), which is what "300 iterations" means in the reference code.
- :func:`inverting_gradients` -- Geiping et al. 2020 (the paper's "GIA"). Minimise
  ``1 - <w*g(x'), w*g> / (||w*g(x')|| ||w*g||) + tv * TV(x')`` with Adam on the *signed* gradient,
  projecting ``x'`` onto the box ``[0, 1]`` after every step, learning rate divided by 10 at 3/8,
  5/8 and 7/8 of the run, and ``restarts`` random starts of which the one with the lowest gradient
  loss (without TV) is kept.
- :func:`infer_label` -- the iDLG rule: with softmax cross-entropy and one sample, the gradient of
  the last layer's bias is ``p - onehot(y)``, negative exactly at the true class, and the weight
  gradient's row ``c`` is ``(p_c - [c = y]) r`` for a non-negative representation ``r``.

``w`` is an optional boolean mask over the flat gradient ("muted" attacks match only the entries
an adaptive attacker trusts, e.g. everything except the FC layer against PLD, or the slices that
do not look noisy against the paper's defense: :func:`detect_noisy_slices`).

Many victims at once
--------------------
``dlg_batch`` and ``inverting_gradients_batch`` attack ``V`` victims together while keeping each
optimisation *exactly* per victim: the per-victim gradient-matching loss and its gradient come
from ``torch.func.vmap`` over ``torch.func.grad`` (each victim's loss depends only on its own
dummy), so

- Adam (per-coordinate state, a learning-rate schedule shared by all victims) over the stacked
  ``[V, ...]`` tensor *is* ``V`` independent Adams; the sign and the box projection are per
  coordinate too.
- L-BFGS is not separable (its history, step size and stopping tests are global), so we run a
  batched L-BFGS with a per-victim history ``[V, m, n]``, per-victim curvature test, step size,
  tolerances and outer/inner iteration counters: a vectorised re-implementation of
  ``torch.optim.LBFGS`` (no line search) that follows, for every victim, the same trajectory as
  its own ``torch.optim.LBFGS`` (up to floating-point rounding; tested). Victims that have
  converged stop being evaluated.

``vectorized=False`` runs the plain per-image loop (``torch.optim.LBFGS`` / ``torch.optim.Adam``
with ordinary autograd) -- the reference the benchmark compares against.

All attack functions run the model in ``eval`` mode (BatchNorm uses its running statistics, as in
Inverting Gradients' experiments) and assume softmax cross-entropy, the loss of the paper's
classifiers. Images are float32 NCHW in ``[0, 1]``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import FedshieldError
from .utils import make_generator

__all__ = [
    "AttackResult", "AttackConfig", "victim_gradient", "victim_gradients", "fedavg_update",
    "infer_label", "dlg", "dlg_batch", "inverting_gradients", "inverting_gradients_batch",
    "param_ranges", "fc_mask", "slice_mask", "detect_noisy_slices", "gradient_reference", "run_attack", "ATTACKS",
]

ATTACKS = ("dlg", "ig")
INITS = ("uniform", "randn", "gray")


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def _named_trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise FedshieldError("the model has no trainable parameters")
    return named


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for _, p in _named_trainable(model))


def param_ranges(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``{parameter name: (start, stop)}`` of each trainable tensor in the flat gradient
    (``model.parameters()`` order)."""
    out, i = {}, 0
    for n, p in _named_trainable(model):
        out[n] = (i, i + p.numel())
        i += p.numel()
    return out


def _fc_ranges(model: nn.Module) -> tuple[tuple[int, int], Optional[tuple[int, int]]]:
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise FedshieldError("the model has no `fc` nn.Linear output layer (see fedshield.models)")
    ranges = param_ranges(model)
    names = {id(p): n for n, p in model.named_parameters()}
    w = ranges.get(names.get(id(fc.weight), ""))
    if w is None:
        raise FedshieldError("the FC layer's weight is not trainable")
    b = ranges.get(names.get(id(fc.bias), "")) if fc.bias is not None else None
    return w, b


def fc_mask(model: nn.Module) -> Tensor:
    """Boolean ``[P]`` mask, ``False`` on the FC layer's weight and bias: the entries a
    PLD-muted attacker matches (it drops the layer PLD perturbs)."""
    mask = torch.ones(_n_params(model), dtype=torch.bool)
    w, b = _fc_ranges(model)
    mask[w[0]:w[1]] = False
    if b is not None:
        mask[b[0]:b[1]] = False
    return mask


def _as_shape(model: nn.Module, x_shape) -> tuple[int, int, int, int]:
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
        with torch.no_grad(), _eval_mode(model):
            out = model(torch.zeros(shape, dtype=p.dtype, device=p.device))
    except RuntimeError as e:
        raise FedshieldError(f"image shape {shape[1:]} does not fit the model "
                             f"({type(model).__name__}): {str(e).splitlines()[0]}") from None
    if out.dim() != 2 or out.shape[0] != shape[0]:
        raise FedshieldError(f"the model maps {shape} to {tuple(out.shape)}; expected [B, classes] logits")
    return shape


def _n_classes(model: nn.Module, shape) -> int:
    p = next(model.parameters())
    with torch.no_grad(), _eval_mode(model):
        return int(model(torch.zeros(shape, dtype=p.dtype, device=p.device)).shape[1])


def _check_targets(model: nn.Module, target: Tensor, *, batched: bool) -> Tensor:
    if not isinstance(target, Tensor):
        raise FedshieldError("the target gradient must be a torch.Tensor")
    P = _n_params(model)
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


def _check_iterations(iterations) -> int:
    if isinstance(iterations, bool) or int(iterations) != iterations or int(iterations) <= 0:
        raise FedshieldError(f"iterations must be a positive integer, got {iterations!r}")
    return int(iterations)


def _init_dummy(init, V: int, shape, generator, dtype, device) -> Tensor:
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


def _gen(generator) -> torch.Generator:
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
    _as_shape(model, x.shape)
    loss_fn = loss_fn or F.cross_entropy
    params = [p for _, p in _named_trainable(model)]
    with _eval_mode(model), torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(model(x), y), params)
    return torch.cat([g.reshape(-1) for g in grads]).detach()


def _functional(model: nn.Module):
    named = _named_trainable(model)
    names = [n for n, _ in named]
    params = {n: p.detach() for n, p in named}
    buffers = {n: b for n, b in model.named_buffers()}
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    return names, params, {**buffers, **frozen}


def _param_grad_fn(model: nn.Module):
    """``pgrad(x, t) -> flat [P]``: the loss gradient for images x ``[B, C, H, W]`` and probability
    targets t ``[B, K]``, written with torch.func so that it vmaps and differentiates in x."""
    from torch.func import functional_call, grad

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
    from torch.func import vmap

    if x.dim() == 4:
        x = x.unsqueeze(1)
    y = torch.as_tensor(y, device=x.device).long()
    if y.dim() == 1:
        y = y.unsqueeze(1)
    if x.dim() != 5 or y.shape != x.shape[:2]:
        raise FedshieldError(f"x must be [V, B, C, H, W] and y [V, B]; got {tuple(x.shape)} and {tuple(y.shape)}")
    shape = _as_shape(model, x.shape[1:])
    K = _n_classes(model, shape)
    with _eval_mode(model):
        pgrad = _param_grad_fn(model)
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
    epochs = _check_iterations(epochs)
    bs = x.shape[0] if batch_size is None else int(batch_size)
    if bs < 1:
        raise FedshieldError(f"batch_size must be >= 1, got {batch_size}")
    from torch.func import functional_call, grad

    names, params, consts = _functional(model)
    w = dict(params)

    def loss(p, xb, yb):
        return F.cross_entropy(functional_call(model, ({**p, **consts},), (xb,)), yb)

    with _eval_mode(model):
        for _ in range(epochs):
            for i in range(0, x.shape[0], bs):
                g = grad(loss)(w, x[i:i + bs], y[i:i + bs])
                w = {n: w[n] - lr * g[n] for n in names}
    return torch.cat([(params[n] - w[n]).reshape(-1) for n in names]).detach()


def infer_label(grad_flat: Tensor, model: nn.Module, *, batch_size: int = 1) -> Tensor:
    """Recover the label(s) from a shared gradient with the iDLG rule.

    For one sample and softmax cross-entropy, ``dL/db = p - onehot(y)`` is negative only at
    ``y`` and ``dL/dW_c = (p_c - [c = y]) r`` with ``r >= 0`` (sigmoid / ReLU features), so
    ``y = argmin_c dL/db_c`` (when the FC layer has a bias) else ``argmin_c sum_j dL/dW_cj``.
    For ``batch_size = B > 1`` the ``B`` most negative entries are returned (a heuristic: exact
    only when the B labels are distinct and dominate the other classes' terms).

    Returns ``LongTensor [B]`` (``[V, B]`` for a ``[V, P]`` input).
    """
    batched = grad_flat.dim() == 2
    g = _check_targets(model, grad_flat, batched=batched)
    g = g if batched else g.unsqueeze(0)
    (w0, w1), b = _fc_ranges(model)
    K = model.fc.out_features
    if not 1 <= batch_size <= K:
        raise FedshieldError(f"batch_size must be in [1, {K}], got {batch_size}")
    if b is not None:
        score = g[:, b[0]:b[1]]
    else:
        score = g[:, w0:w1].view(g.shape[0], K, -1).sum(-1)
    lab = score.topk(batch_size, dim=1, largest=False).indices
    return lab if batched else lab[0]


# ----------------------------------------------------------------------------------------------
# the per-victim objective (torch.func) and the reference objective (plain autograd)
# ----------------------------------------------------------------------------------------------

def _tv(x: Tensor) -> Tensor:
    """Anisotropic total variation of Inverting Gradients:
    ``mean |x[..., :, 1:] - x[..., :, :-1]| + mean |x[..., 1:, :] - x[..., :-1, :]|``."""
    return (x[..., :, 1:] - x[..., :, :-1]).abs().mean() + (x[..., 1:, :] - x[..., :-1, :]).abs().mean()


def _match(g: Tensor, target: Tensor, w: Optional[Tensor], cost: str) -> Tensor:
    if w is not None:
        g = g * w
        target = target * w
    if cost == "l2":
        return ((g - target) ** 2).sum()
    # 1 - cosine similarity (Inverting Gradients' 'sim' cost)
    return 1.0 - (g * target).sum() / (g.norm() * target.norm()).clamp_min(1e-30)


def _targets_of(lab_logits: Optional[Tensor], onehot: Optional[Tensor]) -> Tensor:
    return onehot if lab_logits is None else lab_logits.softmax(-1)


def _batched_objective(model: nn.Module, cost: str, tv: float):
    """``vg(x [V,B,C,H,W], l [V,B,K] or None, target [V,P], w [V,P] or None, onehot)`` ->
    ``(grad_x, grad_l or None), (loss [V], match [V])`` with each victim's own loss."""
    from torch.func import grad_and_value, vmap

    pgrad = _param_grad_fn(model)

    def obj(x, lab, target, w, onehot):
        m = _match(pgrad(x, _targets_of(lab, onehot)), target, w, cost)
        loss = m + tv * _tv(x) if tv else m
        return loss, m

    def run(x, lab, target, w, onehot):
        argnums = (0,) if lab is None else (0, 1)
        f = vmap(grad_and_value(obj, argnums=argnums, has_aux=True),
                 in_dims=(0, None if lab is None else 0, 0, None if w is None else 0,
                          None if onehot is None else 0))
        grads, (loss, m) = f(x, lab, target, w, onehot)
        return (grads[0], grads[1] if lab is not None else None), (loss.detach(), m.detach())

    return run


def _reference_loss(model, params, x, lab, target, w, onehot, cost, tv):
    """Plain-autograd objective of one victim (the per-image reference path)."""
    t = _targets_of(lab, onehot)
    g = torch.autograd.grad(_ce_soft(model(x), t), params, create_graph=True)
    m = _match(torch.cat([gi.reshape(-1) for gi in g]), target, w, cost)
    return (m + tv * _tv(x) if tv else m), m


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


def _stack_results(results: Sequence[AttackResult], seconds: float) -> AttackResult:
    T = max(r.history.shape[0] for r in results)
    hist = torch.full((T, len(results)), float("nan"), dtype=torch.float64)
    for v, r in enumerate(results):
        h = r.history.to(torch.float64)
        hist[:h.shape[0], v] = h
        if h.shape[0] < T:
            hist[h.shape[0]:, v] = h[-1]
    return AttackResult(torch.stack([r.x for r in results]), torch.stack([r.label for r in results]),
                        torch.stack([torch.as_tensor(r.loss, dtype=torch.float64) for r in results]),
                        hist, seconds, [int(r.evaluations) for r in results])


def _progress_bar(progress: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False)


# ----------------------------------------------------------------------------------------------
# L-BFGS: reference (torch.optim.LBFGS) and batched with per-victim state
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def _lbfgs_batched(fg: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], z: Tensor, *, steps: int,
                   max_iter: int = 20, lr: float = 1.0, history_size: int = 100,
                   tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                   progress: bool = False) -> tuple[Tensor, list[list[float]], Tensor]:
    """``steps`` calls of ``torch.optim.LBFGS(max_iter, lr, history_size, tolerances,
    line_search_fn=None).step`` for each row of ``z`` ``[V, n]``, vectorised over rows.

    ``fg(z_sub [A, n], idx [A]) -> (loss [A], grad [A, n])`` evaluates the victims ``idx``.
    Every victim keeps its own history (``[V, m, n]`` ring of (s, y) pairs, in chronological
    order), its own curvature test ``y's > 1e-10``, initial step ``min(1, 1/|g|_1) lr`` and
    ``H0 = y's / y'y``, and its own inner/outer iteration counters and stopping tests, exactly
    as ``torch.optim.LBFGS`` does for one victim:

    * an outer step starts with an evaluation; it ends after ``max_iter`` updates (the last
      update is not evaluated until the next step) or when, after an update, ``max|g| <= tol_grad``,
      ``max|t d| <= tol_change`` or ``|f - f_prev| < tol_change`` (the next step re-evaluates the
      same point, which we reuse: it is the same number);
    * ``max|g| <= tol_grad`` at the start of a step, or a non-descent direction
      ``g'd > -tol_change``, leaves torch's optimiser at the same point for ever: the victim stops.

    Returns the final ``z``, each victim's loss at the start of every outer step, and the number
    of evaluations per victim.
    """
    V, n = z.shape
    dev, dt = z.device, z.dtype
    H = int(history_size)
    S = torch.zeros(V, H, n, dtype=dt, device=dev)
    Yh = torch.zeros(V, H, n, dtype=dt, device=dev)
    rho = torch.zeros(V, H, dtype=dt, device=dev)
    cnt = torch.zeros(V, dtype=torch.long, device=dev)
    h_diag = torch.ones(V, dtype=dt, device=dev)
    d = torch.zeros(V, n, dtype=dt, device=dev)
    t = torch.zeros(V, dtype=dt, device=dev)
    g = torch.zeros(V, n, dtype=dt, device=dev)
    prev_g = torch.zeros(V, n, dtype=dt, device=dev)
    loss = torch.zeros(V, dtype=torch.float64, device=dev)
    prev_loss = torch.zeros(V, dtype=torch.float64, device=dev)
    n_total = torch.zeros(V, dtype=torch.long, device=dev)
    inner = torch.zeros(V, dtype=torch.long, device=dev)
    outer = torch.zeros(V, dtype=torch.long, device=dev)
    evals = torch.zeros(V, dtype=torch.long, device=dev)
    done = torch.zeros(V, dtype=torch.bool, device=dev)
    in_step = torch.zeros(V, dtype=torch.bool, device=dev)  # last action was an evaluated inner update
    hist: list[list[float]] = [[] for _ in range(V)]
    bar = _progress_bar(progress, steps, "DLG (L-BFGS)")
    try:
        while not bool(done.all()):
            act = (~done).nonzero().squeeze(1)
            la, ga = fg(z[act], act)
            loss[act] = la.to(torch.float64)
            g[act] = ga
            evals[act] += 1
            a = torch.zeros(V, dtype=torch.bool, device=dev)
            a[act] = True
            opt = g.abs().amax(1) <= tolerance_grad
            # stopping tests after an evaluated inner update
            chk = a & in_step
            brk = chk & (opt | ((d * t[:, None]).abs().amax(1) <= tolerance_change)
                         | ((loss - prev_loss).abs() < tolerance_change))
            outer += brk.long()
            inner[brk] = 0
            done |= brk & (outer >= steps)
            # victims at the start of an outer step (fresh or same point)
            e0 = a & ~done & (~in_step | brk)
            for v in e0.nonzero().squeeze(1).tolist():
                hist[v].append(float(loss[v]))
            done |= e0 & opt
            go = a & ~done
            if not bool(go.any()):
                break
            inner += go.long()
            n_total += go.long()
            first = go & (n_total == 1)
            upd = go & ~first
            # --- memory update (y = g - g_prev, s = t d) for victims past their first iteration
            yv = g - prev_g
            s = d * t[:, None]
            ys = (yv * s).sum(1)
            acc = upd & (ys > 1e-10)
            full = acc & (cnt == H)
            if bool(full.any()):
                S[full] = S[full].roll(-1, dims=1)
                Yh[full] = Yh[full].roll(-1, dims=1)
                rho[full] = rho[full].roll(-1, dims=1)
                cnt[full] -= 1
            if bool(acc.any()):
                ai = acc.nonzero().squeeze(1)
                pos = cnt[ai]
                S[ai, pos] = s[ai]
                Yh[ai, pos] = yv[ai]
                rho[ai, pos] = 1.0 / ys[ai]
                h_diag[ai] = ys[ai] / (yv[ai] * yv[ai]).sum(1)
                cnt[ai] += 1
            # --- two-loop recursion, all victims at once (masked by each one's history length)
            q = -g
            m_max = int(cnt[upd].max()) if bool(upd.any()) else 0
            if m_max:
                # rho masked to 0 outside a victim's history (and for victims not updating):
                # then alpha = beta = 0 there and the step changes nothing.
                valid = (torch.arange(m_max, device=dev)[None, :] < cnt[:, None]) & upd[:, None]
                rv = rho[:, :m_max] * valid.to(dt)
                al = torch.zeros(V, m_max, dtype=dt, device=dev)
                for i in range(m_max - 1, -1, -1):
                    al[:, i] = torch.linalg.vecdot(S[:, i], q) * rv[:, i]
                    q.addcmul_(Yh[:, i], al[:, i, None], value=-1.0)
                r = q * h_diag[:, None]
                for i in range(m_max):
                    be = torch.linalg.vecdot(Yh[:, i], r) * rv[:, i]
                    r.addcmul_(S[:, i], (al[:, i] - be)[:, None])
            else:
                r = q * h_diag[:, None]
            new_d = torch.where(first[:, None], -g, r)
            d = torch.where(go[:, None], new_d, d)
            prev_g = torch.where(go[:, None], g, prev_g)
            prev_loss = torch.where(go, loss, prev_loss)
            t0 = torch.clamp(1.0 / g.abs().sum(1), max=1.0) * lr
            t = torch.where(go, torch.where(first, t0, torch.full_like(t0, lr)), t)
            gtd = (g * d).sum(1)
            stuck = go & (gtd > -tolerance_change)
            done |= stuck
            mv = go & ~stuck
            z = z + torch.where(mv[:, None], t[:, None] * d, torch.zeros((), dtype=dt, device=dev))
            end = mv & (inner == max_iter)
            outer += end.long()
            inner[end] = 0
            done |= end & (outer >= steps)
            in_step = mv & ~end
            live = outer[~done]
            bar.n = int(live.min()) if live.numel() else steps
            bar.refresh()
    finally:
        bar.close()
    return z, hist, evals


def _dlg_reference(model, target, shape, K, label, init_x, init_l, mask, iterations, lr, max_iter,
                   history_size, progress):
    """One victim with ``torch.optim.LBFGS`` and plain autograd (the DLG reference code path)."""
    params = [p for _, p in _named_trainable(model)]
    x = init_x.clone().requires_grad_(True)
    lab = None if init_l is None else init_l.clone().requires_grad_(True)
    onehot = None if label is None else F.one_hot(label, K).to(x.dtype)
    w = None if mask is None else mask.to(x.dtype)
    opt = torch.optim.LBFGS([x] if lab is None else [x, lab], lr=lr, max_iter=max_iter,
                            history_size=history_size)
    evals = [0]

    def closure():
        opt.zero_grad()
        evals[0] += 1
        loss, _ = _reference_loss(model, params, x, lab, target, w, onehot, "l2", 0.0)
        loss.backward()
        return loss

    hist = []
    for _ in tqdm_range(iterations, progress, "DLG (L-BFGS, one image)"):
        hist.append(float(opt.step(closure).detach()))
    with torch.enable_grad():
        _, final = _reference_loss(model, params, x, lab, target, w, onehot, "l2", 0.0)
    lab_out = label if lab is None else lab.detach().argmax(-1)
    return x.detach(), lab_out, float(final.detach()), torch.tensor(hist, dtype=torch.float64), evals[0]


def tqdm_range(n: int, progress: bool, desc: str):
    from tqdm.auto import trange

    return trange(n, desc=desc, disable=not progress, leave=False)


def dlg_batch(model: nn.Module, target_grads: Tensor, x_shape, *, label=None, iterations: int = 500,
              lr: float = 1.0, init="uniform", mask=None, generator: Optional[torch.Generator] = None,
              max_iter: int = 20, history_size: int = 100, vectorized: bool = True,
              progress: bool = False) -> AttackResult:
    """DLG against ``V`` victims at once.

    Minimises, for every victim v independently, ``D_v = || w_v * (g(x'_v, y'_v) - g_v) ||^2``
    where ``g(x', y')`` is the cross-entropy gradient of the model at the dummy ``x'`` with label
    ``y'`` (fixed one-hot when ``label`` is given, else ``softmax(l)`` with logits ``l ~ N(0, 1)``
    optimised jointly, as in DLG).

    Parameters
    ----------
    model : the global model the victims' gradients were computed on.
    target_grads : ``[V, P]`` shared gradients.
    x_shape : one victim's input shape ``(C, H, W)`` (batch 1) or ``(B, C, H, W)``.
    label : ``None`` (joint soft label) or int labels ``[V, B]`` (or ``[V]`` for B = 1).
    iterations : L-BFGS steps (each up to ``max_iter`` inner updates; paper: 500, DLG code: 300).
    lr : L-BFGS learning rate (1, as DLG).
    init : 'uniform' (U[0,1], default), 'randn', 'gray', or a ``[V, B, C, H, W]`` tensor.
    mask : boolean ``[P]`` or ``[V, P]``: match only these gradient entries.
    generator : randomness of the starting point (default: OS entropy).
    vectorized : True: the batched L-BFGS with per-victim state (see :func:`_lbfgs_batched`);
        False: a loop of ``torch.optim.LBFGS``, one victim after the other.
    """
    t0 = time.perf_counter()
    iterations = _check_iterations(iterations)
    if not lr > 0:
        raise FedshieldError(f"lr must be > 0, got {lr}")
    target = _check_targets(model, target_grads, batched=True)
    V = target.shape[0]
    shape = _as_shape(model, x_shape)
    B = shape[0]
    K = _n_classes(model, shape)
    p0 = next(model.parameters())
    lab = _check_labels(label, V, B, K, p0.device)
    w = _check_mask(mask, V, target.shape[1], p0.device)
    gen = _gen(generator)
    x0 = _init_dummy(init, V, shape, gen, p0.dtype, p0.device)
    l0 = None if lab is not None else torch.randn(V, B, K, generator=gen, dtype=p0.dtype, device=gen.device).to(p0.device)

    with _eval_mode(model):
        if not vectorized:
            res = []
            for v in range(V):
                x, lv, fl, h, ev = _dlg_reference(
                    model, target[v], shape, K, None if lab is None else lab[v], x0[v],
                    None if l0 is None else l0[v], None if w is None else w[v], iterations, lr, max_iter,
                    history_size, progress)
                res.append(AttackResult(x, lv, torch.tensor(fl, dtype=torch.float64), h, 0.0, ev))
            return _stack_results(res, time.perf_counter() - t0)

        run = _batched_objective(model, "l2", 0.0)
        nx = int(np.prod(shape))
        onehot = None if lab is None else F.one_hot(lab, K).to(p0.dtype)

        def split(zs):
            x = zs[:, :nx].reshape((zs.shape[0],) + shape)
            l = None if lab is not None else zs[:, nx:].reshape(zs.shape[0], B, K)
            return x, l

        def fg(zs, idx):
            x, l = split(zs)
            (gx, gl), (loss, _) = run(x, l, target[idx], None if w is None else w[idx],
                                      None if onehot is None else onehot[idx])
            gz = gx.reshape(zs.shape[0], -1)
            if gl is not None:
                gz = torch.cat([gz, gl.reshape(zs.shape[0], -1)], 1)
            return loss, gz

        z0 = x0.reshape(V, -1) if l0 is None else torch.cat([x0.reshape(V, -1), l0.reshape(V, -1)], 1)
        z, hist, evals = _lbfgs_batched(fg, z0, steps=iterations, max_iter=max_iter, lr=lr,
                                        history_size=history_size, progress=progress)
        x, l = split(z)
        _, (_, final) = run(x, l, target, w, onehot)
    T = max(len(h) for h in hist)
    H = torch.full((T, V), float("nan"), dtype=torch.float64)
    for v, h in enumerate(hist):
        H[:len(h), v] = torch.tensor(h, dtype=torch.float64)
        H[len(h):, v] = h[-1] if h else float("nan")
    lab_out = lab if lab is not None else l.argmax(-1)
    return AttackResult(x.detach(), lab_out, final.to(torch.float64), H, time.perf_counter() - t0,
                        evals.tolist())


def dlg(model: nn.Module, target_grad: Tensor, x_shape, *, label=None, iterations: int = 500, lr: float = 1.0,
        init="uniform", mask=None, generator: Optional[torch.Generator] = None, max_iter: int = 20,
        history_size: int = 100, progress: bool = False) -> AttackResult:
    """DLG against one victim (``target_grad [P]``) with ``torch.optim.LBFGS``; a ``[V, P]``
    target runs :func:`dlg_batch`. See :func:`dlg_batch` for the parameters; ``label`` is ``[B]``."""
    if isinstance(target_grad, Tensor) and target_grad.dim() == 2:
        return dlg_batch(model, target_grad, x_shape, label=label, iterations=iterations, lr=lr, init=init,
                         mask=mask, generator=generator, max_iter=max_iter, history_size=history_size,
                         progress=progress)
    target = _check_targets(model, target_grad, batched=False)
    if mask is not None:
        mask = torch.as_tensor(mask)
        if mask.dim() == 1:
            mask = mask.unsqueeze(0)
    if label is not None:
        label = torch.as_tensor(label).reshape(1, -1)
    r = dlg_batch(model, target.unsqueeze(0), x_shape, label=label, iterations=iterations, lr=lr, init=init,
                  mask=mask, generator=generator, max_iter=max_iter, history_size=history_size,
                  vectorized=False, progress=progress)
    return AttackResult(r.x[0], r.label[0], r.loss[0], r.history[:, 0], r.seconds, r.evaluations[0])


# ----------------------------------------------------------------------------------------------
# Inverting Gradients
# ----------------------------------------------------------------------------------------------

def _milestones(iterations: int) -> list[int]:
    return sorted({max(1, int(iterations * f)) for f in (3 / 8, 5 / 8, 7 / 8)})


def inverting_gradients_batch(model: nn.Module, target_grads: Tensor, x_shape, *, label=None,
                              iterations: int = 1000, lr: float = 0.1, tv: float = 1e-4, restarts: int = 1,
                              init="gray", mask=None, signed: bool = True, boxed: bool = True,
                              lr_decay: bool = True, generator: Optional[torch.Generator] = None,
                              vectorized: bool = True, progress: bool = False) -> AttackResult:
    """Inverting Gradients against ``V`` victims at once.

    For every victim and restart, Adam (``lr``) on
    ``1 - cos(w * g(x', y), w * g_v) + tv * TV(x')`` using ``sign(grad)`` (``signed``), then
    ``x' <- clip(x', 0, 1)`` (``boxed``); the learning rate is divided by 10 at 3/8, 5/8 and 7/8
    of the run (``lr_decay``). Of the ``restarts`` runs, the one with the lowest ``1 - cos``
    (no TV) is kept. Defaults follow Geiping et al.'s CIFAR-10 setting (``signed``, ``boxed``,
    Adam lr 0.1, TV 1e-4, step decay; the paper runs 1000 iterations). Their images live in
    normalised coordinates (std ~0.25); ours are [0, 1] pixels, so 'gray' (N(0.5, 0.25^2)) is
    their ``randn`` start.

    ``label``: int labels ``[V, B]`` (``[V]`` for B = 1); ``None`` -> the iDLG rule for B = 1,
    otherwise the soft label is optimised jointly (Adam, unsigned), as Inverting Gradients does.
    ``vectorized=False``: one ``torch.optim.Adam`` per victim and restart, plain autograd.
    """
    t0 = time.perf_counter()
    iterations = _check_iterations(iterations)
    if not lr > 0:
        raise FedshieldError(f"lr must be > 0, got {lr}")
    if not tv >= 0:
        raise FedshieldError(f"tv must be >= 0, got {tv}")
    restarts = _check_iterations(restarts)
    target = _check_targets(model, target_grads, batched=True)
    V, P = target.shape
    shape = _as_shape(model, x_shape)
    B = shape[0]
    K = _n_classes(model, shape)
    p0 = next(model.parameters())
    if label is None and B == 1:
        label = infer_label(target, model)
    lab = _check_labels(label, V, B, K, p0.device)
    w = _check_mask(mask, V, P, p0.device)
    gen = _gen(generator)
    R = restarts
    x0 = _init_dummy(init if not isinstance(init, Tensor) else init.repeat(R, *[1] * (init.dim() - 1)),
                     R * V, shape, gen, p0.dtype, p0.device)
    if boxed:
        x0 = x0.clamp(0, 1)
    l0 = None if lab is not None else torch.randn(R * V, B, K, generator=gen, dtype=p0.dtype, device=gen.device).to(p0.device)
    # restart r of victim v is row r * V + v
    tgt = target.repeat(R, 1)
    ww = None if w is None else w.repeat(R, 1)
    onehot = None if lab is None else F.one_hot(lab, K).to(p0.dtype).repeat(R, 1, 1)

    def make_opt(tensors):
        opt = torch.optim.Adam(tensors, lr=lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, _milestones(iterations), gamma=0.1) if lr_decay else None
        return opt, sched

    with _eval_mode(model):
        if vectorized:
            run = _batched_objective(model, "cos", tv)
            x = x0.clone().requires_grad_(True)
            l = None if l0 is None else l0.clone().requires_grad_(True)
            opt, sched = make_opt([x] if l is None else [x, l])
            hist = torch.zeros(iterations, R * V, dtype=torch.float64)
            for it in tqdm_range(iterations, progress, "Inverting Gradients"):
                (gx, gl), (loss, _) = run(x.detach(), None if l is None else l.detach(), tgt, ww, onehot)
                x.grad = gx.sign() if signed else gx
                if l is not None:
                    l.grad = gl
                opt.step()
                if sched is not None:
                    sched.step()
                if boxed:
                    with torch.no_grad():
                        x.clamp_(0, 1)
                hist[it] = loss.to(torch.float64)
            _, (_, score) = run(x.detach(), None if l is None else l.detach(), tgt, ww, onehot)
            xs, ls = x.detach(), (None if l is None else l.detach())
        else:
            params = [p for _, p in _named_trainable(model)]
            xs = torch.empty_like(x0)
            ls = None if l0 is None else torch.empty_like(l0)
            score = torch.zeros(R * V, dtype=p0.dtype)
            hist = torch.zeros(iterations, R * V, dtype=torch.float64)
            for k in range(R * V):
                x = x0[k].clone().requires_grad_(True)
                l = None if l0 is None else l0[k].clone().requires_grad_(True)
                opt, sched = make_opt([x] if l is None else [x, l])
                oh = None if onehot is None else onehot[k]
                wk = None if ww is None else ww[k].to(x.dtype)
                for it in tqdm_range(iterations, progress, f"Inverting Gradients (image {k + 1}/{R * V})"):
                    opt.zero_grad()
                    loss, _ = _reference_loss(model, params, x, l, tgt[k], wk, oh, "cos", tv)
                    loss.backward()
                    if signed:
                        x.grad.sign_()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    if boxed:
                        with torch.no_grad():
                            x.clamp_(0, 1)
                    hist[it, k] = float(loss.detach())
                with torch.enable_grad():
                    _, m = _reference_loss(model, params, x, l, tgt[k], wk, oh, "cos", tv)
                score[k] = float(m.detach())
                xs[k] = x.detach()
                if l is not None:
                    ls[k] = l.detach()
    score = score.view(R, V).to(torch.float64)
    best = score.argmin(0)
    vi = torch.arange(V)
    xr = xs.view(R, V, *shape)[best, vi]
    lab_out = lab if lab is not None else ls.view(R, V, B, K)[best, vi].argmax(-1)
    hist = hist.view(iterations, R, V)[:, best, vi]
    return AttackResult(xr, lab_out, score[best, vi], hist, time.perf_counter() - t0, [iterations * R] * V)


def inverting_gradients(model: nn.Module, target_grad: Tensor, x_shape, *, label=None, iterations: int = 1000,
                        lr: float = 0.1, tv: float = 1e-4, restarts: int = 1, init="gray", mask=None,
                        signed: bool = True, boxed: bool = True, lr_decay: bool = True,
                        generator: Optional[torch.Generator] = None, progress: bool = False) -> AttackResult:
    """Inverting Gradients against one victim (``[P]``; plain autograd and ``torch.optim.Adam``);
    a ``[V, P]`` target runs :func:`inverting_gradients_batch`. ``label``: ``[B]`` or None."""
    kw = dict(iterations=iterations, lr=lr, tv=tv, restarts=restarts, init=init, signed=signed, boxed=boxed,
              lr_decay=lr_decay, generator=generator, progress=progress)
    if isinstance(target_grad, Tensor) and target_grad.dim() == 2:
        return inverting_gradients_batch(model, target_grad, x_shape, label=label, mask=mask, **kw)
    target = _check_targets(model, target_grad, batched=False)
    if mask is not None:
        mask = torch.as_tensor(mask)
        mask = mask.unsqueeze(0) if mask.dim() == 1 else mask
    if label is not None:
        label = torch.as_tensor(label).reshape(1, -1)
    r = inverting_gradients_batch(model, target.unsqueeze(0), x_shape, label=label, mask=mask, vectorized=False, **kw)
    return AttackResult(r.x[0], r.label[0], r.loss[0], r.history[:, 0], r.seconds, r.evaluations[0])


# ----------------------------------------------------------------------------------------------
# adaptive ("muted") attackers against the paper's defense
# ----------------------------------------------------------------------------------------------

def _slice_ids(bounds: Tensor, P: int) -> Tensor:
    bounds = torch.as_tensor(bounds, dtype=torch.long).reshape(-1)
    if bounds.numel() < 2 or int(bounds[0]) != 0 or int(bounds[-1]) != P or (bounds.diff() <= 0).any():
        raise FedshieldError(f"slice bounds must increase strictly from 0 to P = {P}")
    return torch.repeat_interleave(torch.arange(bounds.numel() - 1), bounds.diff())


def detect_noisy_slices(updates: Tensor, bounds: Tensor, sigma: float, *, n_noisy: Optional[int] = None,
                        reference: Optional[Tensor] = None) -> Tensor:
    """Which slices of a shared update carry the defense's noise, judged from the update alone.

    The attacker models a clean entry as ``u_i ~ N(0, r_i)`` and a perturbed one as
    ``N(0, r_i + sigma^2)`` and scores every slice j by the Gaussian log-likelihood ratio

    ``LLR_j = sum_{i in j} 1/2 [ log(r_i / (r_i + sigma^2)) + u_i^2 sigma^2 / (r_i (r_i + sigma^2)) ]``.

    ``r_i`` is the typical clean square of entry i, which a server can compute from public data
    (:func:`gradient_reference`: the mean square of per-sample gradients of the root set). Without
    it, ``r_i`` is the update's own mean square (one scale for all entries: a weaker attacker).
    Entries whose clean scale is far below sigma carry the evidence, so a per-entry reference
    matters: with the DLG-initialised LeNet, gradient entries are often as large as sigma = 0.1 and
    a plain per-slice mean square finds only ~50-65% of the noisy slices, the LLR ~98%.

    Selected: the ``n_noisy`` highest scores (the number of perturbed slices
    ``max(1, floor(s * ratio))`` is public), else every slice with ``LLR_j > 0``.

    Parameters
    ----------
    updates : ``[P]`` or ``[V, P]`` shared updates.
    bounds : ``[s + 1]`` slice boundaries (the server recomputes them from the public root set).
    sigma : the defense's noise standard deviation (public).
    reference : ``[P]`` clean per-entry mean squares.

    Returns
    -------
    bool ``[s]`` / ``[V, s]``: True = judged noisy.
    """
    single = updates.dim() == 1
    u = (updates.unsqueeze(0) if single else updates).to(torch.float64)
    P = u.shape[1]
    ids = _slice_ids(bounds, P).to(u.device)
    s = int(ids[-1]) + 1
    if not float(sigma) > 0:
        raise FedshieldError(f"sigma must be > 0, got {sigma}")
    s2 = float(sigma) ** 2
    if reference is None:
        r = (u * u).mean(1, keepdim=True).expand_as(u)
    else:
        r = torch.as_tensor(reference, dtype=torch.float64, device=u.device)
        if r.shape != (P,):
            raise FedshieldError(f"reference must be [P] with P = {P}, got {tuple(r.shape)}")
        r = r.expand_as(u)
    r = r.clamp_min(1e-20)
    llr = 0.5 * (torch.log(r / (r + s2)) + u * u * s2 / (r * (r + s2)))
    score = torch.zeros(u.shape[0], s, dtype=torch.float64, device=u.device).index_add_(1, ids, llr)
    if n_noisy is not None:
        if not 1 <= int(n_noisy) <= s:
            raise FedshieldError(f"n_noisy must be in [1, {s}], got {n_noisy}")
        idx = score.topk(int(n_noisy), dim=1).indices
        noisy = torch.zeros_like(score, dtype=torch.bool).scatter_(1, idx, True)
    else:
        noisy = score > 0
    return noisy[0] if single else noisy


def slice_mask(bounds: Tensor, noisy: Tensor, P: Optional[int] = None) -> Tensor:
    """Boolean ``[P]`` / ``[V, P]`` mask of the entries *outside* the noisy slices."""
    bounds = torch.as_tensor(bounds, dtype=torch.long)
    P = int(bounds[-1]) if P is None else P
    ids = _slice_ids(bounds, P).to(noisy.device)
    return ~noisy[..., ids]


def gradient_reference(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 50) -> Tensor:
    """Per-entry mean square of clean per-sample gradients over ``(x, y)`` (e.g. the public root
    set): ``r_i = mean_n g_i(x_n, y_n)^2``, ``[P]``."""
    if x.dim() == 4:
        x, y = x.unsqueeze(1), torch.as_tensor(y).reshape(-1, 1)
    acc = torch.zeros(_n_params(model), dtype=torch.float64)
    for i in range(0, len(x), chunk):
        g = victim_gradients(model, x[i:i + chunk], y[i:i + chunk]).to(torch.float64)
        acc += (g * g).sum(0)
    return (acc / len(x)).to(torch.float32)


# ----------------------------------------------------------------------------------------------
# attack experiments
# ----------------------------------------------------------------------------------------------

LABEL_MODES = ("known", "infer", "joint")
VICTIMS = ("gradient", "fedavg")
MODEL_INITS = ("auto", "dlg", "default")


@dataclass(frozen=True)
class AttackConfig:
    """One attack experiment (hashable; its results are cached under :func:`config_key`).

    Attributes
    ----------
    dataset, model : see :func:`fedshield.models.build_model`; ``model_kwargs`` overrides, e.g.
        ``(("width", 16),)`` for a narrow ConvNet, ``(("n_conv", 3),)`` for DLG's 3-conv LeNet.
    attack : 'dlg' or 'ig'.
    defense : a name of :func:`fedshield.baselines.make_defense` with the paper's settings for the
        attack, overridden by ``defense_kwargs`` (e.g. ``(("ratio", 0.3),)``). For 'ours' two more
        keys choose the server's root set (training images, :func:`fedshield.data.root_set`):
        ``root_size`` (default 100) and ``root_bias`` (fraction from class 0; default uniform).
    muted : the adaptive attacker: against 'pld' it drops the FC layer; against 'ours' it detects
        the noisy slices (:func:`detect_noisy_slices`) and matches the rest; against 'gc' it
        matches only the non-zero (unpruned) entries.
    images : number of victims (each a client update of ``batch_size`` test images).
    iterations : DLG: L-BFGS steps; IG: Adam steps.
    seed : victims (a seeded random sample of the test split), model initialisation, dummy
        starts and the defense's noise.
    label : 'known' (the paper's worst case), 'infer' (iDLG rule, batch 1) or 'joint'
        (soft label optimised with the image, DLG's original).
    model_init : 'dlg' (every parameter ~ U(-0.5, 0.5), DLG's LeNet), 'default' (PyTorch's) or
        'auto' (dlg for LeNet, default otherwise).
    victim : 'gradient' (one local step: the shared update is the loss gradient, the paper's
        setting) or 'fedavg' (``local_epochs`` SGD steps at ``local_lr``; the attacker matches
        ``update / (local_lr * steps)``, the mean gradient along the trajectory).
    lr, tv, init, restarts : attack hyper-parameters; ``None`` = the attack's default.
    """

    dataset: str = "cifar10"
    model: str = "lenet"
    attack: str = "dlg"
    defense: str = "none"
    muted: bool = False
    images: int = 8
    iterations: int = 300
    seed: int = 0
    label: str = "known"
    model_init: str = "auto"
    victim: str = "gradient"
    defense_kwargs: tuple = ()
    model_kwargs: tuple = ()
    batch_size: int = 1
    local_epochs: int = 5
    local_lr: float = 1e-2
    lr: Optional[float] = None
    tv: Optional[float] = None
    init: Optional[str] = None
    restarts: int = 1

    def validate(self) -> "AttackConfig":
        from .models import DATASET_SHAPES

        from .baselines import DEFENSES

        for field_, choices in (("attack", ATTACKS), ("defense", DEFENSES), ("dataset", sorted(DATASET_SHAPES)),
                                ("label", LABEL_MODES), ("victim", VICTIMS), ("model_init", MODEL_INITS)):
            if getattr(self, field_) not in choices:
                raise FedshieldError(f"unknown {field_} {getattr(self, field_)!r}; choose from {list(choices)}")
        if self.model.lower() not in ("lenet", "convnet"):
            raise FedshieldError(f"unknown model {self.model!r}; choose from ['convnet', 'lenet']")
        for name in ("images", "iterations", "batch_size", "local_epochs", "restarts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise FedshieldError(f"{name} must be a positive integer, got {v!r}")
        if self.label == "infer" and self.batch_size != 1:
            raise FedshieldError("label='infer' (the iDLG rule) needs batch_size 1")
        if self.muted and self.defense not in ("pld", "ours", "gc"):
            raise FedshieldError(f"a muted attack is defined against 'pld', 'ours' and 'gc', not {self.defense!r}")
        if self.init is not None and self.init not in INITS:
            raise FedshieldError(f"unknown init {self.init!r}; choose from {list(INITS)}")
        for name in ("defense_kwargs", "model_kwargs"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
                                                   for p in v):
                raise FedshieldError(f"{name} must be a tuple of (name, value) pairs, got {v!r}")
        return self


def _seed_of(*parts: int) -> int:
    """A stable 63-bit seed derived from integers (victim-wise streams independent of chunking)."""
    import hashlib

    h = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def _build_attack_model(cfg: AttackConfig) -> nn.Module:
    from .models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_of(cfg.seed, 1))
        model = build_model(cfg.model, cfg.dataset, **dict(cfg.model_kwargs))
    init = cfg.model_init
    if init == "auto":
        init = "dlg" if cfg.model.lower() == "lenet" else "default"
    if init == "dlg":
        g = make_generator(_seed_of(cfg.seed, 2))
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-0.5, 0.5, generator=g)
    return model.eval()


def _match_order(xr: Tensor, xt: Tensor) -> Tensor:
    """Reorder the B reconstructions of one victim to best match the true images (PSNR,
    Hungarian assignment); identity for B = 1."""
    B = xt.shape[0]
    if B == 1:
        return xr
    from scipy.optimize import linear_sum_assignment

    mse = ((xr.clamp(0, 1)[:, None] - xt[None]) ** 2).flatten(2).mean(2)
    rows, cols = linear_sum_assignment(mse.numpy())
    out = torch.empty_like(xr)
    out[cols] = xr[rows]
    return out


def _defense_for(cfg: AttackConfig, model: nn.Module, data_dir) -> Any:
    from .baselines import make_defense

    kwargs = dict(cfg.defense_kwargs)
    root = None
    if cfg.defense == "ours":
        from .data import load_dataset, root_set

        xtr, ytr = load_dataset(cfg.dataset, "train", data_dir)
        idx = root_set(ytr, int(kwargs.pop("root_size", 100)), bias=kwargs.pop("root_bias", None), seed=cfg.seed)
        root = (xtr[idx], ytr[idx])
        kwargs.setdefault("seed", _seed_of(cfg.seed, 3))
    elif cfg.defense in ("dp-g", "dp-l"):
        kwargs.setdefault("seed", _seed_of(cfg.seed, 3))
    return make_defense(cfg.defense, model=model, root=root, attack=cfg.attack, **kwargs), root


def _defense_bounds(defense) -> Tensor:
    for name in ("bounds", "slices", "bounds_", "slice_bounds"):
        b = getattr(defense, name, None)
        if isinstance(b, Tensor):
            return b
    raise FedshieldError("the defense exposes no slice boundaries (expected attribute 'bounds')")


def _perturbed_truth(extra: dict, V: int, s: int) -> Optional[Tensor]:
    ps = extra.get("perturbed_slices")
    if ps is None:
        return None
    truth = torch.zeros(V, s, dtype=torch.bool)
    rows = ps if isinstance(ps, (list, tuple)) else list(ps)
    if len(rows) != V:
        return None
    for v, r in enumerate(rows):
        truth[v, torch.as_tensor(r, dtype=torch.long).reshape(-1)] = True
    return truth


def _prepare_victims(cfg: AttackConfig, model: nn.Module, data_dir):
    """Victim images, their shared (defended) updates, the attacker's masks and labels -- for
    every victim at once (cheap; deterministic regardless of how the attacks are chunked)."""
    from .data import load_dataset
    from .hooks import RoundContext

    xte, yte = load_dataset(cfg.dataset, "test", data_dir)
    n = cfg.images * cfg.batch_size
    if n > len(xte):
        raise FedshieldError(f"{n} test images requested, the split has {len(xte)}")
    perm = torch.randperm(len(xte), generator=make_generator(_seed_of(cfg.seed, 0)))[:n]
    idx = perm.view(cfg.images, cfg.batch_size)
    xv, yv = xte[idx], yte[idx]  # [V, B, C, H, W], [V, B]
    if cfg.victim == "gradient":
        g = victim_gradients(model, xv, yv)
    else:
        steps = cfg.local_epochs
        g = torch.stack([fedavg_update(model, xv[v], yv[v], lr=cfg.local_lr, epochs=cfg.local_epochs)
                         for v in range(cfg.images)]) / (cfg.local_lr * steps)
    defense, root = _defense_for(cfg, model, data_dir)
    defense.on_round_start(model, 0)
    ctx = RoundContext(round=0, model=model, weights=torch.full((cfg.images,), 1.0 / cfg.images),
                       client_ids=list(range(cfg.images)), client_data=[(xv[v], yv[v]) for v in range(cfg.images)],
                       generator=make_generator(_seed_of(cfg.seed, 4)))
    shared = defense.client(g.clone(), ctx).detach()
    info: dict[str, Any] = {"detect_precision": [None] * cfg.images}
    mask = None
    if cfg.muted:
        if cfg.defense == "pld":
            mask = fc_mask(model)
        elif cfg.defense == "gc":
            mask = shared != 0
        else:  # ours
            bounds = _defense_bounds(defense)
            s = bounds.numel() - 1
            k = int(defense.k)  # max(1, floor(s * ratio)): public
            ref = gradient_reference(model, root[0], root[1])
            noisy = detect_noisy_slices(shared, bounds, float(defense.sigma), n_noisy=k, reference=ref)
            mask = slice_mask(bounds, noisy, shared.shape[1])
            truth = _perturbed_truth(ctx.extra, cfg.images, s)
            if truth is not None:
                info["detect_precision"] = ((noisy & truth).sum(1).float() / noisy.sum(1).float()).tolist()
    if cfg.label == "known":
        lab = yv
    elif cfg.label == "infer":
        lab = infer_label(shared, model)
    else:
        lab = None
    return idx, xv, yv, shared, mask, lab, info


def _attack_chunk(cfg: AttackConfig, model, shared, mask, lab, xv, vids: list[int], progress: bool) -> AttackResult:
    shape = (cfg.batch_size,) + tuple(xv.shape[2:])
    V = len(vids)
    init = cfg.init or ("uniform" if cfg.attack == "dlg" else "gray")
    inits = torch.stack([_init_dummy(init, 1, shape, make_generator(_seed_of(cfg.seed, 5, v)), xv.dtype, xv.device)[0]
                         for v in vids])
    if cfg.attack == "ig" and cfg.restarts > 1:
        inits = None  # restarts draw their own starts from the chunk generator
    m = None if mask is None else (mask[vids] if mask.dim() == 2 else mask)
    lb = None if lab is None else lab[vids]
    gen = make_generator(_seed_of(cfg.seed, 6, vids[0]))
    if cfg.attack == "dlg":
        kw = {} if cfg.lr is None else {"lr": cfg.lr}
        return dlg_batch(model, shared[vids], shape, label=lb, iterations=cfg.iterations,
                         init=inits if inits is not None else init, mask=m, generator=gen, progress=progress, **kw)
    kw = {}
    if cfg.lr is not None:
        kw["lr"] = cfg.lr
    if cfg.tv is not None:
        kw["tv"] = cfg.tv
    return inverting_gradients_batch(model, shared[vids], shape, label=lb, iterations=cfg.iterations,
                                     restarts=cfg.restarts, init=inits if inits is not None else init, mask=m,
                                     generator=gen, progress=progress, **kw)


def run_attack(cfg: AttackConfig, *, data_dir=None, progress: bool = True, cache: bool = True,
               chunk: int = 8, cache_dir=None) -> dict:
    """Run one attack experiment: victims, (defended) shared updates, attacks, metrics.

    Victims are a seeded random sample of the test split, ``cfg.images`` client updates of
    ``cfg.batch_size`` images each, attacked ``chunk`` at a time (vectorised). For each victim a
    row ``{victim, index, label, label_pred, label_correct, psnr, ssim, grad_loss, seconds,
    detect_precision}`` is stored in the result cache under the config's key as soon as its chunk
    finishes (an interrupted run resumes), with the reconstruction in an ``.npz`` next to it.

    Returns
    -------
    dict with ``config``, ``key``, ``rows`` (per victim), ``summary`` (mean / std / median / min /
    max of PSNR, SSIM, gradient loss; label accuracy; images per second), ``npz`` (path of
    ``x_true``, ``x_rec`` ``[V, B, C, H, W]``, ``labels``, ``index``; ``None`` with
    ``cache=False``) and the arrays ``x_true``, ``x_rec`` (numpy).
    """
    from .cache import ResultCache, config_dict, config_key
    from .metrics import psnr, ssim, summarize

    if not isinstance(cfg, AttackConfig):
        raise FedshieldError("run_attack expects an AttackConfig")
    cfg.validate()
    if int(chunk) < 1:
        raise FedshieldError(f"chunk must be >= 1, got {chunk}")
    rc = ResultCache(cache_dir) if cache else None
    key = config_key(cfg, "attack")
    model = _build_attack_model(cfg)
    idx, xv, yv, shared, mask, lab, info = _prepare_victims(cfg, model, data_dir)
    V = cfg.images
    rows: list[Optional[dict]] = [None] * V
    recs: list[Optional[np.ndarray]] = [None] * V
    vdir = (rc.dir / key) if rc else None
    if rc:
        for v in range(V):
            row = rc.get(f"{key}/v{v:04d}")
            npz = vdir / f"v{v:04d}.npz"
            if row is not None and npz.exists():
                rows[v] = row
                recs[v] = np.load(npz)["x_rec"]
    todo = [v for v in range(V) if rows[v] is None]
    from tqdm.auto import tqdm

    with tqdm(total=V, initial=V - len(todo), desc=f"{cfg.attack} vs {cfg.defense}{' (muted)' if cfg.muted else ''}",
              disable=not progress, unit="victim") as bar:
        for c in range(0, len(todo), int(chunk)):
            vids = todo[c:c + int(chunk)]
            res = _attack_chunk(cfg, model, shared, mask, lab, xv, vids, progress)
            per = res.seconds / len(vids)
            for j, v in enumerate(vids):
                xr = _match_order(res.x[j].detach().cpu(), xv[v])
                xr_c = xr.clamp(0, 1)
                p = psnr(xr_c, xv[v])
                s = ssim(xr_c, xv[v])
                lp = res.label[j].reshape(-1).tolist()
                lt = yv[v].reshape(-1).tolist()
                row = {"victim": v, "index": idx[v].tolist() if cfg.batch_size > 1 else int(idx[v, 0]),
                       "label": lt if cfg.batch_size > 1 else lt[0],
                       "label_pred": lp if cfg.batch_size > 1 else lp[0],
                       "label_correct": bool(sorted(lp) == sorted(lt)),
                       "psnr": float(p.mean()), "ssim": float(s.mean()), "grad_loss": float(res.loss[j]),
                       "seconds": per, "evaluations": int(res.evaluations[j]),
                       "detect_precision": info["detect_precision"][v]}
                rows[v] = row
                recs[v] = xr_c.numpy().astype(np.float32)
                if rc:
                    vdir.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(vdir / f"v{v:04d}.npz", x_rec=recs[v])
                    rc.put(f"{key}/v{v:04d}", row)
            bar.update(len(vids))
    x_rec = np.stack(recs)
    x_true = xv.numpy()
    secs = sum(r["seconds"] for r in rows)
    det = [r["detect_precision"] for r in rows if r["detect_precision"] is not None]
    summary = {"psnr": summarize(r["psnr"] for r in rows), "ssim": summarize(r["ssim"] for r in rows),
               "grad_loss": summarize(r["grad_loss"] for r in rows),
               "label_accuracy": float(np.mean([r["label_correct"] for r in rows])),
               "seconds": secs, "images_per_second": (V * cfg.batch_size / secs) if secs > 0 else float("inf")}
    if det:
        summary["detect_precision"] = float(np.mean(det))
    npz_path = None
    if rc:
        npz_path = rc.dir / f"{key}.npz"
        np.savez_compressed(npz_path, x_true=x_true, x_rec=x_rec, labels=yv.numpy(), index=idx.numpy())
        rc.put(key, {"config": config_dict(cfg), "result": {"rows": rows, "summary": summary}})
    return {"config": config_dict(cfg), "key": key, "rows": rows, "summary": summary,
            "npz": None if npz_path is None else str(npz_path), "x_true": x_true, "x_rec": x_rec}
