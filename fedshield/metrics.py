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


# ----------------------------------------------------------------------------------------------
# privacy against a no-information floor
# ----------------------------------------------------------------------------------------------

def _check_images(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        x = torch.as_tensor(np.asarray(x))
    x = _as_batch(x)
    if x.dim() != 4:
        raise FedshieldError(f"{name} must be [C, H, W] or [N, C, H, W], got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise FedshieldError(f"{name} contains NaN or Inf")
    return x


def floor_images(x_true: Tensor, *, label=None, public=None) -> dict[str, Tensor]:
    """The guesses an attacker can make *without the update*, for each true image ``[N, C, H, W]``:

    - ``"constant"``: the best constant image, each channel filled with the true image's own mean
      (for the squared error no constant colour does better, so its PSNR bounds every constant
      image's, the grey 0.5 included);
    - ``"class mean"`` (given ``label`` ``[N]`` and ``public = (x_public, y_public)``): the mean of
      the public images of the victim's class, which an attacker who knows or infers the label
      (iDLG) can draw without seeing anything of the victim.
    """
    x = _check_images(x_true, "x_true")
    out = {"constant": x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()}
    if label is not None and public is not None:
        xp, yp = public
        xp = _check_images(xp, "public images")
        yp = torch.as_tensor(yp).reshape(-1).long()
        lab = torch.as_tensor(label).reshape(-1).long()
        if lab.numel() != x.shape[0]:
            raise FedshieldError(f"{x.shape[0]} images but {lab.numel()} labels")
        if xp.shape[1:] != x.shape[1:] or yp.numel() != xp.shape[0]:
            raise FedshieldError("public images must match x_true's (C, H, W) and have one label each")
        means = []
        for c in lab.tolist():
            sel = yp == c
            if not bool(sel.any()):
                raise FedshieldError(f"the public set has no image of class {c}")
            means.append(xp[sel].mean(0))
        out["class mean"] = torch.stack(means)
    return out


def psnr_floor(x_true: Tensor, *, label=None, public=None, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR of the best reconstruction made without the update (dB): the better of the
    best constant image and, given ``label`` and ``public = (x_public, y_public)``, the class mean
    of the public images (:func:`floor_images`). A reconstruction whose PSNR is at or below this
    has not used the update; ``psnr - psnr_floor`` is what an attack gained from it."""
    x = _check_images(x_true, "x_true")
    guesses = floor_images(x, label=label, public=public)
    return torch.stack([psnr(g, x, data_range) for g in guesses.values()]).amax(0)


def _centred_unit(x: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of ``x`` ``[N, D]`` centred and scaled to unit norm, and whether each had any spread."""
    z = x - x.mean(1, keepdim=True)
    n = z.norm(dim=1, keepdim=True)
    ok = n.squeeze(1) > 1e-12
    return z / n.clamp_min(1e-12), ok


def identification_rank(x_rec: Tensor, x_true: Tensor, candidates: Tensor) -> Tensor:
    """Rank of the true image among ``candidates`` as judged from the reconstruction (1 =
    identified; for ``N`` candidates chance identification is ``1/N``).

    ``x_rec`` and ``x_true`` are ``[C, H, W]`` or ``[B, C, H, W]`` (one rank per image);
    ``candidates`` ``[N - 1, C, H, W]`` (the other images the victim is hidden among, e.g. test
    images of the same class; shared by the batch) or ``[B, N - 1, C, H, W]``.

    The distance is one minus the Pearson correlation of the pixels (the reconstruction and each
    candidate centred and normalised). It ignores brightness and contrast, so it does not reward
    a guess for matching the victim's mean intensity -- the part of the image the no-information
    floor already grants (:func:`floor_images`) -- and it is unaffected by a global rescaling of
    the update (clipping). A reconstruction without spread (a constant image) is equally far from
    every candidate; ties count against the true image, so such a guess ranks last.
    """
    xr = _check_images(x_rec, "x_rec")
    xt = _check_images(x_true, "x_true")
    if xr.shape != xt.shape:
        raise FedshieldError(f"x_rec and x_true differ in shape: {tuple(xr.shape)} vs {tuple(xt.shape)}")
    cand = candidates if isinstance(candidates, Tensor) else torch.as_tensor(np.asarray(candidates))
    cand = cand.detach().to(torch.float64).cpu()
    B = xr.shape[0]
    if cand.dim() == 4:
        cand = cand.unsqueeze(0).expand(B, -1, -1, -1, -1)
    if cand.dim() != 5 or cand.shape[0] != B or cand.shape[2:] != xt.shape[1:]:
        raise FedshieldError(f"candidates must be [N-1, C, H, W] or [B, N-1, C, H, W] matching x_true "
                             f"{tuple(xt.shape[1:])}, got {tuple(cand.shape)}")
    if not torch.isfinite(cand).all():
        raise FedshieldError("candidates contain NaN or Inf")
    pool = torch.cat([xt.unsqueeze(1), cand], 1).flatten(2)           # [B, N, D]; index 0 = the victim
    r, ok = _centred_unit(xr.clamp(0, 1).flatten(1))                    # [B, D]
    pu = pool - pool.mean(2, keepdim=True)
    pu = pu / pu.norm(dim=2, keepdim=True).clamp_min(1e-12)
    dist = 1.0 - torch.einsum("bd,bnd->bn", r, pu)                      # [B, N]
    d0 = dist[:, :1]
    rank = 1 + (dist[:, 1:] <= d0).sum(1)                                # ties count against the victim
    rank = torch.where(ok, rank, torch.full_like(rank, pool.shape[1]))
    return rank
