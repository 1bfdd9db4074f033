"""The Cramér-Rao bound on reconstructing a client's image from its noised updates (beyond the paper).

The attacks measure what *one* attacker reaches (a PSNR). This module bounds what *any unbiased*
attacker can reach, following the Fisher-information view of Guo, Karrer, Chaudhuri and van der
Maaten, "Bounding training data reconstruction in private (deep) learning" (ICML 2022):

- **Release.** In round ``t`` the client's shared update is the loss gradient ``g_t(x)`` of its image
  ``x`` (``D = C H W`` pixels) at the global model ``theta_t`` (the single-image DLG setting:
  :func:`fedshield.attacks.common.victim_gradient`), released with Gaussian noise
  ``N(0, sigma^2 I)`` (DP-G; the paper's variance is ``sigma^2 = 1e-2``).
- **Fisher information.** With ``J_t = d g_t / d x`` (``[P, D]``, :func:`update_jacobian`), ``k``
  independent releases carry ``F = sum_t J_t^T J_t / sigma^2`` about ``x``
  (:func:`fisher_information`); at one fixed model ``F = k J^T J / sigma^2`` exactly.
- **Bound.** Any unbiased estimator ``x_hat`` of ``x`` has ``Cov(x_hat) >= F^-1``, so its mean
  squared error per pixel is at least ``trace(F^-1) / D`` (:func:`cramer_rao`), computed from the
  eigenvalues ``lambda_i`` of ``F`` as ``sum_i 1 / lambda_i / D``. ``psnr_bound = 10 log10(1 /
  mse_bound)`` (pixels in ``[0, 1]``) is then an *upper* bound on the PSNR such an attacker reaches
  (in expectation, through the MSE). Guo et al.'s "dFIL" ``trace(F) / D`` gives the weaker
  ``D / trace(F)`` by Jensen's inequality; the trace of the inverse used here is the exact bound.
- **Singular F.** Eigenvalues ``<= rtol * lambda_max`` are counted as ``n_null``, near-null
  directions: along them the updates carry (numerically) no information, no unbiased estimator of
  ``x`` exists and the formal bound is infinite. ``mse_bound`` is the pseudo-inverse's
  ``trace(F^+) / D`` over the kept directions, the bound for the identifiable part of ``x`` alone:
  dropping directions only removes positive terms, so it stays a valid lower bound on the whole
  MSE whatever the cutoff, and a nonzero ``n_null`` says the true bound is larger. The cutoff
  should sit above the round-off of ``J^T J``: ``rtol = 1e-10`` (:data:`NULL_RTOL`) for a float64
  Jacobian (the default); ``tools/fisher_bound.py`` computes float32 Jacobians (faster) with
  ``rtol = 1e-8``, after checking their spectrum against float64 on the LeNet.

What the bound does not cover: a *biased* attacker, e.g. one with a prior over images (natural
image statistics, a total-variation penalty, a learned generator, the label's class mean), can beat
it; in particular it can reach an MSE below ``trace(F^-1) / D`` where the updates carry little
information, by guessing from the prior. The Bayesian analogue (van Trees' inequality) needs the
prior's own Fisher information and is not computed here. The bound also assumes the attacker knows
the models, the label and the noise variance, and releases independent across rounds.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

from .errors import FedshieldError
from .params import named_trainable
from .utils import eval_mode

#: eigenvalues at or below this fraction of the largest are near-null directions of the Fisher information
NULL_RTOL = 1e-10


def update_jacobian(model: nn.Module, x: Tensor, y, *, loss_fn: Optional[Callable] = None,
                    dtype: torch.dtype = torch.float64, chunk_size: Optional[int] = 32) -> Tensor:
    """``J = d g / d x``, ``[P, D]``: the Jacobian of the flat loss gradient ``g`` (trainable
    parameters in ``model.parameters()`` order, as :func:`fedshield.attacks.common.victim_gradient`
    computes it: eval mode, mean loss) with respect to the pixels of one image ``x`` (``[C, H, W]``
    or ``[1, C, H, W]``, ``D = C H W``), label ``y``. Forward mode over the gradient
    (``torch.func.jvp`` of ``grad``: ``D`` Jacobian-vector products, vmapped, ``chunk_size`` at a
    time), in ``dtype`` (a copy of the parameters; the model is not modified)."""
    if not isinstance(x, Tensor) or x.dim() not in (3, 4) or (x.dim() == 4 and x.shape[0] != 1):
        raise FedshieldError("x must be one image, [C, H, W] or [1, C, H, W]")
    # a copy: forward-mode tangents of a view span its whole base (e.g. the full dataset tensor)
    x = x.detach().to(dtype=dtype, copy=True).reshape(1, *x.shape[-3:])
    if not bool(torch.isfinite(x).all()):
        raise FedshieldError("x must be finite")
    y = torch.as_tensor(y).reshape(-1).long()
    if y.numel() != 1:
        raise FedshieldError("y must be one label")
    loss_fn = loss_fn or F.cross_entropy
    named = named_trainable(model)
    names = [n for n, _ in named]
    params = {n: p.detach().to(dtype) for n, p in named}
    consts = {n: (b.to(dtype) if b.is_floating_point() else b) for n, b in model.named_buffers()}
    consts.update({n: p.detach().to(dtype) for n, p in model.named_parameters() if not p.requires_grad})

    def flat_grad(xx: Tensor) -> Tensor:
        g = grad(lambda p: loss_fn(functional_call(model, ({**p, **consts},), (xx,)), y))(params)
        return torch.cat([g[n].reshape(-1) for n in names])

    basis = torch.eye(x.numel(), dtype=dtype).reshape(-1, *x.shape)
    with eval_mode(model):
        cols = vmap(lambda v: jvp(flat_grad, (x,), (v,))[1], chunk_size=chunk_size)(basis)
    return cols.T.contiguous().detach()


def gram(jacobian: Tensor) -> Tensor:
    """``J^T J`` (``[D, D]``, float64) of one release's Jacobian ``[P, D]``."""
    if not isinstance(jacobian, Tensor) or jacobian.dim() != 2:
        raise FedshieldError("a Jacobian must be a [P, D] tensor")
    j = jacobian.to(torch.float64)
    return j.T @ j


def fisher_information(jacobians: Iterable[Tensor], noise_var: float) -> Tensor:
    """``F = sum_t J_t^T J_t / sigma^2`` (``[D, D]``, float64): the Fisher information about the
    image in independent releases ``g_t(x) + N(0, sigma^2 I)``, one Jacobian ``J_t`` ``[P, D]`` per
    release."""
    s2 = _noise_var(noise_var)
    total = None
    for j in jacobians:
        g = gram(j)
        if total is not None and g.shape != total.shape:
            raise FedshieldError("every release's Jacobian must have the same number D of pixels")
        total = g if total is None else total + g
    if total is None:
        raise FedshieldError("at least one release (Jacobian) is needed")
    return total / s2


def _noise_var(noise_var: float) -> float:
    s2 = float(noise_var)
    if not math.isfinite(s2) or s2 <= 0:
        raise FedshieldError(f"noise_var must be a positive finite number, got {noise_var}")
    return s2


def cramer_rao(fisher: Tensor, *, rtol: float = NULL_RTOL) -> dict:
    """The Cramér-Rao bound per pixel of a Fisher information ``fisher`` ``[D, D]`` (module
    docstring): ``mse_bound = sum over the eigenvalues lambda_i > rtol * lambda_max of
    1 / lambda_i, over D`` (``trace(F^+) / D``; ``trace(F^-1) / D`` when nothing is near null),
    ``psnr_bound = 10 log10(1 / mse_bound)``, ``n_null`` the eigenvalues at or below the cutoff,
    ``min_eig`` the smallest kept one. ``mse_bound`` is ``inf`` for ``F = 0``."""
    if not isinstance(fisher, Tensor) or fisher.dim() != 2 or fisher.shape[0] != fisher.shape[1] or fisher.numel() == 0:
        raise FedshieldError("fisher must be a square [D, D] tensor")
    f = fisher.to(torch.float64)
    if not bool(torch.isfinite(f).all()):
        raise FedshieldError("fisher must be finite")
    if not 0 <= float(rtol) < 1:
        raise FedshieldError(f"rtol must be in [0, 1), got {rtol}")
    lam = torch.linalg.eigvalsh((f + f.T) / 2)
    top = float(lam.max())
    d = lam.numel()
    if top <= 0:
        return {"mse_bound": math.inf, "psnr_bound": -math.inf, "n_null": d, "min_eig": 0.0}
    keep = lam > float(rtol) * top
    mse = float((1.0 / lam[keep]).sum()) / d
    return {"mse_bound": mse, "psnr_bound": 10 * math.log10(1.0 / mse), "n_null": int(d - int(keep.sum())),
            "min_eig": float(lam[keep].min())}


def spread_rounds(total: int, k: int) -> list[int]:
    """``k`` rounds spread evenly over a run of ``total`` rounds: ``floor(t total / k)`` for
    ``t = 0 .. k-1`` (the global models the client receives; round 0 is the initial model). For
    ``k`` dividing ``total`` and ``k1`` dividing ``k2`` the rounds of ``k1`` are among those of
    ``k2``."""
    total, k = int(total), int(k)
    if total < 1 or not 1 <= k <= total:
        raise FedshieldError(f"k must be in [1, {total}] rounds, got {k}")
    return [t * total // k for t in range(k)]


def bound_rows(grams, noise_vars: Sequence[float], ks: Sequence[int], *, rounds: Optional[int] = None,
               rtol: float = NULL_RTOL) -> list[dict]:
    """The bound for each noise variance and each number ``k`` of releases.

    ``grams`` one ``J^T J`` (a tensor): the ``k`` releases are at that one model,
    ``F = k J^T J / sigma^2``. ``grams`` a mapping ``{round r: J^T J at the global model of round
    r}`` of a run of ``rounds`` rounds: the ``k`` releases are at the rounds
    :func:`spread_rounds` ``(rounds, k)``, which the mapping must hold. Rows: ``sigma2``, ``k``,
    ``mse_bound``, ``psnr_bound``, ``n_null``, ``min_eig`` (:func:`cramer_rao`)."""
    if isinstance(grams, Tensor):
        pick = lambda k: int(k) * gram_check(grams)
    elif isinstance(grams, Mapping) and grams:
        if rounds is None:
            raise FedshieldError("rounds (the run's length) is needed with per-round grams")

        def pick(k):
            need = spread_rounds(rounds, int(k))
            missing = [r for r in need if r not in grams]
            if missing:
                raise FedshieldError(f"k = {k} needs J^T J at rounds {missing[:5]}... that grams lacks")
            return sum(gram_check(grams[r]) for r in need)
    else:
        raise FedshieldError("grams must be one [D, D] tensor or a non-empty {round: [D, D]} mapping")
    rows = []
    for k in ks:
        base = pick(k)
        for s2 in noise_vars:
            rows.append({"sigma2": float(s2), "k": int(k), **cramer_rao(base / _noise_var(s2), rtol=rtol)})
    return rows


def gram_check(g: Tensor) -> Tensor:
    """``g`` as a float64 ``[D, D]`` matrix (a ``J^T J``), or FedshieldError."""
    if not isinstance(g, Tensor) or g.dim() != 2 or g.shape[0] != g.shape[1]:
        raise FedshieldError("J^T J must be a square [D, D] tensor")
    return g.to(torch.float64)


def information_sums(model_at: Callable[[int], nn.Module], x: Tensor, y: Tensor, ks: Sequence[int], total_rounds: int,
                     *, state: Optional[dict] = None, on_round: Optional[Callable[[dict], None]] = None,
                     dtype: torch.dtype = torch.float64, chunk_size: Optional[int] = 32) -> dict:
    """``sum_t J_t^T J_t`` over the rounds :func:`spread_rounds` ``(total_rounds, k)`` of a run, for
    each image ``x[i]`` (``[N, C, H, W]``, labels ``y`` ``[N]``) and each ``k`` of ``ks``, in one
    pass over the union of those rounds (each round's Jacobians are computed once and added to
    every sum that contains the round). ``model_at(r)`` is the global model of round ``r``.

    Returns the state ``{"done": sorted rounds done, "sums": {(i, k): [D, D] float64}}``; pass it
    back as ``state`` to go on after an interruption (``on_round(state)`` is called after every
    round, e.g. to save it)."""
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[0] < 1:
        raise FedshieldError("x must be [N, C, H, W] with N >= 1")
    y = torch.as_tensor(y).reshape(-1).long()
    if y.numel() != x.shape[0]:
        raise FedshieldError("y must hold one label per image")
    sets = {int(k): set(spread_rounds(total_rounds, int(k))) for k in ks}
    state = state if state is not None else {"done": [], "sums": {}}
    done = set(state["done"])
    for r in sorted(set().union(*sets.values()) - done):
        model = model_at(r)
        for i in range(x.shape[0]):
            g = gram(update_jacobian(model, x[i], y[i], dtype=dtype, chunk_size=chunk_size))
            for k, rs in sets.items():
                if r in rs:
                    key = (i, k)
                    state["sums"][key] = g if key not in state["sums"] else state["sums"][key] + g
        done.add(r)
        state["done"] = sorted(done)
        if on_round is not None:
            on_round(state)
    return state
