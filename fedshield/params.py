"""The flat-vector layout every update, gradient, mask and slice refers to.

A model's *flat vector* is the concatenation of its trainable parameter tensors (those with
``requires_grad``), each flattened row-major, in ``model.parameters()`` order. This module owns
that layout: which tensors are in it (:func:`named_trainable`, :func:`trainable`), their sizes
and index ranges (:func:`param_sizes`, :func:`param_ranges`, :func:`fc_ranges`, :func:`fc_mask`),
the conversion both ways (:func:`flatten`, :func:`unflatten`) and the contiguous *slices* of the
paper's defense: ``s + 1`` boundaries ``0 = b_0 < b_1 < ... < b_s = P``, slice ``j`` being
``flat[b_j : b_{j+1}]`` (:func:`check_bounds`, :func:`slice_ids`).
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
from torch import Tensor, nn

from .errors import FedshieldError

__all__ = ["named_trainable", "trainable", "param_sizes", "n_params", "param_ranges", "fc_ranges", "fc_mask",
           "flatten", "unflatten", "check_bounds", "slice_ids"]


def named_trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every trainable tensor, in ``model.parameters()`` order; one
    clear error when there is none."""
    if not isinstance(model, nn.Module):
        raise FedshieldError("model must be a torch.nn.Module")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise FedshieldError("the model is empty: it has no trainable parameters")
    return named


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameter tensors, in ``model.parameters()`` order (the flat layout)."""
    return [p for _, p in named_trainable(model)]


def param_sizes(model: nn.Module) -> list[int]:
    """Number of entries of each trainable parameter tensor, in ``model.parameters()`` order."""
    return [p.numel() for p in model.parameters() if p.requires_grad]


def n_params(model: nn.Module) -> int:
    """``P``: the length of the model's flat vector."""
    return sum(p.numel() for p in trainable(model))


def param_ranges(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``{parameter name: (start, stop)}`` of each trainable tensor in the flat vector."""
    out, i = {}, 0
    for n, p in named_trainable(model):
        out[n] = (i, i + p.numel())
        i += p.numel()
    return out


def fc_ranges(model: nn.Module) -> tuple[tuple[int, int], Optional[tuple[int, int]]]:
    """``((w0, w1), (b0, b1) or None)``: where the output layer ``model.fc`` (an ``nn.Linear``,
    see :mod:`fedshield.models`) lies in the flat vector. Its weight ``[K, F]`` is row-major, so
    entry ``(c, j)`` is at ``w0 + c F + j``."""
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
    mask = torch.ones(n_params(model), dtype=torch.bool)
    w, b = fc_ranges(model)
    mask[w[0]:w[1]] = False
    if b is not None:
        mask[b[0]:b[1]] = False
    return mask


def flatten(tensors: Iterable[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector (the 'flattened gradient' of the paper)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector back into tensors shaped like ``like`` (views of ``flat``)."""
    out, i = [], 0
    for t in like:
        n = t.numel()
        out.append(flat[i:i + n].view_as(t))
        i += n
    if i != flat.numel():
        raise FedshieldError(f"flat vector has {flat.numel()} entries, the tensors need {i}")
    return out


def check_bounds(bounds, n_entries: Optional[int] = None) -> Tensor:
    """Slice boundaries as a ``LongTensor [s + 1]``, validated: 1-D, at least two entries,
    ``b_0 = 0``, strictly increasing (no empty slice) and, when ``n_entries`` is given,
    ``b_s = n_entries`` (the slices cover the flat vector exactly)."""
    try:
        b = torch.as_tensor(bounds)
    except (TypeError, ValueError, RuntimeError):
        raise FedshieldError(f"slice bounds must be a 1-D sequence of integers, got {bounds!r}") from None
    if b.dim() != 1 or b.numel() < 2 or b.dtype.is_floating_point or b.dtype == torch.bool:
        raise FedshieldError("slice bounds must be a 1-D integer tensor of n_slices + 1 boundaries")
    b = b.to(torch.long)
    if n_entries is not None and (int(b[0]) != 0 or int(b[-1]) != int(n_entries)):
        raise FedshieldError(f"slice bounds must run from 0 to {int(n_entries)} (the gradient's length), "
                             f"got {int(b[0])}..{int(b[-1])}")
    if int(b[0]) != 0:
        raise FedshieldError(f"slice bounds must start at 0, got {int(b[0])}")
    if not bool((b[1:] > b[:-1]).all()):
        raise FedshieldError("slice bounds must be strictly increasing (no empty slice)")
    return b


def slice_ids(bounds: Tensor, device=None) -> Tensor:
    """Slice id of every entry, ``LongTensor [P]`` for validated ``bounds``: a 1 at each interior
    boundary, cumulative sum (O(P); ``repeat_interleave`` is much slower on CPU)."""
    idx = torch.zeros(int(bounds[-1]), dtype=torch.long, device=device)
    idx[bounds[1:-1].to(device)] = 1
    return idx.cumsum_(0)
