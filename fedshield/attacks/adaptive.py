"""The adaptive ("muted") attacker against the paper's defense: find the noisy slices of a shared
update and match only the others.

Against PLD the muted attacker drops the FC layer (:func:`fedshield.params.fc_mask`), against GC
it matches the non-zero entries; against the paper's defense it needs :func:`detect_noisy_slices`
and a clean per-entry scale (:func:`gradient_reference`) computed from public data.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..errors import FedshieldError
from ..params import check_bounds, n_params, slice_ids
from ..utils import check_jitter
from .common import victim_gradients

__all__ = ["detect_noisy_slices", "slice_mask", "gradient_reference", "label_reference", "entry_mask",
           "expanded_slice_mask"]


def detect_noisy_slices(updates: Tensor, bounds: Tensor, sigma: float, *, n_noisy: Optional[int] = None,
                        reference: Optional[Tensor] = None, floor: float = 0.0) -> Tensor:
    """Which slices of a shared update carry the defense's noise, judged from the update alone.

    The attacker models a clean entry as ``u_i ~ N(0, r_i)`` and a perturbed one as
    ``N(0, r_i + sigma^2)`` and scores every slice j by the Gaussian log-likelihood ratio

    ``LLR_j = sum_{i in j} 1/2 [ log(r_i / (r_i + sigma^2)) + u_i^2 sigma^2 / (r_i (r_i + sigma^2)) ]``.

    ``r_i`` is the typical clean square of entry i, which a server can compute from public data
    (:func:`gradient_reference`: the mean square of per-sample gradients of the root set). Without
    it, ``r_i`` is the update's own mean square (one scale for all entries: a weaker attacker).
    Entries whose clean scale is far below sigma carry the evidence, so a per-entry reference
    matters: with the DLG-initialised LeNet, gradient entries are often as large as sigma = 0.1 and
    a plain per-slice mean square finds far fewer of the noisy slices than the LLR (the muted
    attack's rows record the detector's precision, ``detect_precision``).

    Against a defense that also adds a public noise floor of std ``floor`` to every entry
    (``PaperDefense(floor=...)``) the attacker knows it too: ``r_i`` becomes ``r_i + floor^2`` in both
    hypotheses (without that, the floor makes every slice look noisy and the detector guesses).

    Selected: the ``n_noisy`` highest scores (the number of perturbed slices
    ``max(1, floor(s * ratio))`` is public), else every slice with ``LLR_j > 0``.

    Parameters
    ----------
    updates : ``[P]`` or ``[V, P]`` shared updates.
    bounds : ``[s + 1]`` slice boundaries (the server recomputes them from the public root set).
    sigma : the defense's noise standard deviation (public).
    reference : ``[P]`` clean per-entry mean squares, or ``[V, P]``, one per update (e.g. each
        victim's :func:`gradient_reference` with the root images relabelled to its label).

    Returns
    -------
    bool ``[s]`` / ``[V, s]``: True = judged noisy.
    """
    single = updates.dim() == 1
    u = (updates.unsqueeze(0) if single else updates).to(torch.float64)
    P = u.shape[1]
    b = check_bounds(bounds, P)
    ids = slice_ids(b, u.device)
    s = b.numel() - 1
    if not float(sigma) > 0:
        raise FedshieldError(f"sigma must be > 0, got {sigma}")
    s2 = float(sigma) ** 2
    if reference is None:
        r = (u * u).mean(1, keepdim=True).expand_as(u)
    else:
        r = torch.as_tensor(reference, dtype=torch.float64, device=u.device)
        if r.shape != (P,) and r.shape != u.shape:
            raise FedshieldError(f"reference must be [P] or [V, P] with V, P = {tuple(u.shape)}, got {tuple(r.shape)}")
        r = r.expand_as(u)
    if not float(floor) >= 0:
        raise FedshieldError(f"floor must be >= 0, got {floor}")
    r = r.clamp_min(1e-20) + float(floor) ** 2
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
    b = check_bounds(bounds, int(bounds[-1]) if P is None else P)
    return ~noisy[..., slice_ids(b, noisy.device)]


def label_reference(model: nn.Module, x: Tensor, labels: Tensor, chunk: int = 50) -> Tensor:
    """``[V, P]``: for each victim label ``labels[v]`` (one label per victim, or ``[V, B]`` with
    ``B`` labels: their mean), :func:`gradient_reference` of the images ``x`` all relabelled to it:
    the clean scale the victim's own gradient has, label row included. Each distinct label's
    reference is computed once."""
    lab = torch.as_tensor(labels, dtype=torch.long)
    lab = lab.reshape(lab.shape[0], -1)
    classes = torch.unique(lab)
    per_class = torch.stack([gradient_reference(model, x, torch.full((len(x),), int(c), dtype=torch.long), chunk)
                             for c in classes])                                  # [C', P]
    return per_class[torch.searchsorted(classes, lab)].mean(1)


def expanded_slice_mask(bounds: Tensor, noisy: Tensor, jitter: float, P: Optional[int] = None) -> Tensor:
    """Boolean ``[P]`` / ``[V, P]`` mask of the entries outside the noisy slices *widened by the
    most a client's boundary can move* (``PaperDefense(jitter=...)``, :func:`fedshield.defense.jitter_bounds`:
    ``jitter / 2`` of the neighbouring slice's length on each side): whatever the clients' draw,
    a correctly detected noisy slice then lies inside the dropped range. The attacker pays with a
    few clean entries at the edges."""
    b = check_bounds(torch.as_tensor(bounds, dtype=torch.long), P)
    P = int(b[-1])
    check_jitter(jitter)
    single = noisy.dim() == 1
    nz = noisy.unsqueeze(0) if single else noisy
    ln = (b[1:] - b[:-1]).to(torch.float64)
    pad_lo = torch.zeros_like(ln)
    pad_hi = torch.zeros_like(ln)
    pad_lo[1:] = torch.floor(ln[:-1] * float(jitter) / 2)   # slice j's start can move down into j-1
    pad_hi[:-1] = torch.floor(ln[1:] * float(jitter) / 2)   # its end up into j+1
    lo = (b[:-1] - pad_lo.to(torch.long)).clamp_min(0)
    hi = (b[1:] + pad_hi.to(torch.long)).clamp_max(P)
    drop = torch.zeros(nz.shape[0], P, dtype=torch.bool)
    for v, j in nz.nonzero().tolist():   # a loop over the k detected slices per victim, not entries
        drop[v, int(lo[j]):int(hi[j])] = True
    keep = ~drop
    return keep[0] if single else keep


def entry_mask(bounds: Tensor, ids: Tensor, P: int) -> Tensor:
    """Boolean ``[m, P]``: True on the entries of the chosen slices ``ids`` ``[m, k]`` of each row,
    for common ``[s + 1]`` or per-row ``[m, s + 1]`` boundaries (the defense's truth, to score a
    detector entry by entry)."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    b = torch.as_tensor(bounds, dtype=torch.long)
    b = b.unsqueeze(0).expand(ids.shape[0], -1) if b.dim() == 1 else b
    lo, hi = b[:, :-1].gather(1, ids), b[:, 1:].gather(1, ids)
    pos = torch.arange(int(P)).view(1, 1, -1)
    return ((pos >= lo.unsqueeze(2)) & (pos < hi.unsqueeze(2))).any(1)


def gradient_reference(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 50) -> Tensor:
    """Per-entry mean square of clean per-sample gradients over ``(x, y)`` (e.g. the public root
    set): ``r_i = mean_n g_i(x_n, y_n)^2``, ``[P]``.

    The output layer's rows depend on the label: row ``c`` of a softmax layer gets
    ``(p_c - 1) h`` from an image of class ``c`` and only ``p_c h`` from the others. A root set that
    lacks the victim's class (100 images cannot hold all of CIFAR-100's 100 classes) gives that row
    a reference far below the victim's clean gradient, and the detector takes it for noise. The
    attacker who knows the victim's label (the paper's threat model) relabels the root images:
    :func:`label_reference`."""
    if x.dim() == 4:
        x, y = x.unsqueeze(1), torch.as_tensor(y).reshape(-1, 1)
    acc = torch.zeros(n_params(model), dtype=torch.float64)
    for i in range(0, len(x), chunk):
        g = victim_gradients(model, x[i:i + chunk], y[i:i + chunk]).to(torch.float64)
        acc += (g * g).sum(0)
    return (acc / len(x)).to(torch.float32)
