"""The paper's defense (Wang et al., INFOCOM 2022, Sections 4-5), one function per step.

=========================  ===============================================================
step                       function
=========================  ===============================================================
leakage risk (Eq. 1-2)     :func:`leakage_risk`: mean over root samples of
                           ``||d g_l(x) / d x||_F`` per parameter tensor ``l``
slicing (Sec. 4B)          :func:`risk_slices` (equal risk per slice), :func:`size_slices`
                           (equal number of entries: the layer-size baseline, Table III[A])
perturbation (Alg. 1)      :func:`perturb`: ``max(1, floor(s * ratio))`` slices drawn uniformly,
                           ``N(0, sigma^2)`` added to every entry of those slices only
clipping (Sec. 5C)         :func:`clip`: ``g / max(1, ||g||_2 / B)``, row-wise;
                           :func:`per_sample_clipped_gradient` for the per-sample variant
noise level (Sec. 5B)      :func:`aggregate_noise_var`: variance of the noise left in the
                           weighted *average* the server computes
compensation (Sec. 5B)     :func:`compensate`: Marchenko-Pastur denoising of the aggregate
the whole pipeline         :class:`PaperDefense` (client + server hooks of :mod:`fedshield.hooks`)
=========================  ===============================================================

Differences from the authors' public code (``wangjunxiao/GradDefense``), all deliberate:

- risk probe: Gaussian probes (an unbiased estimator of the Frobenius norm) instead of a
  ones vector, which measures ``||1^T J||`` and declares the last (most leaky) layer risk-free
  because softmax cross-entropy's last-layer gradient sums to zero for every input;
- slices: exact equal-risk cuts at one-entry granularity with contiguous, disjoint, non-empty
  slices (the authors' cuts are at the gcd of layer sizes, overlap by one entry and pile all the
  remaining entries into the last slice);
- randomness: an explicit, OS-entropy-seeded ``torch.Generator`` (the authors fix
  ``random.seed(0)``, so a server can predict every client's slices and noise);
- noise variance of the aggregate: derived for the weighted average (the authors' formula is
  the variance of a sum, ``m^2`` too large for equal weights, and then keeps the noise and drops signal);
- compensation: zero-padding to a ``v x w`` matrix with ``v / w ~ q`` (instead of the first
  divisor of ``P``, which for a prime-ish ``P`` degenerates to ``P x 1``), symmetric ``eigh``
  in float64 instead of a general ``eig``.
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jacfwd, jacrev, jvp, vmap
from tqdm.auto import tqdm

from .errors import FedshieldError
from .hooks import Defense, RoundContext
from .params import check_bounds, named_trainable, param_sizes, slice_ids
from .utils import check_finite, check_int, check_jitter, check_nonneg, check_ratio, eval_mode, make_generator

__all__ = [
    "leakage_risk", "risk_slices", "size_slices", "perturb", "clip", "per_sample_clipped_gradient",
    "clip_and_perturb", "aggregate_noise_var", "paper_aggregate_noise_var", "n_perturbed", "compensate",
    "mp_bounds", "mp_density", "matrix_shape", "as_matrix", "spectrum", "PaperDefense", "NOISE_VARS", "PROBES",
    "compensate_layers", "optimal_shrinkage", "COMPENSATIONS", "jitter_bounds",
]

PROBES = ("gaussian", "ones")

_CHUNK_BYTES = 256 * 2 ** 20  # memory budget of one vmapped chunk in leakage_risk


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _default_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Softmax cross-entropy; ``y`` integer labels ``[n]`` or class probabilities ``[n, C]``."""
    return F.cross_entropy(logits, y)


def _check_sizes(sizes: Sequence[int]) -> list[int]:
    sizes = [int(s) for s in (sizes.tolist() if isinstance(sizes, Tensor) else sizes)]
    if len(sizes) == 0 or sum(sizes) == 0:
        raise FedshieldError("the model is empty: it has no trainable parameters")
    if any(s <= 0 for s in sizes):
        raise FedshieldError(f"parameter tensor sizes must be positive, got {sizes}")
    return sizes


def n_perturbed(n_slices: int, ratio: float) -> int:
    """Number of slices Algorithm 1 perturbs: ``k = max(1, floor(s * ratio))``.

    ``floor`` is taken with a small tolerance so that e.g. ``s = 10, ratio = 0.3`` gives 3,
    not 2 (``10 * 0.3 = 2.9999999999999996`` in floating point)."""
    check_ratio(ratio)
    s = check_int(n_slices, "n_slices")
    return max(1, min(s, int(math.floor(s * float(ratio) + 1e-9))))


def _in_order(tensors: dict, names: Sequence[str]) -> list[Tensor]:
    return [tensors[k] for k in names]


# --------------------------------------------------------------------------------------------
# leakage risk (Eq. 1-2)
# --------------------------------------------------------------------------------------------
def leakage_risk(model: nn.Module, x: Tensor, y: Tensor, *, probes: int = 8,
                 generator: Optional[torch.Generator] = None, exact: bool = False,
                 probe: str = "gaussian", loss_fn: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
                 progress: bool = False) -> Tensor:
    r"""Leakage risk of each trainable parameter tensor (Eq. 1-2 of the paper).

    For a root sample :math:`x_i` with label :math:`y_i` let :math:`g_l(x_i)` be the gradient of
    the loss of that single sample with respect to parameter tensor :math:`l`, and
    :math:`J_{l,i} = \partial g_l(x_i) / \partial x_i` its Jacobian with respect to the input
    (``numel(l) x numel(x_i)``). The risk is

    .. math::  R_l = \frac{1}{N} \sum_i \lVert J_{l,i} \rVert_F .

    A large :math:`R_l` means that the shared gradient of tensor ``l`` moves a lot with the input,
    so it tells an attacker much about the input.

    **Estimator** (``exact=False``). Hutchinson: for a probe :math:`u \sim N(0, I)`,
    :math:`E\,\lVert J u \rVert^2 = E\,u^\top J^\top J u = \mathrm{tr}(J^\top J) = \lVert J\rVert_F^2`.
    We put the probe on the *input* side, :math:`u \in R^{numel(x_i)}`, and compute
    :math:`J_{l,i} u` for *all* tensors ``l`` at once with one forward-over-reverse product (a
    ``jvp`` of the per-sample gradient, ``torch.func``), vmapped over samples and probes. The
    output-side VJP form :math:`E\,\lVert v^\top J\rVert^2` (``v`` over the entries of
    :math:`g_l`) is statistically equivalent: :math:`\lVert Ju\rVert^2` and
    :math:`\lVert v^\top J\rVert^2` are Gaussian quadratic forms in :math:`J^\top J` and
    :math:`JJ^\top`, which share their non-zero eigenvalues :math:`\sigma_k^2`, so both have
    mean :math:`\sum_k\sigma_k^2` and variance :math:`2\sum_k\sigma_k^4`. But the VJP form needs
    one double-backward per tensor and probe; the JVP form separates the ``L`` tensors for free
    (``L`` times less work, same accuracy). With
    ``p = probes`` independent probes per sample,
    :math:`\widehat{F}_{l,i} = \frac1p\sum_k \lVert J_{l,i}u_k\rVert^2` is unbiased for
    :math:`\lVert J_{l,i}\rVert_F^2` with relative standard deviation
    :math:`\le\sqrt{2/p}`, and :math:`R_l` is estimated by
    :math:`\frac1N\sum_i \widehat{F}_{l,i}^{1/2}`. The square root makes this slightly biased
    low (Jensen; second-order bias :math:`\approx -\mathrm{Var}/(8F^{2})`, at most about
    ``1/(4p)`` relative, 3 % for ``p = 8``); averaging over the ``N`` samples reduces the
    variance but not this bias.

    Why not a ones probe (the authors' code: ``grad(g_l, x, grad_outputs=ones)``)? That computes
    :math:`\lVert \mathbf 1^\top J_{l,i}\rVert = \lVert \partial(\sum g_l)/\partial x_i \rVert`.
    For softmax cross-entropy the last layer's gradients are
    :math:`(p - y) h^\top` and :math:`p - y`, whose entries sum to zero for *every* input because
    :math:`\sum_c (p_c - y_c) = 0`; their ones-probe "risk" is therefore exactly 0 although the
    last layer is the one from which labels and inputs are recovered most easily.

    ``probe="ones"`` computes that authors' sensitivity instead (for comparisons, Chapter 2 of
    the book): :math:`\frac1N\sum_i \lVert \partial(\sum g_l(x_i))/\partial x_i\rVert_2`, one
    reverse-mode Jacobian of the ``L`` layer sums per sample (``jacrev``, vmapped over samples);
    ``probes``, ``generator`` and ``exact`` do not apply.

    ``exact=True`` builds each :math:`J_{l,i}` with forward-mode ``jacfwd`` (``numel(x_i)``
    tangents per sample) and takes its Frobenius norm: for tiny models and tests.

    Each sample is treated as its own batch of one (the per-sample gradient an attacker
    inverts). The model is evaluated in ``eval()`` mode (BatchNorm uses its running statistics,
    Dropout is off) so that samples do not interact and no buffer changes; its mode is restored.

    Parameters
    ----------
    model : the network; only parameters with ``requires_grad`` count, in ``parameters()`` order.
    x : ``[N, ...]`` root inputs. y : ``[N]`` integer labels or ``[N, C]`` class probabilities.
    probes : Gaussian probes per sample (``exact=False``).
    generator : source of the probes (``None``: OS entropy).
    exact : build the full Jacobian instead of estimating its norm.
    probe : ``"gaussian"`` (the risk above) or ``"ones"`` (the authors' ones-vector sensitivity).
    loss_fn : ``loss_fn(logits, y) -> scalar``; default softmax cross-entropy.
    progress : tqdm bar over chunks of samples.

    Returns
    -------
    ``[n_param_tensors]`` float32 tensor of non-negative risks.
    """
    named = named_trainable(model)
    if probe not in PROBES:
        raise FedshieldError(f"probe must be one of {list(PROBES)}, got {probe!r}")
    if probe == "ones" and exact:
        raise FedshieldError("exact=True computes the Frobenius norm; it does not apply to probe='ones'")
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise FedshieldError("x and y must be tensors")
    if x.dim() < 2 or x.shape[0] == 0:
        raise FedshieldError(f"x must be a non-empty batch [N, ...], got shape {tuple(x.shape)}")
    if y.shape[0] != x.shape[0]:
        raise FedshieldError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    check_finite(x, "x")
    if y.is_floating_point():
        check_finite(y, "y")
    probes = check_int(probes, "probes")
    loss_fn = loss_fn or _default_loss
    names = [n for n, _ in named]
    device = named[0][1].device
    x = x.detach().to(device=device, dtype=named[0][1].dtype)
    y = y.detach().to(device=device, dtype=x.dtype if y.is_floating_point() else y.dtype)
    params = {n: p.detach() for n, p in named}
    frozen = {n: t.detach() for n, t in list(model.named_parameters()) + list(model.named_buffers())
              if n not in params}

    def sample_loss(prm, xi, yi):
        out = functional_call(model, {**frozen, **prm}, (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    sample_grad = grad(sample_loss)
    n, d = x.shape[0], x[0].numel()
    n_par = sum(p.numel() for _, p in named)

    if probe == "ones":
        def ones_norms(xi, yi):  # || d(sum_k g_l(x)_k) / dx || for every tensor l
            jac = jacrev(lambda xx: torch.stack([t.sum() for t in _in_order(sample_grad(params, xx, yi), names)]))(xi)
            return jac.reshape(len(names), -1).norm(dim=1)
        per_sample = max(1, len(names) * n_par * 4 * 6)
        fn = vmap(ones_norms)
        args = (x, y)
    elif exact:
        def frob(xi, yi):
            jac = jacfwd(lambda xx: sample_grad(params, xx, yi))(xi)
            return torch.stack([jac[k].pow(2).sum().sqrt() for k in names])
        per_sample = max(1, d * n_par * 4)
        fn = vmap(frob)
        args = (x, y)
    else:
        gen = generator if generator is not None else make_generator(None, device=x.device)
        u = torch.randn((n, probes) + tuple(x.shape[1:]), generator=gen, device=x.device, dtype=x.dtype)

        def sq_norms(xi, yi, ui):  # ||J_l u||^2 for every tensor l, one probe
            _, t = jvp(lambda xx: sample_grad(params, xx, yi), (xi,), (ui,))
            return torch.stack([t[k].pow(2).sum() for k in names])

        def est(xi, yi, ui):  # one sample, all its probes
            return vmap(sq_norms, in_dims=(None, None, 0))(xi, yi, ui).mean(0).sqrt()
        per_sample = max(1, probes * n_par * 4 * 6)
        fn = vmap(est)
        args = (x, y, u)

    chunk = max(1, min(n, _CHUNK_BYTES // per_sample))
    with eval_mode(model):
        parts = []
        for i in tqdm(range(0, n, chunk), disable=not progress, desc="leakage risk", unit="chunk"):
            parts.append(fn(*(a[i:i + chunk] for a in args)))
        norms = torch.cat(parts)  # [N, L]
    return norms.mean(0).to(torch.float32)


# --------------------------------------------------------------------------------------------
# slicing (Sec. 4B)
# --------------------------------------------------------------------------------------------
def _strictly_increasing(cuts: Tensor, n_entries: int) -> Tensor:
    """Given ``s - 1`` nondecreasing interior cuts, move the fewest needed so that
    ``0 < b_1 < ... < b_{s-1} < P``: ``b_k <- max_{j<=k}(b_j - j) + k`` (forward), then
    ``b_k <- min(b_k, P - s + k)`` (backward). Both keep ``b_k - k`` nondecreasing."""
    s1 = cuts.numel()
    k = torch.arange(1, s1 + 1, dtype=torch.long)
    c = torch.maximum(cuts, k)  # b_k >= k
    c = torch.cummax(c - k, 0).values + k
    c = torch.minimum(c, n_entries - (s1 + 1) + k)
    return torch.cat([torch.zeros(1, dtype=torch.long), c, torch.tensor([n_entries])])


def risk_slices(sizes: Sequence[int], risk: Tensor, n_slices: int) -> Tensor:
    r"""Cut the flattened gradient into ``n_slices`` contiguous slices of (nearly) equal risk.

    Layer ``l`` (``sizes[l]`` entries) carries risk ``risk[l]``, spread evenly over its entries
    (density :math:`\rho_l = R_l / n_l` per entry). With :math:`C(j)` the cumulative risk of the
    first ``j`` entries of the flat vector (piecewise linear in ``j``) and total ``T``, cut
    ``k`` is the entry boundary ``b_k`` nearest to where :math:`C` crosses :math:`kT/s`
    (found with ``searchsorted`` over the layers' cumulative risk, no loop over entries).

    Granularity: one entry. Rounding moves each cut by at most half an entry, so every slice's
    risk is within :math:`\max_l \rho_l` of :math:`T/s` -- unless a fix-up was needed: cuts are
    then pushed apart so that slices are non-empty and strictly increasing (only when a single
    entry carries more than :math:`T/s`, i.e. tiny high-risk tensors such as a last-layer bias
    with many slices). Zero total risk falls back to :func:`size_slices`.

    Returns
    -------
    ``LongTensor`` of ``n_slices + 1`` boundaries ``0 = b_0 < b_1 < ... < b_s = P``; slice ``k``
    is ``flat[b_k : b_{k+1}]``.
    """
    sizes = _check_sizes(sizes)
    s = check_int(n_slices, "n_slices")
    n_entries = sum(sizes)
    if s > n_entries:
        raise FedshieldError(f"n_slices={s} exceeds the number of gradient entries ({n_entries})")
    risk = torch.as_tensor(risk).detach().to("cpu", torch.float64).reshape(-1)
    if risk.numel() != len(sizes):
        raise FedshieldError(f"risk has {risk.numel()} entries but the model has {len(sizes)} "
                             "parameter tensors")
    check_finite(risk, "risk")
    if bool((risk < 0).any()):
        raise FedshieldError("risk must be non-negative")
    total = float(risk.sum())
    if total <= 0.0:
        return size_slices(sizes, s)
    if s == 1:
        return torch.tensor([0, n_entries], dtype=torch.long)
    size_t = torch.tensor(sizes, dtype=torch.float64)
    starts = torch.cat([torch.zeros(1, dtype=torch.float64), size_t.cumsum(0)])  # [L+1] entry offsets
    crisk = torch.cat([torch.zeros(1, dtype=torch.float64), risk.cumsum(0)])    # [L+1] cumulative risk
    density = risk / size_t
    targets = torch.arange(1, s, dtype=torch.float64) * (total / s)
    # layer l holding the crossing of target t: the first l with crisk[l + 1] >= t
    layer = torch.searchsorted(crisk[1:], targets, right=False).clamp(max=len(sizes) - 1)
    dens = density[layer]
    offset = torch.where(dens > 0, (targets - crisk[layer]) / torch.where(dens > 0, dens, 1.0),
                         torch.zeros_like(targets))
    pos = starts[layer] + offset.clamp(min=0.0)
    cuts = torch.floor(pos + 0.5).to(torch.long).clamp(0, n_entries)
    cuts = torch.cummax(cuts, 0).values
    return _strictly_increasing(cuts, n_entries)


def size_slices(sizes: Sequence[int], n_slices: int) -> Tensor:
    """The layer-size baseline of Table III[A]: ``n_slices`` contiguous slices with equal numbers
    of entries (sizes differ by at most one), ignoring the leakage risk.

    Our reading of the paper: the baseline slices "by layer size", i.e. each layer's share of
    the slices is proportional to its number of parameters -- which is exactly equal-risk slicing
    with every entry given the same risk, hence equal entry counts. (The authors' public code
    has no implementation of this baseline to check against.) Boundaries:
    ``b_k = round(k P / s)``.
    """
    sizes = _check_sizes(sizes)
    s = check_int(n_slices, "n_slices")
    n_entries = sum(sizes)
    if s > n_entries:
        raise FedshieldError(f"n_slices={s} exceeds the number of gradient entries ({n_entries})")
    k = torch.arange(0, s + 1, dtype=torch.long)
    return (k * n_entries + s // 2) // s


# --------------------------------------------------------------------------------------------
# perturbation (Algorithm 1)
# --------------------------------------------------------------------------------------------
def _reservoir(s: int, k: int, gen: torch.Generator) -> Tensor:
    """Algorithm R: a uniform ``k``-subset of ``range(s)`` in one pass (O(s)). Item ``i >= k``
    replaces reservoir slot ``j ~ U{0..i}`` when ``j < k``. The ``s - k`` random draws are made
    at once; the replacement pass is over slices, not entries."""
    res = list(range(k))
    if s > k:
        i = torch.arange(k, s, dtype=torch.float64)
        j = torch.floor(torch.rand(s - k, generator=gen, dtype=torch.float64) * (i + 1)).to(torch.long)
        for item, slot in zip(range(k, s), j.tolist()):
            if slot < k:
                res[slot] = item
    return torch.tensor(sorted(res), dtype=torch.long)


def _uniform_subsets(m: int, s: int, k: int, gen: torch.Generator) -> Tensor:
    """``m`` independent uniform ``k``-subsets of ``range(s)`` at once: i.i.d. uniform keys,
    keep the ``k`` largest (by exchangeability every ``k``-subset is equally likely)."""
    keys = torch.rand(m, s, generator=gen)
    return keys.topk(k, dim=1).indices.sort(dim=1).values


def jitter_bounds(bounds: Tensor, m: int, jitter: float, *,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """Beyond the paper (Chapter 10): ``m`` independently randomised copies ``[m, s + 1]`` of the slice
    boundaries, one per client, so that the server (which computes ``bounds``) cannot align a
    client's slices exactly. Interior boundary ``b_j`` moves by ``trunc(u * jitter * L / 2)`` entries,
    ``u ~ U(-1, 1)``, ``L`` the length of the slice it moves into (``b_j - b_{j-1}`` down,
    ``b_{j+1} - b_j`` up). With ``jitter`` in ``[0, 1)`` every boundary stays inside the middle halves of its
    two slices, so the order is kept and no slice empties; the ends ``0`` and ``P`` stay. Each
    entry is still in exactly one slice and each slice is perturbed with probability ``k / s``, so
    the noise variance of :func:`aggregate_noise_var` is unchanged."""
    b = check_bounds(bounds)
    m = check_int(m, "m")
    check_jitter(jitter)
    out = b.unsqueeze(0).repeat(m, 1)
    if float(jitter) == 0.0 or b.numel() <= 2:
        return out
    gen = generator if generator is not None else make_generator(None)
    u = torch.rand(m, b.numel() - 2, generator=gen, dtype=torch.float64) * 2 - 1
    down = (b[1:-1] - b[:-2]).to(torch.float64)
    up = (b[2:] - b[1:-1]).to(torch.float64)
    step = torch.where(u < 0, down, up) * u * (float(jitter) / 2)
    out[:, 1:-1] += step.trunc().to(torch.long)
    return out


def _check_row_bounds(bounds: Tensor, m: int, P: int) -> Tensor:
    """Per-row slice boundaries ``[m, s + 1]``, each row as :func:`check_bounds` wants it."""
    b = torch.as_tensor(bounds)
    if b.dim() != 2 or b.shape[0] != m or b.shape[1] < 2 or b.dtype.is_floating_point or b.dtype == torch.bool:
        raise FedshieldError(f"per-client slice bounds must be an integer [m, s + 1] tensor with m = {m}, "
                             f"got {tuple(b.shape)}")
    b = b.to(torch.long)
    if bool((b[:, 0] != 0).any()) or bool((b[:, -1] != P).any()):
        raise FedshieldError(f"slice bounds must run from 0 to {P} (the gradient's length) in every row")
    if not bool((b[:, 1:] > b[:, :-1]).all()):
        raise FedshieldError("slice bounds must be strictly increasing (no empty slice) in every row")
    return b


def perturb(flat: Tensor, bounds: Tensor, ratio: float, sigma: float, *,
            generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """Algorithm 1: random slice perturbation.

    Of the ``s = len(bounds) - 1`` slices, ``k = max(1, floor(s * ratio))`` are drawn uniformly
    without replacement and ``N(0, sigma^2)`` noise is added to every entry of those slices; all
    other entries are returned bit-identical (never ``x + 0``, which turns ``-0.0`` into ``0.0``).

    ``flat`` may be one update ``[P]`` (slices drawn by reservoir sampling, Algorithm R, O(s);
    noise drawn only for the chosen slices) or
    a round of updates ``[m, P]`` (each row gets its own independent slice set, drawn for all
    rows at once with random keys + ``topk``; the noise of all ``m k`` chosen slices is drawn in
    one call, in (row, slice) order, and added to the contiguous slices). For a round, ``bounds``
    may also be ``[m, s + 1]``: each row its own boundaries (:func:`jitter_bounds`).

    Returns
    -------
    ``(perturbed, slice_ids)``: ``slice_ids`` is ``[k]`` (or ``[m, k]``), sorted.
    """
    if not isinstance(flat, Tensor) or flat.dim() not in (1, 2) or flat.shape[-1] == 0:
        raise FedshieldError("flat must be a non-empty [P] or [m, P] tensor")
    if not flat.is_floating_point():
        raise FedshieldError("flat must be a floating-point tensor")
    check_finite(flat, "the update")
    check_ratio(ratio)
    check_nonneg(sigma, "sigma")
    rows = torch.is_tensor(bounds) and bounds.dim() == 2
    if rows and flat.dim() != 2:
        raise FedshieldError("per-client slice bounds [m, s + 1] need a round of updates [m, P]")
    b = _check_row_bounds(bounds, flat.shape[0], flat.shape[1]) if rows else check_bounds(bounds, flat.shape[-1])
    s = b.shape[-1] - 1
    k = n_perturbed(s, ratio)
    gen = generator if generator is not None else make_generator(None)
    if flat.dim() == 1:
        # one update: noise only for the k chosen (contiguous) slices, a loop over k <= s slices
        ids = _reservoir(s, k, gen)
        out = flat.clone()
        for j in ids.tolist():
            lo, hi = int(b[j]), int(b[j + 1])
            noise = torch.randn(hi - lo, generator=gen, dtype=flat.dtype, device=gen.device)
            out[lo:hi] += noise.to(flat.device).mul_(float(sigma))
        return out, ids
    # a round: noise only for the chosen slices (a fraction ~ratio of the entries), one draw for
    # all of them in (row, slice) order, added slice by slice to contiguous views (a loop over the
    # m k chosen slices, not over entries: faster than masking a full [m, P] noise draw;
    # benchmarks/bench_perturb.py prints the ratio)
    ids = _uniform_subsets(flat.shape[0], s, k, gen)
    if rows:
        lo, hi = b[:, :-1].gather(1, ids), b[:, 1:].gather(1, ids)
    else:
        lo, hi = b[:-1][ids], b[1:][ids]                   # [m, k] each
    lengths = (hi - lo).reshape(-1).tolist()
    noise = torch.randn(sum(lengths), generator=gen, dtype=flat.dtype, device=gen.device)
    noise = noise.to(flat.device).mul_(float(sigma))
    out = flat.clone()
    for (row, start), piece in zip(((r, int(a)) for r in range(flat.shape[0]) for a in lo[r].tolist()),
                                   noise.split(lengths)):
        out[row, start:start + piece.numel()] += piece
    return out, ids


# --------------------------------------------------------------------------------------------
# clipping (Sec. 5C)
# --------------------------------------------------------------------------------------------
def clip(flat: Tensor, bound: float) -> Tensor:
    """L2 clipping ``g / max(1, ||g||_2 / B)`` (Section 5C).

    ``flat`` ``[P]`` is clipped as a whole; ``[m, P]`` row by row (per client, or per sample when
    the rows are per-sample gradients). A vector already inside the ball is returned unchanged.
    """
    if not isinstance(flat, Tensor) or flat.dim() not in (1, 2) or flat.shape[-1] == 0:
        raise FedshieldError("flat must be a non-empty [P] or [m, P] tensor")
    check_finite(flat, "the update")
    if not float(bound) > 0.0 or not math.isfinite(float(bound)):
        raise FedshieldError(f"clip bound must be a positive number, got {bound}")
    norm = flat.norm(dim=-1, keepdim=True)
    factor = (norm / float(bound)).clamp(min=1.0)
    return flat / factor


def per_sample_clipped_gradient(model: nn.Module, x: Tensor, y: Tensor, bound: float, *,
                                loss_fn: Optional[Callable[[Tensor, Tensor], Tensor]] = None) -> Tensor:
    """The per-sample variant of Section 5C: per-sample loss gradients ``g_i`` (vmapped,
    ``torch.func``), each clipped with :func:`clip`, then averaged: ``(1/n) sum_i clip(g_i, B)``.
    Returns the flat ``[P]`` gradient in ``parameters()`` order. The model is used in its current
    mode; with BatchNorm in training mode use ``eval()`` first (per-sample batches of one)."""
    named = named_trainable(model)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise FedshieldError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    check_finite(x, "x")
    loss_fn = loss_fn or _default_loss
    params = {n: p.detach() for n, p in named}
    frozen = {n: t.detach() for n, t in list(model.named_parameters()) + list(model.named_buffers())
              if n not in params}

    def sample_loss(prm, xi, yi):
        return loss_fn(functional_call(model, {**frozen, **prm}, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    g = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
    rows = torch.cat([g[n].reshape(x.shape[0], -1) for n, _ in named], dim=1)
    return clip(rows, bound).mean(0)


def clip_and_perturb(updates: Tensor, bounds: Tensor, *, ratio: float, sigma: float,
                     clip_bound: Optional[float] = None, floor: float = 0.0, jitter: float = 0.0,
                     generator: Optional[torch.Generator] = None, return_bounds: bool = False):
    """What a client shares under the paper's defense: :func:`clip` each row to ``clip_bound``
    (``None``: no clipping), then :func:`perturb` it on its own ``k`` random slices.

    Beyond the paper (Chapter 10): ``jitter`` first moves each row's slice boundaries by its own
    secret amounts (:func:`jitter_bounds`, drawn from ``generator`` before the noise), so the server
    that computed ``bounds`` cannot align a client's slices; ``floor`` adds ``N(0, floor^2)`` to
    *every* entry after the slice perturbation, so that the unperturbed slices are no longer exact
    and a detector cannot tell them from the perturbed ones by their noise alone (0 and 0: the
    paper's defense).

    ``updates``: ``[m, P]`` (one round, the vectorised path) or ``[P]``. The one implementation
    used by :class:`PaperDefense` (simulator, attack harness) and by the Flower mod
    (:mod:`fedshield.flower`, with ``m = 1``). Returns ``(shared, slice_ids)`` as :func:`perturb`,
    and with ``return_bounds`` also the boundaries used (``bounds`` itself, or with ``jitter`` the
    rows' own: ``[m, s + 1]``, ``[s + 1]`` for a ``[P]`` update).
    """
    check_nonneg(floor, "floor")
    check_jitter(jitter)
    if float(jitter) > 0:
        moved = jitter_bounds(bounds, updates.shape[0] if updates.dim() == 2 else 1, jitter, generator=generator)
        bounds = moved if updates.dim() == 2 else moved[0]
    shared = clip(updates, clip_bound) if clip_bound is not None else updates
    out, ids = perturb(shared, bounds, ratio, sigma, generator=generator)
    if float(floor) > 0:
        gen = generator if generator is not None else make_generator(None)
        z = torch.randn(out.shape, generator=gen, dtype=out.dtype, device=gen.device)
        out = out + z.to(out.device).mul_(float(floor))
    return (out, ids, bounds) if return_bounds else (out, ids)


# --------------------------------------------------------------------------------------------
# noise level of the aggregate and compensation (Sec. 5B)
# --------------------------------------------------------------------------------------------
def aggregate_noise_var(weights: Tensor, ratio: float, sigma: float, *,
                        n_slices: Optional[int] = None) -> float:
    r"""Per-coordinate variance of the perturbation noise in the server's weighted average.

    Derivation. Client ``i`` shares :math:`g_i + n_i` with
    :math:`n_{ij} = \sigma z_{ij} b_{ij}`, :math:`z_{ij} \sim N(0,1)` and
    :math:`b_{ij}\in\{0,1\}` the indicator that coordinate ``j`` lies in one of the client's
    ``k`` perturbed slices; the ``k`` slices are a uniform ``k``-subset of the ``s`` slices, so
    :math:`P(b_{ij}=1) = p = k/s`, independently across clients and independent of ``z``.
    Hence :math:`E\,n_{ij}=0` and :math:`\mathrm{Var}\,n_{ij} = E[\sigma^2 z^2 b] = \sigma^2 p`.
    The server computes :math:`A = \sum_i w_i (g_i + n_i)` with :math:`\sum_i w_i = 1`; the
    noise :math:`\sum_i w_i n_{ij}` has variance (independent clients)

    .. math::  \mathrm{Var}\Big(\sum_i w_i n_{ij}\Big) = \sigma^2\,p\,\sum_i w_i^2 ,

    and different coordinates are uncorrelated (the ``z`` are independent), as the
    Marchenko-Pastur law of :func:`compensate` needs. (They are not independent: the coordinates
    of one slice are noised or not together, so for one draw the variance is constant per slice
    block, :math:`\sigma^2 \sum_{i: \text{slice chosen}} w_i^2`; the MP edges are exact only on
    average over draws, and the more clients, the closer.) For ``m`` equal weights this is
    :math:`\sigma^2 p / m`. The paper's / authors' value :math:`\sum_i m\,p\,\sigma^2 w_i =
    m p \sigma^2` is the variance of the *sum* :math:`\sum_i n_{ij}` of ``m`` noises; for the
    average it is :math:`m^2` times too large: the noise eigenvalues then fall below the lower
    Marchenko-Pastur edge and are kept, while signal directions whose eigenvalues land inside the
    inflated band are dropped; compensation keeps the noise and removes signal (book, Chapter 4).

    ``p``: ``k / s`` with ``k = max(1, floor(s * ratio))`` when ``n_slices`` is given (exact for
    Algorithm 1), else ``ratio`` (the large-``s`` limit).
    """
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if w.numel() == 0:
        raise FedshieldError("weights must be a non-empty vector")
    check_finite(w, "weights")
    if bool((w < 0).any()):
        raise FedshieldError("weights must be non-negative")
    check_ratio(ratio)
    check_nonneg(sigma, "sigma")
    p = float(ratio) if n_slices is None else n_perturbed(n_slices, ratio) / int(n_slices)
    return float(sigma) ** 2 * p * float((w ** 2).sum())


def paper_aggregate_noise_var(weights: Tensor, ratio: float, sigma: float, *,
                              n_slices: Optional[int] = None) -> float:
    r"""The paper's / authors' noise variance of the aggregate, :math:`m\,p\,\sigma^2 \sum_i w_i`
    for ``m`` clients with weights ``w`` and perturbed fraction ``p`` (as in
    :func:`aggregate_noise_var`). It is the variance of the *sum* of the ``m`` clients' noises;
    for the weighted average the server computes it is ``m^2`` times too large (equal weights):
    kept here, by name, for the comparisons of the book's Chapter 4 and the tests."""
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if w.numel() == 0:
        raise FedshieldError("weights must be a non-empty vector")
    check_ratio(ratio)
    check_nonneg(sigma, "sigma")
    p = float(ratio) if n_slices is None else n_perturbed(n_slices, ratio) / int(n_slices)
    return w.numel() * p * float(sigma) ** 2 * float(w.sum())


def matrix_shape(n_entries: int, q: float) -> tuple[int, int]:
    """The ``v x w`` shape for ``P`` entries with aspect ratio ``v / w ~ q``:
    ``w = ceil(sqrt(P / q))``, ``v = ceil(P / w)``; the last ``v w - P < w`` cells are zero
    padding. Padding keeps ``v / w`` close to ``q`` for every ``P`` (an exact factorisation can
    degenerate, e.g. ``P = 2 x prime``)."""
    n_entries = check_int(n_entries, "number of entries")
    if not float(q) >= 1.0 or not math.isfinite(float(q)):
        raise FedshieldError(f"q must be >= 1, got {q}")
    w = max(1, math.ceil(math.sqrt(n_entries / float(q))))
    v = math.ceil(n_entries / w)
    return v, w


def mp_bounds(noise_var: float, q: float) -> tuple[float, float]:
    r"""Marchenko-Pastur support :math:`\lambda_\pm = \sigma^2 (1 \pm 1/\sqrt q)^2` of the
    eigenvalues of :math:`M^\top M / v` for a ``v x w`` matrix of i.i.d. entries of variance
    :math:`\sigma^2` and ``q = v / w``."""
    r = 1.0 / math.sqrt(float(q))
    return float(noise_var) * (1 - r) ** 2, float(noise_var) * (1 + r) ** 2


def mp_density(lam, noise_var: float, q: float) -> np.ndarray:
    r"""Marchenko-Pastur density of the eigenvalues :math:`\lambda` of :math:`M^\top M / v` for
    a ``v x w`` matrix of i.i.d. entries of variance :math:`\sigma^2` = ``noise_var``, ``q = v / w
    >= 1``:

    .. math::  \rho(\lambda) = \frac{q \sqrt{(\lambda_+ - \lambda)(\lambda - \lambda_-)}}
               {2 \pi \sigma^2 \lambda}  \quad\text{on } (\lambda_-, \lambda_+), \; 0 \text{ elsewhere}

    (:func:`mp_bounds`). ``lam``: array of eigenvalues; returns a float64 numpy array."""
    if not float(noise_var) > 0:
        raise FedshieldError(f"noise_var must be > 0, got {noise_var}")
    lo, hi = mp_bounds(noise_var, q)
    lam = np.asarray(lam, dtype=np.float64)
    out = np.zeros_like(lam)
    inside = (lam > lo) & (lam < hi)
    out[inside] = float(q) * np.sqrt((hi - lam[inside]) * (lam[inside] - lo)) / (2 * np.pi * float(noise_var) * lam[inside])
    return out


def as_matrix(flat: Tensor, q: float) -> Tensor:
    """The ``P`` entries of ``flat`` row-major in a ``v x w`` matrix (:func:`matrix_shape`), zero
    padded at the end: the matrix whose covariance :func:`compensate` decomposes."""
    n = flat.numel()
    v, w = matrix_shape(n, q)
    m = torch.zeros(v * w, dtype=flat.dtype, device=flat.device)
    m[:n] = flat.reshape(-1)
    return m.view(v, w)


def spectrum(agg_flat: Tensor, q: float = 6.0) -> np.ndarray:
    r"""The eigenvalues of :math:`M^\top M / v` (ascending, float64) for the ``v x w`` matrix
    :func:`as_matrix` makes of ``agg_flat``: the spectrum :func:`compensate` compares with the
    Marchenko-Pastur band (:func:`mp_bounds`, :func:`mp_density`)."""
    if not isinstance(agg_flat, Tensor) or agg_flat.numel() == 0:
        raise FedshieldError("the aggregate must be a non-empty tensor")
    check_finite(agg_flat, "the aggregate")
    m = as_matrix(agg_flat.detach().to(torch.float64), q)
    return torch.linalg.eigvalsh(m.T @ m / m.shape[0]).cpu().numpy()


def _check_aggregate(agg_flat, noise_var) -> None:
    """One clear error for an aggregate or a noise variance that no compensation can take."""
    if not isinstance(agg_flat, Tensor) or agg_flat.numel() == 0:
        raise FedshieldError("the aggregate must be a non-empty tensor")
    if not agg_flat.is_floating_point():
        raise FedshieldError("the aggregate must be a floating-point tensor")
    check_finite(agg_flat, "the aggregate")
    check_nonneg(noise_var, "noise_var")
    if not math.isfinite(float(noise_var)):
        raise FedshieldError(f"noise_var must be finite, got {noise_var}")


def compensate(agg_flat: Tensor, noise_var: float, q: float = 6.0, *, return_info: bool = False,
               keep: str = "outside") -> Tensor | tuple[Tensor, dict]:
    r"""Random-matrix compensation of the aggregate (Section 5B).

    1. Reshape the ``P`` entries row-major into ``M`` (``v x w``, :func:`matrix_shape`; zero
       padding), so that ``q = v / w`` is the *actual* aspect ratio used below.
    2. Covariance :math:`C = M^\top M / v` (``w x w``; the noise has mean 0, so no centring),
       symmetric eigendecomposition :math:`C = V \Lambda V^\top` in float64.
    3. A pure-noise ``M`` with i.i.d. entries of variance :math:`\hat\sigma^2` = ``noise_var``
       (from :func:`aggregate_noise_var`) has, for large ``v, w``, all eigenvalues inside
       :math:`[\lambda_-, \lambda_+]` (:func:`mp_bounds`). Directions with eigenvalues outside
       carry signal: keep them (``keep="outside"``, the paper's rule; ``keep="above"`` keeps
       only :math:`\lambda > \lambda_+`, where signal lives in practice).
    4. Project: :math:`M V_s V_s^\top`, drop the padding, restore ``agg_flat``'s shape and dtype.

    Parameters
    ----------
    agg_flat : the aggregate (any shape, flattened internally).
    noise_var : per-coordinate noise variance :math:`\hat\sigma^2` (>= 0).
    q : target aspect ratio ``v / w`` (>= 1; the paper uses 6).
    return_info : also return ``{"v", "w", "q", "lambda_minus", "lambda_plus", "kept",
        "dropped", "removed_energy"}`` (``removed_energy`` = fraction of the squared norm removed).
    """
    _check_aggregate(agg_flat, noise_var)
    if keep not in ("outside", "above"):
        raise FedshieldError(f"keep must be 'outside' or 'above', got {keep!r}")
    n_entries = agg_flat.numel()
    flat64 = agg_flat.detach().reshape(-1).to(torch.float64)
    m = as_matrix(flat64, q)
    v, w = m.shape
    q_act = v / w
    lam_lo, lam_hi = mp_bounds(noise_var, q_act)
    evals, evecs = torch.linalg.eigh(m.T @ m / v)
    sel = evals > lam_hi
    if keep == "outside":
        sel = sel | (evals < lam_lo)
    vs = evecs[:, sel]
    out = (m @ vs) @ vs.T
    out = out.reshape(-1)[:n_entries]
    result = out.to(agg_flat.dtype).reshape(agg_flat.shape)
    if not return_info:
        return result
    energy = float(flat64.pow(2).sum())
    kept_energy = float(out.pow(2).sum())
    info = {"v": v, "w": w, "q": q_act, "lambda_minus": lam_lo, "lambda_plus": lam_hi,
            "kept": int(sel.sum()), "dropped": int((~sel).sum()),
            "removed_energy": 1.0 - kept_energy / energy if energy > 0 else 0.0}
    return result, info


def optimal_shrinkage(y: Tensor, beta: float) -> Tensor:
    r"""Gavish & Donoho's optimal singular-value shrinker for Frobenius loss ("Optimal shrinkage of
    singular values", IEEE Trans. Inf. Theory 2017), for singular values ``y`` of an ``m x n``
    matrix (``m <= n``, ``beta = m / n``) normalised so that pure noise has entries of variance
    ``1 / n`` (its singular values then fill ``[1 - sqrt(beta), 1 + sqrt(beta)]``):

    .. math:: \eta(y) = \sqrt{(y^2 - \beta - 1)^2 - 4\beta}\,/\,y \quad (y > 1 + \sqrt\beta), \qquad 0 \text{ otherwise.}

    A singular value at the bulk edge maps to 0; far above it, :math:`\eta(y) \approx y - (1+\beta)/y`."""
    if not 0.0 < float(beta) <= 1.0:
        raise FedshieldError(f"beta must be in (0, 1], got {beta}")
    y = torch.as_tensor(y)
    edge = 1.0 + math.sqrt(float(beta))
    inner = ((y ** 2 - beta - 1.0) ** 2 - 4.0 * beta).clamp_min(0.0)
    return torch.where(y > edge, inner.sqrt() / y.clamp_min(1e-300), torch.zeros_like(y))


#: the server-side compensations :class:`PaperDefense` offers: the paper's global Marchenko-Pastur
#: projection (:func:`compensate`) and the per-layer rules of :func:`compensate_layers`
COMPENSATIONS = ("paper", "hard", "shrink")


def compensate_layers(agg_flat: Tensor, shapes: Sequence[Sequence[int]], noise_var: float, *,
                      rule: str = "shrink", return_info: bool = False) -> Tensor | tuple[Tensor, dict]:
    r"""Structure-aware compensation: denoise each parameter tensor of the aggregate as its own matrix.

    The paper (:func:`compensate`) reshapes the whole flattened update row-major into one
    ``v x w`` matrix; that matrix mixes layers and has no low-rank structure to find. A FedAvg
    aggregate *is* low-rank per layer: a linear layer's per-sample gradient is an outer product, a
    convolution's reshaped to ``out x (in k k)`` likewise, and a round sums few of them. So each
    tensor of rank >= 2 with shape ``(d_0, d_1, ...)`` is taken as the ``d_0 x prod(d_1, ...)``
    matrix ``M`` (``m`` = the smaller side, ``n`` the larger, ``beta = m / n``), with noise of
    known per-entry variance :math:`\hat\sigma^2` = ``noise_var`` (:func:`aggregate_noise_var`):

    - ``rule="hard"``: keep the singular values above the noise bulk edge
      :math:`\hat\sigma\sqrt n\,(1+\sqrteta)` unchanged, drop the rest;
    - ``rule="shrink"``: replace each singular value :math:`s` by
      :math:`\hat\sigma\sqrt n\,\eta(s / (\hat\sigma\sqrt n))` with Gavish & Donoho's optimal shrinker
      for Frobenius loss (:func:`optimal_shrinkage`), which also removes the upward bias that noise
      adds to the kept singular values.

    1-D tensors (biases) are returned as they are: a vector has no matrix structure to exploit and
    holds few entries. ``shapes`` are the parameter shapes in ``parameters()`` order (the flat
    layout of :mod:`fedshield.params`); their sizes must add up to ``agg_flat.numel()``.

    Returns the compensated aggregate (``agg_flat``'s shape and dtype), with ``return_info`` also
    ``{"kept": [...], "dropped": [...] per matrix, "removed_energy"}``.
    """
    _check_aggregate(agg_flat, noise_var)
    if rule not in ("hard", "shrink"):
        raise FedshieldError(f"rule must be 'hard' or 'shrink', got {rule!r}")
    try:
        dims = [tuple(int(d) for d in sh) for sh in shapes]
    except (TypeError, ValueError):
        raise FedshieldError("shapes must be a sequence of parameter shapes (tuples of ints)") from None
    if any(len(d) == 0 or any(x < 1 for x in d) for d in dims):
        raise FedshieldError(f"every shape needs at least one positive dimension, got {dims}")
    total = sum(math.prod(d) for d in dims)
    if total != agg_flat.numel():
        raise FedshieldError(f"the shapes hold {total} entries but the aggregate has {agg_flat.numel()}")
    flat = agg_flat.detach().reshape(-1).to(torch.float64)
    out = flat.clone()
    sigma = math.sqrt(float(noise_var))
    kept, dropped, i = [], [], 0
    for d in dims:
        size = math.prod(d)
        if len(d) >= 2 and sigma > 0.0:   # without noise there is nothing to remove: entries kept exactly
            M = flat[i:i + size].view(d[0], size // d[0])
            m, n = min(M.shape), max(M.shape)
            U, S, Vh = torch.linalg.svd(M, full_matrices=False)
            scale = sigma * math.sqrt(n)
            if rule == "hard":
                S_new = torch.where(S > scale * (1.0 + math.sqrt(m / n)), S, torch.zeros_like(S))
            else:
                S_new = scale * optimal_shrinkage(S / scale, m / n)
            out[i:i + size] = ((U * S_new) @ Vh).reshape(-1)
            kept.append(int((S_new > 0).sum()))
            dropped.append(int((S_new == 0).sum()))
        i += size
    result = out.to(agg_flat.dtype).reshape(agg_flat.shape)
    if not return_info:
        return result
    energy = float(flat.pow(2).sum())
    info = {"kept": kept, "dropped": dropped,
            "removed_energy": 1.0 - float(out.pow(2).sum()) / energy if energy > 0 else 0.0}
    return result, info


# --------------------------------------------------------------------------------------------
# the pipeline as hooks
#: the aggregate noise variances the compensation can assume (``PaperDefense(noise_var=...)``)
NOISE_VARS = {"derived": aggregate_noise_var, "paper": paper_aggregate_noise_var}


# --------------------------------------------------------------------------------------------
class PaperDefense(Defense):
    """The paper's defense as client and server hooks (:mod:`fedshield.hooks`).

    - ``on_round_start(model, r)``: every ``risk_every`` rounds (and in round 0) recompute the
      leakage risk of the global model on the root set and the equal-risk slices
      (``slicing="risk"``), or the equal-size slices once (``slicing="size"``).
    - ``client(updates [m, P], ctx)``: clip each row to ``clip_bound`` (if given), then perturb
      each client's row on its own independently drawn ``k`` slices, all clients in one
      vectorised step. Chosen ids go to ``ctx.extra["perturbed_slices"]`` (``[m, k]``), the
      boundaries to ``ctx.extra["slice_bounds"]`` (``[s + 1]``; with ``jitter``, each client's own,
      ``[m, s + 1]``).
    - ``server(agg, ctx)``: if ``compensate``, RMT compensation with
      ``aggregate_noise_var(ctx.weights, ratio, sigma, n_slices=s)`` (kept in
      ``ctx.extra["noise_var"]``); the number of dropped
      eigen-directions goes to ``ctx.extra["dropped_directions"]`` (details in
      ``ctx.extra["compensation"]``).

    Randomness (slices, noise): the defense's own generator, seeded from ``seed`` (reproducible)
    or, with ``seed=None``, from OS entropy -- never ``ctx.generator``: the server builds the
    round context and must not be able to choose or predict the clients' noise (the baselines of
    :mod:`fedshield.baselines` follow the same rule; experiments pass ``seed``).
    The risk probes use a separate generator seeded with ``seed`` (0 when ``None``): the risk is
    computed by the server on public data, so it needs no secrecy and stays reproducible.

    Note on compensation: projecting onto the eigen-directions outside the noise bulk lowers the
    error of each round's aggregate, but it is *biased*: the part of the true update that lies in
    the bulk is removed every round, while the perturbation noise it removes has mean zero. With
    noise much larger than the update the defended model can learn *less* well with compensation
    than without. Chapter 4 (Fig. 2) trains with and without compensation and reports both
    accuracies.

    Parameters
    ----------
    root_x, root_y : the root set (the paper: 100 images held by the server); may be ``None``
        with ``slicing="size"``, which does not use it.
    n_slices : ``s`` (the authors' default 10). ratio : ``gamma``, fraction of slices perturbed.
    sigma : noise standard deviation (the paper's variance ``1e-2`` -> ``0.1``).
    clip_bound : L2 bound ``B`` of each shared update (``None``: no clipping).
    q : aspect ratio of the compensation matrix. compensate : run the server-side compensation.
    slicing : ``"risk"`` (the paper) or ``"size"`` (Table III[A] baseline).
    probes : Gaussian probes per root sample for :func:`leakage_risk`.
    risk_every : recompute the risk every this many rounds. seed : noise seed.
    risk_warmup : grow the refresh period from 1 to ``risk_every`` by doubling: the risk is
        recomputed in rounds 0, 1, 2, 4, 8, ... until the period reaches ``risk_every``, then every
        ``risk_every`` rounds (the slice boundaries move fast while the model leaves its
        initialisation and little afterwards: the book's ART page, ``tools/slice_drift.py``).
    loss_fn : loss for the risk (default softmax cross-entropy).
    floor : beyond the paper, a noise floor of this std on every entry of every shared update
        (:func:`clip_and_perturb`); the compensation's noise variance includes it.
    jitter : beyond the paper, each client's slice boundaries randomised per round
        (:func:`jitter_bounds`, drawn from the defense's secret generator), so that the server cannot
        align them; 0: the paper's common boundaries.
    compensation : the server's compensation: ``"paper"`` (the global ``v x w`` Marchenko-Pastur
        projection, :func:`compensate`, with ``q``), ``"hard"`` / ``"shrink"`` (per parameter tensor,
        :func:`compensate_layers`; ``q`` unused).
    noise_var : the aggregate noise variance the compensation assumes: ``"derived"``
        (:func:`aggregate_noise_var`, ours) or ``"paper"`` (:func:`paper_aggregate_noise_var`, the
        paper's ``m^2``-too-large one, for the comparison of the book's Chapter 4).
    """

    name = "ours"

    def __init__(self, root_x: Optional[Tensor], root_y: Optional[Tensor], *, n_slices: int = 10,
                 ratio: float = 0.2, sigma: float = 0.1, clip_bound: Optional[float] = None, q: float = 6.0,
                 compensate: bool = True, slicing: str = "risk", probes: int = 8, risk_every: int = 1,
                 risk_warmup: bool = False, seed: Optional[int] = None, loss_fn: Optional[Callable] = None,
                 noise_var: str = "derived", compensation: str = "paper", floor: float = 0.0,
                 jitter: float = 0.0):
        if noise_var not in NOISE_VARS:
            raise FedshieldError(f"noise_var must be one of {list(NOISE_VARS)}, got {noise_var!r}")
        if compensation not in COMPENSATIONS:
            raise FedshieldError(f"compensation must be one of {list(COMPENSATIONS)}, got {compensation!r}")
        if slicing not in ("risk", "size"):
            raise FedshieldError(f"slicing must be 'risk' or 'size', got {slicing!r}")
        if root_x is None and root_y is None and slicing == "size":
            pass  # equal-size slices need no root set
        elif root_x is None or root_y is None:
            raise FedshieldError("the paper's defense needs the server's root set (root_x, root_y) "
                                 "to compute the leakage-risk slices (or slicing='size')")
        elif not isinstance(root_x, Tensor) or not isinstance(root_y, Tensor):
            raise FedshieldError("root_x and root_y must be tensors")
        elif root_x.dim() < 2 or root_x.shape[0] == 0 or root_x.shape[0] != root_y.shape[0]:
            raise FedshieldError(f"root set shapes do not match: images x {tuple(root_x.shape)}, "
                                 f"labels y {tuple(root_y.shape)}")
        else:
            check_finite(root_x, "root_x")
        check_ratio(ratio)
        check_nonneg(sigma, "sigma")
        if clip_bound is not None and (not float(clip_bound) > 0 or not math.isfinite(float(clip_bound))):
            raise FedshieldError(f"clip_bound must be a positive number or None, got {clip_bound}")
        if not float(q) >= 1.0:
            raise FedshieldError(f"q must be >= 1, got {q}")
        self.root_x, self.root_y = root_x, root_y
        self.n_slices = check_int(n_slices, "n_slices")
        self.ratio, self.sigma, self.q = float(ratio), float(sigma), float(q)
        self.clip_bound = None if clip_bound is None else float(clip_bound)
        self.do_compensate = bool(compensate)
        self.noise_var = noise_var
        self.compensation = compensation
        check_nonneg(floor, "floor")
        self.floor = float(floor)
        self.jitter = check_jitter(jitter)
        self.slicing = slicing
        self.probes = check_int(probes, "probes")
        self.risk_every = check_int(risk_every, "risk_every")
        self.risk_warmup = bool(risk_warmup)
        self.seed = seed
        self.loss_fn = loss_fn
        self.generator = make_generator(seed)
        # the risk is public (the server computes it on its root set): its probes need no
        # secrecy, so they are always reproducible, also with seed=None
        self.probe_generator = make_generator(0 if seed is None else seed)
        self.risk: Optional[Tensor] = None
        self.bounds: Optional[Tensor] = None
        self.last_perturbed_slices: Optional[Tensor] = None
        self._risk_round: Optional[int] = None

    @property
    def k(self) -> int:
        """Number of perturbed slices per update."""
        return n_perturbed(self.n_slices, self.ratio)

    def check_model(self, model: nn.Module) -> None:
        """Raise one clear error, before any round, when the defense cannot work on ``model``:
        more slices than trainable entries, or root images the model cannot take."""
        P = sum(param_sizes(model))
        if not 1 <= self.n_slices <= P:
            raise FedshieldError(f"n_slices must be in [1, {P}] (the number of trainable entries), "
                                 f"got {self.n_slices}")
        if self.slicing == "risk":
            p = next(model.parameters())
            try:
                with torch.no_grad(), eval_mode(model):
                    model(self.root_x[:1].to(device=p.device, dtype=p.dtype))
            except RuntimeError as e:  # shape mismatch between root images and model
                raise FedshieldError(f"the model cannot run on the root set images "
                                     f"(shape {tuple(self.root_x.shape)}): {str(e).splitlines()[0]}") from None

    def update_slices(self, model: nn.Module, generator: Optional[torch.Generator] = None) -> Tensor:
        """(Re)compute the risk (``slicing="risk"``) and the slice boundaries for ``model``."""
        sizes = param_sizes(model)
        if self.slicing == "risk":
            self.risk = leakage_risk(model, self.root_x, self.root_y, probes=self.probes,
                                     generator=generator or self.probe_generator,
                                     loss_fn=self.loss_fn)
            self.bounds = risk_slices(sizes, self.risk, self.n_slices)
        else:
            self.bounds = size_slices(sizes, self.n_slices)
        return self.bounds

    def on_round_start(self, model: nn.Module, round_idx: int) -> None:
        stale = self.bounds is None or int(self.bounds[-1]) != sum(param_sizes(model))
        due = self.slicing == "risk" and (self._risk_round is None
                                          or round_idx - self._risk_round >= self.refresh_period()
                                          or round_idx < self._risk_round)
        if stale or due:
            self.update_slices(model)
            self._risk_round = round_idx

    def refresh_period(self) -> int:
        """Rounds between the last refresh of the risk and the next: ``risk_every``, or with
        ``risk_warmup`` ``min(risk_every, max(1, r))`` for a last refresh in round ``r`` (doubling)."""
        if not self.risk_warmup or self._risk_round is None:
            return self.risk_every
        return min(self.risk_every, max(1, self._risk_round))

    def _ensure_bounds(self, n_entries: int, model: Optional[nn.Module]) -> Tensor:
        if self.bounds is None or int(self.bounds[-1]) != n_entries:
            if model is None:
                raise FedshieldError("no slices yet: call on_round_start(model, r) or pass the model")
            self.update_slices(model)
            if int(self.bounds[-1]) != n_entries:
                raise FedshieldError(f"the update has {n_entries} entries but the model has "
                                     f"{int(self.bounds[-1])} parameters")
        return self.bounds

    def client(self, updates: Tensor, ctx: RoundContext) -> Tensor:
        if not isinstance(updates, Tensor) or updates.dim() != 2:
            raise FedshieldError("client updates must be a [m, P] tensor")
        bounds = self._ensure_bounds(updates.shape[1], ctx.model)
        out, ids, bounds = clip_and_perturb(updates, bounds, ratio=self.ratio, sigma=self.sigma,
                                            clip_bound=self.clip_bound, floor=self.floor, jitter=self.jitter,
                                            generator=self.generator, return_bounds=True)
        ctx.extra["perturbed_slices"] = ids
        ctx.extra["slice_bounds"] = bounds
        return out

    def aggregate_variance(self, weights) -> float:
        """The per-entry noise variance of the weighted aggregate with client weights ``weights``:
        the ``noise_var`` rule's for the noised slices, plus the floor's ``floor^2 sum_i w_i^2``."""
        var = NOISE_VARS[self.noise_var](weights, self.ratio, self.sigma, n_slices=self.n_slices)
        if self.floor > 0:
            var += self.floor ** 2 * float(torch.as_tensor(weights, dtype=torch.float64).pow(2).sum())
        return var

    def server(self, aggregate: Tensor, ctx: RoundContext) -> Tensor:
        if not self.do_compensate:
            return aggregate
        var = self.aggregate_variance(ctx.weights)
        if self.compensation == "paper":
            out, info = compensate(aggregate, var, self.q, return_info=True)
            dropped = info["dropped"]
        else:
            if ctx.model is None:
                raise FedshieldError("per-layer compensation needs the model's parameter shapes (ctx.model)")
            shapes = [p.shape for p in ctx.model.parameters() if p.requires_grad]
            out, info = compensate_layers(aggregate, shapes, var, rule=self.compensation, return_info=True)
            dropped = sum(info["dropped"])
        ctx.extra["noise_var"] = var
        ctx.extra["dropped_directions"] = dropped
        ctx.extra["compensation"] = info
        return out

    def perturb_gradient(self, grad_flat: Tensor, model: Optional[nn.Module] = None, *,
                         generator: Optional[torch.Generator] = None) -> Tensor:
        """Single-client attack setting: clip (if ``clip_bound``) and perturb one flat gradient
        ``[P]`` with the current slices (computed from ``model`` if there are none yet). The
        chosen slice ids are kept in ``self.last_perturbed_slices``. ``generator`` overrides the
        defense's own generator for this call."""
        if not isinstance(grad_flat, Tensor) or grad_flat.dim() != 1:
            raise FedshieldError("grad_flat must be a flat [P] tensor")
        bounds = self._ensure_bounds(grad_flat.numel(), model)
        gen = generator if generator is not None else self.generator
        out, ids = clip_and_perturb(grad_flat, bounds, ratio=self.ratio, sigma=self.sigma, clip_bound=self.clip_bound,
                                    floor=self.floor, jitter=self.jitter, generator=gen)
        self.last_perturbed_slices = ids
        return out

    def __repr__(self) -> str:
        return (f"PaperDefense(n_slices={self.n_slices}, ratio={self.ratio}, sigma={self.sigma}, "
                f"clip_bound={self.clip_bound}, q={self.q}, compensate={self.do_compensate}, "
                f"slicing={self.slicing!r}, probes={self.probes}, risk_every={self.risk_every}, "
                + ("risk_warmup=True, " if self.risk_warmup else "")
                + f"root={self._root_id()}, seed={self.seed}"
                + ("" if self.noise_var == "derived" else f", noise_var={self.noise_var!r}")
                + ("" if self.compensation == "paper" else f", compensation={self.compensation!r}")
                + ("" if self.floor == 0 else f", floor={self.floor}")
                + ("" if self.jitter == 0 else f", jitter={self.jitter}") + ")")

    def _root_id(self) -> str:
        """Size and content hash of the root set: part of the repr, hence of result-cache keys."""
        if self.root_x is None:
            return "none"
        h = hashlib.sha256(self.root_x.detach().cpu().contiguous().numpy().tobytes())
        h.update(self.root_y.detach().cpu().contiguous().numpy().tobytes())
        return f"{self.root_x.shape[0]}:{h.hexdigest()[:10]}"
