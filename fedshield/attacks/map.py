"""A noise-aware maximum-a-posteriori (MAP) attacker: the gradient match weighted by the noise the
defense is known to add, the image kept in its box, an image prior, restarts.

DLG minimises ``||g(x') - g~||^2`` with a fixed unit L-BFGS step on an unconstrained image. Against
a noisy update its optimiser runs away from the target: most pixels end saturated and the PSNR
lands below what a guess that ignores the update scores, which measures a failed attack, not a
private update. An attacker who knows the defense (Kerckhoffs; Balunović et al., ICLR 2022,
"Bayesian framework for gradient leakage") instead maximises the posterior of the image given
the shared update ``g~ = c(g(x)) + n``, ``n ~ N(0, diag(v))``:

``x* = argmin_x  1/2 sum_i w_i (c(g(x))_i - g~_i)^2  +  alpha TV(x)``,   ``w_i = 1 / (v_i + tau^2)``

- ``v_i``: the per-entry noise variance the defense is public about (DP-G: its variance on every
  entry; the paper's defense: sigma^2 on the slices the slice detector flags, its public floor
  everywhere; a mask sets ``w_i = 0`` where the attacker trusts nothing: GC's pruned entries,
  PLD's FC layer);
- ``tau^2 = (tau_rel)^2 mean(g~^2)``: the modelling error of an entry without noise, so that an
  undefended update is matched as DLG matches it;
- ``c``: the client's clipping ``g min(1, C / ||g||)`` when the defense clips with a public bound C;
- ``x = sigmoid(z)``: the box ``[0, 1]`` without projections;
- ``TV``: the anisotropic total variation (smoothed: ``sqrt(d^2 + 1e-6)``), whose weight
  ``alpha`` is the maximum-likelihood Laplace rate of public images' pixel differences
  (:func:`tv_prior_weight`): a prior fitted on public data, not tuned on victims.

The minimiser is :func:`fedshield.attacks.lbfgs.lbfgs_armijo_batched` (L-BFGS with a
backtracking line search, monotone, per victim), from ``restarts`` starts per victim; the start
with the lowest objective is kept (not the last one run). Labels must be known (the paper's
threat model) or inferred beforehand (:func:`fedshield.attacks.labels.infer_label`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad_and_value, vmap

from ..errors import FedshieldError
from ..utils import eval_mode
from .common import (AttackResult, Timer, attack_problem, check_positive_int, generator_or_entropy,
                     history_matrix, param_grad_fn)
from .lbfgs import lbfgs_armijo_batched

__all__ = ["MAPOptions", "map_attack", "map_attack_batch", "tv_prior_weight", "noise_weights"]


@dataclass(frozen=True)
class MAPOptions:
    """The MAP attacker's settings: ``iterations`` line-searched L-BFGS iterations from each of
    ``restarts`` starts, ``history_size`` curvature pairs, the relative modelling error
    ``tau_rel`` of an entry without noise."""

    iterations: int = 300
    restarts: int = 4
    history_size: int = 20
    tau_rel: float = 1e-2

    def __post_init__(self):
        object.__setattr__(self, "iterations", check_positive_int(self.iterations, "iterations"))
        object.__setattr__(self, "restarts", check_positive_int(self.restarts, "restarts"))
        object.__setattr__(self, "history_size", check_positive_int(self.history_size, "history_size"))
        if not self.tau_rel > 0:
            raise FedshieldError(f"tau_rel must be > 0, got {self.tau_rel}")


def _tv_sum(x: Tensor, eps2: float = 1e-6) -> Tensor:
    dh = x[..., :, 1:] - x[..., :, :-1]
    dv = x[..., 1:, :] - x[..., :-1, :]
    return torch.sqrt(dh * dh + eps2).sum() + torch.sqrt(dv * dv + eps2).sum()


def tv_prior_weight(images: Tensor) -> float:
    """The Laplace rate ``alpha`` of the pixel differences of ``images`` ``[N, C, H, W]`` (public
    images): the maximum-likelihood ``alpha = (number of differences) / sum |d|``, so that
    ``exp(-alpha TV(x))`` is the TV prior these images are most likely under."""
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[0] < 1:
        raise FedshieldError("images must be a non-empty [N, C, H, W] tensor")
    if not torch.isfinite(images).all():
        raise FedshieldError("images contain NaN or Inf")
    x = images.to(torch.float64)
    dh = (x[..., :, 1:] - x[..., :, :-1]).abs()
    dv = (x[..., 1:, :] - x[..., :-1, :]).abs()
    total = float(dh.sum() + dv.sum())
    if total <= 0:
        raise FedshieldError("the public images have no pixel differences (constant images)")
    return (dh.numel() + dv.numel()) / total


def noise_weights(target: Tensor, noise_var=None, mask=None, *, tau_rel: float = 1e-2) -> Tensor:
    """``[V, P]`` match weights ``w = 1 / (v + tau^2)`` (0 outside ``mask``) for shared updates
    ``target`` ``[V, P]``: ``noise_var`` a scalar, ``[P]`` or ``[V, P]`` (>= 0; ``None``: 0),
    ``tau^2 = tau_rel^2 * mean(target^2)`` per victim."""
    V, P = target.shape
    tau2 = (float(tau_rel) ** 2) * target.double().pow(2).mean(1, keepdim=True).clamp_min(1e-30)
    if noise_var is None:
        v = torch.zeros(1, 1, dtype=torch.float64)
    else:
        v = torch.as_tensor(noise_var, dtype=torch.float64)
        if v.dim() == 0:
            v = v.view(1, 1)
        elif v.shape == (P,):
            v = v.unsqueeze(0)
        elif v.shape != (V, P):
            raise FedshieldError(f"noise_var must be a scalar, [P] or [V, P] with (V, P) = {(V, P)}, got {tuple(v.shape)}")
    if not torch.isfinite(v).all() or bool((v < 0).any()):
        raise FedshieldError("noise_var must be finite and >= 0")
    w = 1.0 / (v + tau2)
    w = w.expand(V, P).clone()
    if mask is not None:
        m = torch.as_tensor(mask, dtype=torch.bool)
        m = m.expand(V, P) if m.shape == (P,) else m
        if m.shape != (V, P):
            raise FedshieldError(f"mask must be [P] or [V, P], got {tuple(m.shape)}")
        if not bool(m.any(1).all()):
            raise FedshieldError("mask selects no gradient entry for at least one victim")
        w = w * m.to(w.dtype)
    return w.to(target.dtype)


def map_attack_batch(model: nn.Module, target_grads: Tensor, x_shape, *, label, noise_var=None, mask=None,
                     clip: Optional[float] = None, tv: float = 0.0, iterations: int = 300, restarts: int = 4,
                     history_size: int = 20, tau_rel: float = 1e-2, init: Optional[Tensor] = None,
                     generator: Optional[torch.Generator] = None, progress: bool = False) -> AttackResult:
    """The noise-aware MAP attack against ``V`` victims at once (see the module docstring).

    Parameters
    ----------
    model : the global model the shared updates were computed on (run in eval mode).
    target_grads : ``[V, P]`` shared updates in loss-gradient units.
    x_shape : one victim's input shape ``(C, H, W)`` or ``(B, C, H, W)``.
    label : the victims' labels ``[V, B]`` (or ``[V]``): known or inferred; required.
    noise_var : the defense's per-entry noise variance: scalar, ``[P]`` or ``[V, P]``.
    mask : boolean ``[P]`` / ``[V, P]``: the entries the attacker uses (others weigh 0).
    clip : the defense's public clipping bound C (the model's update is clipped before matching).
    tv : the TV prior's weight ``alpha`` (:func:`tv_prior_weight` of public images; 0: no prior).
    iterations, restarts, history_size, tau_rel : :class:`MAPOptions`.
    init : ``[V, restarts, B, C, H, W]`` or ``[V, B, C, H, W]`` starting images in (0, 1)
        (default: restart 0 from mid-grey with a little noise, the others uniform).
    generator : randomness of the starts (default: OS entropy).

    Returns
    -------
    :class:`AttackResult` with ``x`` ``[V, B, C, H, W]`` (the best start's image), ``loss`` the
    weighted match (no prior) of that start, ``history`` ``[T, V]`` its objective per iteration,
    ``evaluations`` per victim (all starts).
    """
    timer = Timer()
    opts = MAPOptions(iterations=iterations, restarts=restarts, history_size=history_size, tau_rel=tau_rel)
    if label is None:
        raise FedshieldError("the MAP attack needs the victims' labels (known, or inferred with infer_label)")
    prob = attack_problem(model, target_grads, x_shape, label=label)
    if not float(tv) >= 0:
        raise FedshieldError(f"tv must be >= 0, got {tv}")
    if clip is not None and not float(clip) > 0:
        raise FedshieldError(f"clip must be > 0 or None, got {clip}")
    V, B, K, R = prob.V, prob.B, prob.K, opts.restarts
    shape = prob.shape
    p0 = next(model.parameters())
    dt, dev = p0.dtype, p0.device
    w = noise_weights(prob.target, noise_var, mask, tau_rel=opts.tau_rel).to(dt)
    gen = generator_or_entropy(generator)
    if init is not None:
        x0 = torch.as_tensor(init, dtype=dt)
        if x0.shape == (V,) + tuple(shape):
            x0 = x0.unsqueeze(1).expand(V, R, *shape)
        if x0.shape != (V, R) + tuple(shape):
            raise FedshieldError(f"init must be [V, restarts] + {tuple(shape)} or [V] + {tuple(shape)}, got {tuple(x0.shape)}")
    else:
        x0 = torch.rand((V, R) + tuple(shape), generator=gen, dtype=dt, device=gen.device).to(dev)
        x0[:, 0] = 0.5 + 0.05 * torch.randn((V,) + tuple(shape), generator=gen, dtype=dt, device=gen.device).to(dev)
    z0 = torch.logit(x0.clamp(0.02, 0.98)).reshape(V * R, -1)
    # every (victim, start) pair is one row of the batched minimiser
    tgt = prob.target.repeat_interleave(R, 0)
    wr = w.repeat_interleave(R, 0)
    onehot = F.one_hot(prob.label, K).to(dt).repeat_interleave(R, 0)
    alpha = float(tv)
    cb = None if clip is None else float(clip)

    with eval_mode(model):
        pgrad = param_grad_fn(model)

        def obj(z, oh, target, wt):
            x = torch.sigmoid(z.reshape(shape))
            g = pgrad(x, oh)
            if cb is not None:
                g = g * torch.clamp(cb / g.norm().clamp_min(1e-30), max=1.0)
            r = g - target
            nll = 0.5 * (wt * r * r).sum()
            loss = nll + alpha * _tv_sum(x) if alpha else nll
            return loss, nll

        step = vmap(grad_and_value(obj, has_aux=True))

        def fg(zs, idx):
            gz, (loss, _) = step(zs, onehot[idx], tgt[idx], wr[idx])
            return loss.detach(), gz.detach()

        z, f, hist, evals = lbfgs_armijo_batched(fg, z0, iterations=opts.iterations,
                                                 history_size=opts.history_size, progress=progress,
                                                 desc="MAP attack (L-BFGS + line search)")
        _, (_, nll) = step(z, onehot, tgt, wr)
    f = f.view(V, R)
    best = f.argmin(1)
    rows = torch.arange(V) * R + best
    x = torch.sigmoid(z[rows]).reshape((V,) + tuple(shape)).detach()
    H = history_matrix([hist[int(r)] for r in rows])
    ev = evals.view(V, R).sum(1)
    return AttackResult(x, prob.label, nll[rows].detach().to(torch.float64), H, timer(), ev.tolist())


def map_attack(model: nn.Module, target_grad: Tensor, x_shape, *, label, **kw) -> AttackResult:
    """:func:`map_attack_batch` for one victim (``target_grad`` ``[P]``, ``label`` ``[B]``)."""
    if isinstance(target_grad, Tensor) and target_grad.dim() == 2:
        return map_attack_batch(model, target_grad, x_shape, label=label, **kw)
    if not isinstance(target_grad, Tensor) or target_grad.dim() != 1:
        raise FedshieldError("target_grad must be a [P] tensor (or [V, P] for a batch)")
    lab = torch.as_tensor(label).reshape(1, -1)
    for k in ("noise_var", "mask"):
        v = kw.get(k)
        if isinstance(v, Tensor) and v.dim() == 1 and v.numel() == target_grad.numel():
            kw[k] = v.unsqueeze(0)
    return map_attack_batch(model, target_grad.unsqueeze(0), x_shape, label=lab, **kw).single()
