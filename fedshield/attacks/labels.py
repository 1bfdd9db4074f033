"""Label inference from a shared gradient: the iDLG rule (Zhao et al. 2020)."""
from __future__ import annotations

from torch import Tensor, nn

from ..errors import FedshieldError
from ..params import fc_ranges
from .common import check_target

__all__ = ["infer_label"]


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
    g = check_target(model, grad_flat, batched=batched)
    g = g if batched else g.unsqueeze(0)
    (w0, w1), b = fc_ranges(model)
    K = model.fc.out_features
    if not 1 <= batch_size <= K:
        raise FedshieldError(f"batch_size must be in [1, {K}], got {batch_size}")
    if b is not None:
        score = g[:, b[0]:b[1]]
    else:
        score = g[:, w0:w1].view(g.shape[0], K, -1).sum(-1)
    lab = score.topk(batch_size, dim=1, largest=False).indices
    return lab if batched else lab[0]
