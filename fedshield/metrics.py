"""PSNR, SSIM, accuracy and defense overhead."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .errors import FedshieldError
from .utils import eval_mode


def _as_batch(x: Tensor) -> Tensor:
    x = x.detach().to(torch.float64).cpu()
    return x.unsqueeze(0) if x.dim() == 3 else x


def psnr(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR in dB of ``x`` against ``ref`` (NCHW or CHW, values in [0, data_range]).
    Identical images give ``inf``."""
    x, ref = _as_batch(x), _as_batch(ref)
    if x.shape != ref.shape:
        raise FedshieldError(f"psnr: shapes differ {tuple(x.shape)} vs {tuple(ref.shape)}")
    mse = ((x.clamp(0, data_range) - ref) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range ** 2 / mse)


def ssim(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image SSIM (scikit-image, Gaussian-free 7x7 window; fits 28x28 and 32x32 images),
    channels averaged for colour images."""
    from skimage.metrics import structural_similarity

    x, ref = _as_batch(x), _as_batch(ref)
    if x.shape != ref.shape:
        raise FedshieldError(f"ssim: shapes differ {tuple(x.shape)} vs {tuple(ref.shape)}")
    xs = x.clamp(0, data_range).numpy()
    rs = ref.numpy()
    out = []
    for a, b in zip(xs, rs):
        win = min(7, a.shape[-1], a.shape[-2])
        win -= (win + 1) % 2  # odd
        out.append(structural_similarity(a, b, data_range=data_range, channel_axis=0, win_size=win))
    return torch.tensor(out, dtype=torch.float64)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: Tensor, y: Tensor, batch_size: int = 2000) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` in eval mode."""
    correct = 0
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / max(1, len(x))


def overhead(defended_seconds: float, baseline_seconds: float) -> float:
    """Relative round-time overhead of a defense: defended / undefended - 1."""
    if baseline_seconds <= 0:
        raise FedshieldError("baseline time must be > 0")
    return defended_seconds / baseline_seconds - 1.0


def summarize(values) -> dict:
    """mean, std, median, min, max of a list of numbers (finite values only; inf counted)."""
    a = np.asarray(list(values), dtype=float)
    fin = a[np.isfinite(a)]
    if fin.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan"), "n": int(a.size)}
    return {"mean": float(fin.mean()), "std": float(fin.std()), "median": float(np.median(a)),
            "min": float(a.min()), "max": float(a.max()), "n": int(a.size), "n_inf": int(np.isinf(a).sum())}
