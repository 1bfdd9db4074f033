"""*Deep Leakage from Gradients* (Zhu et al. 2019; the paper's "DGA").

Minimise ``D(x') = || w * (g(x', y') - g) ||_2^2`` over a dummy image ``x'`` (and, when the label
is unknown, a soft label ``y' = softmax(l)``) with L-BFGS, learning rate 1, no line search, as in
the reference code. One *iteration* is one ``torch.optim.LBFGS.step`` (up to ``max_iter = 20``
inner L-BFGS updates), which is what "300 iterations" means in the reference code.

:func:`dlg_batch` attacks ``V`` victims at once with :func:`fedshield.attacks.lbfgs.lbfgs_batched`
(per-victim L-BFGS state) on the vmapped objective; ``vectorized=False`` runs the reference: one
``torch.optim.LBFGS`` per victim on the plain-autograd objective. The two are paired on purpose
(tested against each other).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FedshieldError
from ..params import trainable
from ..utils import eval_mode
from .common import (AttackProblem, AttackResult, Timer, as_batch, attack_problem, batched_objective,
                     check_positive_int, check_target, generator_or_entropy, history_matrix, init_dummy,
                     progress_range, reference_loss, stack_results)
from .lbfgs import lbfgs_batched

__all__ = ["DLGOptions", "dlg", "dlg_batch"]


@dataclass(frozen=True)
class DLGOptions:
    """DLG's optimiser settings: ``iterations`` L-BFGS steps of up to ``max_iter`` inner updates,
    learning rate ``lr`` (no line search), ``history_size`` curvature pairs."""

    iterations: int = 500
    lr: float = 1.0
    max_iter: int = 20
    history_size: int = 100

    def __post_init__(self):
        object.__setattr__(self, "iterations", check_positive_int(self.iterations, "iterations"))
        if not self.lr > 0:
            raise FedshieldError(f"lr must be > 0, got {self.lr}")


def _dlg_one(model: nn.Module, prob: AttackProblem, v: int, x0: Tensor, l0: Optional[Tensor],
             opts: DLGOptions, progress: bool) -> AttackResult:
    """Victim ``v`` with ``torch.optim.LBFGS`` and plain autograd (the DLG reference code path)."""
    params = trainable(model)
    label = None if prob.label is None else prob.label[v]
    x = x0.clone().requires_grad_(True)
    lab = None if l0 is None else l0.clone().requires_grad_(True)
    onehot = None if label is None else F.one_hot(label, prob.K).to(x.dtype)
    w = None if prob.mask is None else prob.mask[v].to(x.dtype)
    target = prob.target[v]
    opt = torch.optim.LBFGS([x] if lab is None else [x, lab], lr=opts.lr, max_iter=opts.max_iter,
                            history_size=opts.history_size)
    evals = [0]

    def loss_of():
        return reference_loss(model, params, x, lab, target=target, mask=w, onehot=onehot, cost="l2", tv=0.0)

    def closure():
        opt.zero_grad()
        evals[0] += 1
        loss, _ = loss_of()
        loss.backward()
        return loss

    hist = []
    for _ in progress_range(opts.iterations, progress, "DLG (L-BFGS, one image)"):
        hist.append(float(opt.step(closure).detach()))
    with torch.enable_grad():
        _, final = loss_of()
    lab_out = label if lab is None else lab.detach().argmax(-1)
    return AttackResult(x.detach(), lab_out, torch.tensor(float(final.detach()), dtype=torch.float64),
                        torch.tensor(hist, dtype=torch.float64), 0.0, evals[0])


def _dlg_vectorized(model: nn.Module, prob: AttackProblem, x0: Tensor, l0: Optional[Tensor],
                    opts: DLGOptions, progress: bool) -> tuple[Tensor, Tensor, Tensor, list, Tensor]:
    """All victims with the batched L-BFGS: ``(x, label logits or None, final loss, history, evaluations)``."""
    V, shape, K, B = prob.V, prob.shape, prob.K, prob.B
    run = batched_objective(model, "l2", 0.0)
    nx = int(np.prod(shape))
    onehot, w, target = prob.onehot(), prob.mask, prob.target
    joint = prob.label is None

    def split(zs):
        x = zs[:, :nx].reshape((zs.shape[0],) + shape)
        l = zs[:, nx:].reshape(zs.shape[0], B, K) if joint else None
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
    z, hist, evals = lbfgs_batched(fg, z0, steps=opts.iterations, max_iter=opts.max_iter, lr=opts.lr,
                                   history_size=opts.history_size, progress=progress)
    x, l = split(z)
    _, (_, final) = run(x, l, target, w, onehot)
    return x, l, final, hist, evals


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
    iterations, lr, max_iter, history_size : :class:`DLGOptions` (paper: 500 iterations, DLG code: 300).
    init : 'uniform' (U[0,1], default), 'randn', 'gray', or a ``[V, B, C, H, W]`` tensor.
    mask : boolean ``[P]`` or ``[V, P]``: match only these gradient entries.
    generator : randomness of the starting point (default: OS entropy).
    vectorized : True: the batched L-BFGS with per-victim state (:func:`lbfgs_batched`);
        False: a loop of ``torch.optim.LBFGS``, one victim after the other.
    """
    timer = Timer()
    opts = DLGOptions(iterations=iterations, lr=lr, max_iter=max_iter, history_size=history_size)
    prob = attack_problem(model, target_grads, x_shape, label=label, mask=mask)
    V, B, K = prob.V, prob.B, prob.K
    p0 = next(model.parameters())
    gen = generator_or_entropy(generator)
    x0 = init_dummy(init, V, prob.shape, gen, p0.dtype, p0.device)
    l0 = None if prob.label is not None else torch.randn(V, B, K, generator=gen, dtype=p0.dtype,
                                                         device=gen.device).to(p0.device)
    with eval_mode(model):
        if not vectorized:
            res = [_dlg_one(model, prob, v, x0[v], None if l0 is None else l0[v], opts, progress) for v in range(V)]
            return stack_results(res, timer())
        x, l, final, hist, evals = _dlg_vectorized(model, prob, x0, l0, opts, progress)
    lab_out = prob.label if prob.label is not None else l.argmax(-1)
    return AttackResult(x.detach(), lab_out, final.to(torch.float64), history_matrix(hist), timer(),
                        evals.tolist())


def dlg(model: nn.Module, target_grad: Tensor, x_shape, *, label=None, iterations: int = 500, lr: float = 1.0,
        init="uniform", mask=None, generator: Optional[torch.Generator] = None, max_iter: int = 20,
        history_size: int = 100, progress: bool = False) -> AttackResult:
    """DLG against one victim (``target_grad [P]``) with ``torch.optim.LBFGS``; a ``[V, P]``
    target runs :func:`dlg_batch`. See :func:`dlg_batch` for the parameters; ``label`` is ``[B]``."""
    kw = dict(iterations=iterations, lr=lr, init=init, generator=generator, max_iter=max_iter,
              history_size=history_size, progress=progress)
    if isinstance(target_grad, Tensor) and target_grad.dim() == 2:
        return dlg_batch(model, target_grad, x_shape, label=label, mask=mask, **kw)
    target, mask, label = as_batch(check_target(model, target_grad, batched=False), mask, label)
    return dlg_batch(model, target, x_shape, label=label, mask=mask, vectorized=False, **kw).single()
