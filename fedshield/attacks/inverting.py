"""Inverting Gradients (Geiping et al. 2020; the paper's "GIA").

Minimise ``1 - <w*g(x'), w*g> / (||w*g(x')|| ||w*g||) + tv * TV(x')`` with Adam on the *signed*
gradient, projecting ``x'`` onto the box ``[0, 1]`` after every step, learning rate divided by 10 at
3/8, 5/8 and 7/8 of the run, and ``restarts`` random starts of which the one with the lowest
gradient loss (without TV) is kept.

:func:`inverting_gradients_batch` attacks ``V`` victims (times ``restarts``) at once: Adam
(per-coordinate state, a learning-rate schedule shared by all rows) over the stacked
``[R V, ...]`` tensor *is* ``R V`` independent Adams, and the sign and the box projection are per
coordinate too, so the vectorised path computes each row's own optimisation (tested against
``vectorized=False``: one ``torch.optim.Adam`` per victim and restart, plain autograd).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FedshieldError
from ..params import trainable
from ..utils import eval_mode
from .common import (AttackProblem, AttackResult, Timer, as_batch, attack_problem, batched_objective,
                     check_positive_int, check_target, generator_or_entropy, init_dummy, progress_range,
                     reference_loss)
from .labels import infer_label

__all__ = ["IGOptions", "inverting_gradients", "inverting_gradients_batch"]


@dataclass(frozen=True)
class IGOptions:
    """Inverting Gradients' settings (defaults: Geiping et al.'s CIFAR-10 setting; the paper runs
    1000 iterations): Adam ``lr``, TV weight ``tv``, ``restarts`` random starts, ``signed``
    gradients, ``boxed`` projection onto ``[0, 1]``, step ``lr_decay`` at 3/8, 5/8, 7/8."""

    iterations: int = 1000
    lr: float = 0.1
    tv: float = 1e-4
    restarts: int = 1
    signed: bool = True
    boxed: bool = True
    lr_decay: bool = True

    def __post_init__(self):
        object.__setattr__(self, "iterations", check_positive_int(self.iterations, "iterations"))
        if not self.lr > 0:
            raise FedshieldError(f"lr must be > 0, got {self.lr}")
        if not self.tv >= 0:
            raise FedshieldError(f"tv must be >= 0, got {self.tv}")
        object.__setattr__(self, "restarts", check_positive_int(self.restarts, "restarts"))

    def milestones(self) -> list[int]:
        """Steps after which the learning rate is divided by 10."""
        return sorted({max(1, int(self.iterations * f)) for f in (3 / 8, 5 / 8, 7 / 8)})

    def optimizer(self, tensors: list[Tensor]):
        """``(torch.optim.Adam, its MultiStepLR schedule or None)`` over ``tensors``."""
        opt = torch.optim.Adam(tensors, lr=self.lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, self.milestones(), gamma=0.1) if self.lr_decay else None
        return opt, sched

    def step(self, opt, sched, x: Tensor) -> None:
        """One Adam step once the gradients are in ``.grad``: sign ``x.grad`` (``signed``), step,
        advance the schedule, project ``x`` onto ``[0, 1]`` (``boxed``)."""
        if self.signed:
            x.grad.sign_()
        opt.step()
        if sched is not None:
            sched.step()
        if self.boxed:
            with torch.no_grad():
                x.clamp_(0, 1)


def _ig_vectorized(model, opts: IGOptions, x0, l0, tgt, ww, onehot, progress):
    """Every row (victim x restart) at once: ``(x, l or None, final 1 - cos [R V], history [T, R V])``."""
    run = batched_objective(model, "cos", opts.tv)
    x = x0.clone().requires_grad_(True)
    l = None if l0 is None else l0.clone().requires_grad_(True)
    opt, sched = opts.optimizer([x] if l is None else [x, l])
    hist = torch.zeros(opts.iterations, x0.shape[0], dtype=torch.float64)
    for it in progress_range(opts.iterations, progress, "Inverting Gradients"):
        (gx, gl), (loss, _) = run(x.detach(), None if l is None else l.detach(), tgt, ww, onehot)
        x.grad = gx
        if l is not None:
            l.grad = gl
        opts.step(opt, sched, x)
        hist[it] = loss.to(torch.float64)
    _, (_, score) = run(x.detach(), None if l is None else l.detach(), tgt, ww, onehot)
    return x.detach(), (None if l is None else l.detach()), score, hist


def _ig_reference(model, opts: IGOptions, x0, l0, tgt, ww, onehot, progress):
    """One ``torch.optim.Adam`` per row with plain autograd (the reference path); same outputs."""
    params = trainable(model)
    n = x0.shape[0]
    xs = torch.empty_like(x0)
    ls = None if l0 is None else torch.empty_like(l0)
    score = torch.zeros(n, dtype=x0.dtype)
    hist = torch.zeros(opts.iterations, n, dtype=torch.float64)
    for k in range(n):
        x = x0[k].clone().requires_grad_(True)
        l = None if l0 is None else l0[k].clone().requires_grad_(True)
        opt, sched = opts.optimizer([x] if l is None else [x, l])
        kw = dict(target=tgt[k], mask=None if ww is None else ww[k].to(x.dtype),
                  onehot=None if onehot is None else onehot[k], cost="cos", tv=opts.tv)
        for it in progress_range(opts.iterations, progress, f"Inverting Gradients (image {k + 1}/{n})"):
            opt.zero_grad()
            loss, _ = reference_loss(model, params, x, l, **kw)
            loss.backward()
            opts.step(opt, sched, x)
            hist[it, k] = float(loss.detach())
        with torch.enable_grad():
            _, m = reference_loss(model, params, x, l, **kw)
        score[k] = float(m.detach())
        xs[k] = x.detach()
        if l is not None:
            ls[k] = l.detach()
    return xs, ls, score, hist


def _best_restart(prob: AttackProblem, opts: IGOptions, xs, ls, score, hist, seconds) -> AttackResult:
    """Keep, per victim, the restart with the lowest ``1 - cos`` (row ``r V + v`` is restart r of victim v)."""
    R, V, B, K = opts.restarts, prob.V, prob.B, prob.K
    score = score.view(R, V).to(torch.float64)
    best = score.argmin(0)
    vi = torch.arange(V)
    xr = xs.view(R, V, *prob.shape)[best, vi]
    lab_out = prob.label if prob.label is not None else ls.view(R, V, B, K)[best, vi].argmax(-1)
    hist = hist.view(opts.iterations, R, V)[:, best, vi]
    return AttackResult(xr, lab_out, score[best, vi], hist, seconds, [opts.iterations * R] * V)


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
    (no TV) is kept. Defaults follow Geiping et al.'s CIFAR-10 setting (:class:`IGOptions`).
    Their images live in normalised coordinates (std ~0.25); ours are [0, 1] pixels, so 'gray'
    (N(0.5, 0.25^2)) is their ``randn`` start.

    ``label``: int labels ``[V, B]`` (``[V]`` for B = 1); ``None`` -> the iDLG rule for B = 1,
    otherwise the soft label is optimised jointly (Adam, unsigned), as Inverting Gradients does.
    ``vectorized=False``: one ``torch.optim.Adam`` per victim and restart, plain autograd.
    """
    timer = Timer()
    opts = IGOptions(iterations=iterations, lr=lr, tv=tv, restarts=restarts, signed=signed, boxed=boxed,
                     lr_decay=lr_decay)
    prob = attack_problem(model, target_grads, x_shape, label=label, mask=mask)
    if prob.label is None and prob.B == 1:
        prob = prob.with_label(infer_label(prob.target, model))
    R, V, B, K = opts.restarts, prob.V, prob.B, prob.K
    p0 = next(model.parameters())
    gen = generator_or_entropy(generator)
    x0 = init_dummy(init if not isinstance(init, Tensor) else init.repeat(R, *[1] * (init.dim() - 1)),
                    R * V, prob.shape, gen, p0.dtype, p0.device)
    if boxed:
        x0 = x0.clamp(0, 1)
    l0 = None if prob.label is not None else torch.randn(R * V, B, K, generator=gen, dtype=p0.dtype,
                                                         device=gen.device).to(p0.device)
    # restart r of victim v is row r * V + v
    tgt = prob.target.repeat(R, 1)
    ww = None if prob.mask is None else prob.mask.repeat(R, 1)
    onehot = None if prob.label is None else F.one_hot(prob.label, K).to(p0.dtype).repeat(R, 1, 1)
    with eval_mode(model):
        path = _ig_vectorized if vectorized else _ig_reference
        xs, ls, score, hist = path(model, opts, x0, l0, tgt, ww, onehot, progress)
    return _best_restart(prob, opts, xs, ls, score, hist, timer())


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
    target, mask, label = as_batch(check_target(model, target_grad, batched=False), mask, label)
    return inverting_gradients_batch(model, target, x_shape, label=label, mask=mask, vectorized=False, **kw).single()
