"""The comparison defenses of the paper (Section 6A) and the defense registry.

Every defense is a :class:`fedshield.hooks.Defense` whose client hook transforms the ``[m, P]``
updates of a round in one vectorised step (each row independently):

- :class:`GradientCompression` (GC, Zhu et al. 2019): zero the fraction ``p`` of entries with the
  smallest magnitude in each row (exactly ``floor(p P)`` entries; ties broken by index order of
  ``torch.topk``).
- :class:`DPGaussian` (DP-G): add ``N(0, variance)`` to every entry.
- :class:`DPLaplace` (DP-L): add ``Laplace(0, b)`` with ``2 b^2 = variance`` to every entry.
- :class:`PLD` (Soteria, Sun et al. CVPR 2021): for the FC layer's input representation
  ``r = model.features(X)`` of the client's data, score each feature ``j`` by
  ``rho_j = sum_b ||d r_bj / d X_b||_2 / (|r_bj| + eps)`` and zero the FC weight-gradient columns
  of the ``floor(p F)`` features with the *smallest* score (Soteria prunes small
  ``||dr/dX|| / ||r||``: features that are large relative to their sensitivity to the input are
  the ones from which the input is easiest to reconstruct).
- ``"ours"``: :class:`fedshield.defense.PaperDefense`.

:func:`make_defense` builds any of them by name; :func:`paper_defense_kwargs` gives the paper's
settings per attack (Section 6B). Noise comes from each defense's own generator (``seed``;
``None`` = OS entropy), never from ``ctx.generator``, as in :class:`~fedshield.defense.PaperDefense`.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn
from torch.func import jacrev, jvp, vmap

from .defense import PaperDefense
from .errors import FedshieldError
from .hooks import Defense, RoundContext
from .params import fc_ranges
from .utils import check_int, check_nonneg, eval_mode, make_generator

__all__ = ["GradientCompression", "DPGaussian", "DPLaplace", "PLD", "make_defense", "paper_defense_kwargs",
           "DEFENSES", "feature_scores"]

DEFENSES = ("none", "ours", "gc", "dp-g", "dp-l", "pld")

# Section 6B: GC 80% vs DGA / 90% vs GIA; PLD 60% / 80%; ours ratio 20% / 30%, variance 1e-2;
# DP variance 1e-2 against both.
_PAPER = {
    "none": {"dlg": {}, "ig": {}},
    "gc": {"dlg": {"p": 0.8}, "ig": {"p": 0.9}},
    "pld": {"dlg": {"p": 0.6}, "ig": {"p": 0.8}},
    "dp-g": {"dlg": {"variance": 1e-2}, "ig": {"variance": 1e-2}},
    "dp-l": {"dlg": {"variance": 1e-2}, "ig": {"variance": 1e-2}},
    "ours": {"dlg": {"ratio": 0.2, "sigma": 0.1}, "ig": {"ratio": 0.3, "sigma": 0.1}},
}


def _check_updates(updates) -> Tensor:
    if not isinstance(updates, Tensor) or updates.dim() != 2:
        raise FedshieldError("client updates must be a [m, P] tensor")
    if not updates.dtype.is_floating_point:
        raise FedshieldError("client updates must be floating point")
    return updates


def _check_rate(p, name: str = "p") -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise FedshieldError(f"{name} must be in [0, 1), got {p}")
    return p


class GradientCompression(Defense):
    """GC: in each row keep the ``P - floor(p P)`` largest-magnitude entries, zero the rest."""

    name = "gc"

    def __init__(self, p: float = 0.8):
        self.p = _check_rate(p)

    def client(self, updates: Tensor, ctx: Optional[RoundContext] = None) -> Tensor:
        u = _check_updates(updates)
        P = u.shape[1]
        keep = P - int(math.floor(self.p * P + 1e-9))
        if keep >= P:
            return u.clone()
        idx = u.abs().topk(keep, dim=1, sorted=False).indices
        return torch.zeros_like(u).scatter_(1, idx, u.gather(1, idx))

    def __repr__(self) -> str:
        return f"GradientCompression(p={self.p})"


class _Noise(Defense):
    """Entry-wise noise of ``variance``: on the shared update (``where="update"``, the default) or,
    ``where="step"``, on the gradient of every local SGD step of every client (DP-SGD without
    clipping; a FedAvg client taking ``S`` steps then shares ``S`` noise draws summed, in
    pseudo-gradient units: variance ``S * variance`` per entry)."""

    def __init__(self, variance: float = 1e-2, seed: Optional[int] = None, where: str = "update"):
        check_nonneg(variance, "variance")
        if where not in ("update", "step"):
            raise FedshieldError(f"where must be 'update' or 'step', got {where!r}")
        self.variance = float(variance)
        self.seed = seed
        self.where = where
        self.on_local_steps = where == "step"
        self.generator = make_generator(seed)

    def _noise(self, shape, dtype, device) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def client(self, updates: Tensor, ctx: Optional[RoundContext] = None) -> Tensor:
        u = _check_updates(updates)
        if self.variance == 0 or self.where == "step":
            return u.clone()
        return u + self._noise(u.shape, u.dtype, u.device)

    def local_step(self, grads: dict, active: Tensor) -> dict:
        if self.variance == 0:
            return grads
        out = {}
        for k, g in grads.items():
            z = self._noise(g.shape, g.dtype, g.device)
            out[k] = g + z * active.to(g.dtype).view(-1, *([1] * (g.dim() - 1)))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(variance={self.variance}" + (", where='step')" if self.where == "step" else ")")


class DPGaussian(_Noise):
    """DP-G: ``u + N(0, variance)`` entry-wise (std ``sqrt(variance)``; paper: variance 1e-2)."""

    name = "dp-g"

    def _noise(self, shape, dtype, device):
        z = torch.randn(shape, generator=self.generator, dtype=dtype, device=self.generator.device)
        return z.to(device).mul_(math.sqrt(self.variance))


class DPLaplace(_Noise):
    """DP-L: ``u + Laplace(0, b)`` entry-wise with ``b = sqrt(variance / 2)`` (a Laplace variable
    has variance ``2 b^2``), drawn as ``b (E1 - E2)`` for independent ``E ~ Exp(1)``."""

    name = "dp-l"

    def _noise(self, shape, dtype, device):
        u = torch.rand((2,) + tuple(shape), generator=self.generator, dtype=dtype, device=self.generator.device)
        e = -torch.log1p(-u)  # Exp(1): 1 - u in (0, 1]
        return (e[0] - e[1]).to(device).mul_(math.sqrt(self.variance / 2.0))


#: above this many features the exact feature scores are computed in pieces (memory)
_WIDE_FEATURES = 1024
_JAC_CHUNK = 32


def feature_scores(model: nn.Module, x: Tensor, *, eps: float = 1e-10, chunk: int = 16,
                   probes: Optional[int] = None, generator: Optional[torch.Generator] = None) -> Tensor:
    """Soteria's per-sample feature scores ``||d r_j(x_b) / d x_b||_2 / (|r_j(x_b)| + eps)``,
    ``[N, F]``, for ``r = model.features`` (the FC layer's input), in eval mode.

    ``probes=None`` (exact): the Jacobian rows are computed with ``torch.func.jacrev`` vmapped over
    the samples (``F`` vector-Jacobian products per sample, batched), ``chunk`` samples at a time.

    ``probes=K`` (estimate): ``||J_j||^2 = E_u[(J u)_j^2]`` for ``u ~ N(0, I)`` on the input side
    (Hutchinson, as for the leakage risk), so ``K`` Jacobian-vector products (forward mode) give
    every feature's row norm at once: ``K`` instead of ``F`` passes (576 features for a width-16
    ConvNet). Each squared row norm is unbiased with relative standard deviation ``sqrt(2/K)``;
    features far from the pruning threshold keep their side of it. Probes come from ``generator``.
    """
    if not hasattr(model, "features"):
        raise FedshieldError("PLD needs a model with .features(x) (the FC layer's input representation)")
    probes = None if probes is None else check_int(probes, "probes")
    if x.dim() == 3:
        x = x.unsqueeze(0)

    def feat(xi):
        return model.features(xi.unsqueeze(0))[0]

    out = []
    with eval_mode(model), torch.no_grad():
        n_feat = int(model.features(x[:1]).shape[1])
        # exact path on a wide model (the width-64 ConvNet: 4096 features on CIFAR-10): one sample at
        # a time and 32 vector-Jacobian products at once, else the backward pass is batched over
        # chunk x F cotangents (batched over samples too, 4 CIFAR-10 images ran out of memory)
        wide = probes is None and n_feat > _WIDE_FEATURES
        step = 1 if wide else chunk
        for i in range(0, x.shape[0], step):
            xb = x[i:i + step]
            r = model.features(xb)
            if probes is None:
                jac = vmap(jacrev(feat, chunk_size=_JAC_CHUNK if wide else None))(xb)  # [n, F, C, H, W]
                norm = jac.flatten(2).norm(dim=2)
            else:
                K = probes
                u = torch.randn((K * xb.shape[0],) + tuple(xb.shape[1:]), generator=generator,
                                dtype=xb.dtype, device=xb.device)
                xr = xb.repeat(K, *([1] * (xb.dim() - 1)))  # probe-major: [K n, C, H, W]
                _, t = jvp(model.features, (xr,), (u,))
                norm = t.view(K, xb.shape[0], -1).pow(2).mean(0).sqrt()
            out.append(norm / (r.abs() + eps))
    return torch.cat(out)


class PLD(Defense):
    """PLD / Soteria: prune the FC weight-gradient columns of the fraction ``p`` of input
    features with the smallest score ``sum_b ||dr_j/dX_b|| / (|r_bj| + eps)`` over the
    client's samples (``ctx.client_data[i] = (x, y)`` for row i).

    Only the FC layer's weight entries ``dL/dW[:, j]`` of the pruned features change (set to 0);
    every other entry, the FC bias included, is untouched. ``eps``: Soteria's LeNet code uses
    none (sigmoid features are positive), its ConvNet code 0.1 (ReLU features can be 0).

    ``max_samples``: score each client's features on at most this many of its samples, drawn
    uniformly without replacement each round from the defense's generator (``seed``; ``None`` = OS
    entropy). ``None`` (default) scores every sample, as Soteria does for the batch it shares. The
    exact score needs one vector-Jacobian product per feature and sample, so a FedAvg client
    holding hundreds of images costs seconds to minutes per round on a CPU; a cap keeps the cost
    bounded (the pruned set is then an estimate of the full-data one). ``probes``: estimate the
    Jacobian row norms with this many Gaussian probes instead (:func:`feature_scores`), one
    forward-mode pass per probe instead of one backward pass per feature; ``None`` = exact.
    """

    name = "pld"

    def __init__(self, p: float = 0.6, model: Optional[nn.Module] = None, *, eps: float = 1e-10,
                 max_samples: Optional[int] = None, probes: Optional[int] = None, seed: Optional[int] = None):
        self.p = _check_rate(p)
        self.model = model
        self.eps = float(eps)
        self.max_samples = None if max_samples is None else check_int(max_samples, "max_samples")
        self.probes = None if probes is None else check_int(probes, "probes")
        self.seed = seed
        self._gen = make_generator(seed) if (max_samples is not None or probes is not None) else None

    def masks(self, model: nn.Module, client_data) -> Tensor:
        """``[m, F]`` boolean: True = feature kept."""
        xs = [torch.as_tensor(d[0]) for d in client_data]
        xs = [x.unsqueeze(0) if x.dim() == 3 else x for x in xs]
        if self.max_samples is not None:
            xs = [x[torch.randperm(x.shape[0], generator=self._gen)[:self.max_samples].to(x.device)]
                  if x.shape[0] > self.max_samples else x for x in xs]
        sizes = torch.tensor([x.shape[0] for x in xs])
        scores = feature_scores(model, torch.cat(xs), eps=self.eps, probes=self.probes, generator=self._gen)
        owner = torch.repeat_interleave(torch.arange(len(xs)), sizes)
        per_client = torch.zeros(len(xs), scores.shape[1], dtype=scores.dtype).index_add_(0, owner, scores)
        F_ = per_client.shape[1]
        k = int(math.floor(self.p * F_ + 1e-9))
        keep = torch.ones_like(per_client, dtype=torch.bool)
        if k > 0:
            idx = per_client.topk(k, dim=1, largest=False).indices
            keep.scatter_(1, idx, False)
        return keep

    def client(self, updates: Tensor, ctx: RoundContext) -> Tensor:
        u = _check_updates(updates)
        model = ctx.model if ctx is not None and ctx.model is not None else self.model
        if model is None:
            raise FedshieldError("PLD needs the model (ctx.model or PLD(model=...))")
        if ctx is None or ctx.client_data is None or len(ctx.client_data) != u.shape[0]:
            raise FedshieldError("PLD needs each client's inputs in ctx.client_data (one (x, y) per row)")
        (w0, w1), _ = fc_ranges(model)
        K, F_ = model.fc.out_features, model.fc.in_features
        keep = self.masks(model, ctx.client_data).to(u.device)  # [m, F]
        out = u.clone()
        # the FC weight is [K, F] row-major: entry (c, j) at w0 + c F + j
        out[:, w0:w1] = (u[:, w0:w1].view(-1, K, F_) * keep[:, None, :].to(u.dtype)).reshape(u.shape[0], -1)
        ctx.extra["pld_kept_features"] = keep
        return out

    def __repr__(self) -> str:
        if self.max_samples is None and self.probes is None:
            return f"PLD(p={self.p})"
        opts = "".join(f", {k}={v}" for k, v in (("max_samples", self.max_samples), ("probes", self.probes))
                       if v is not None)
        return f"PLD(p={self.p}{opts}, seed={self.seed})"


def paper_defense_kwargs(name: str, attack: str = "dlg") -> dict:
    """The paper's setting (Section 6B) of defense ``name`` against ``attack`` ('dlg' / 'ig')."""
    if name not in _PAPER:
        raise FedshieldError(f"unknown defense {name!r}; choose from {list(DEFENSES)}")
    if attack not in ("dlg", "ig"):
        raise FedshieldError(f"unknown attack {attack!r}; choose from ['dlg', 'ig']")
    return dict(_PAPER[name][attack])


def make_defense(name: str, *, model: Optional[nn.Module] = None, root: Optional[tuple[Tensor, Tensor]] = None,
                 attack: str = "dlg", **kwargs) -> Defense:
    """Build a defense by name with the paper's settings against ``attack``, overridden by
    ``kwargs``.

    Names: 'none' (identity), 'ours' (needs ``root=(x, y)``, the server's root set), 'gc',
    'dp-g', 'dp-l', 'pld' (uses ``ctx.model``, or ``model``).

    Examples
    --------
    >>> make_defense("gc", attack="ig")           # GradientCompression(p=0.9)
    >>> make_defense("ours", root=(rx, ry), ratio=0.5, seed=0)
    """
    if not isinstance(name, str) or name.lower() not in DEFENSES:
        raise FedshieldError(f"unknown defense {name!r}; choose from {list(DEFENSES)}")
    name = name.lower()
    kw = {**paper_defense_kwargs(name, attack), **kwargs}
    try:
        if name == "none":
            if kw:
                raise FedshieldError(f"defense 'none' takes no options, got {sorted(kw)}")
            return Defense()
        if name == "gc":
            return GradientCompression(**kw)
        if name == "dp-g":
            return DPGaussian(**kw)
        if name == "dp-l":
            return DPLaplace(**kw)
        if name == "pld":
            return PLD(model=model, **kw)
        if root is None:
            raise FedshieldError("defense 'ours' needs the root set: make_defense('ours', root=(x, y))")
        kw.setdefault("n_slices", 10)
        return PaperDefense(root[0], root[1], **kw)
    except TypeError as e:  # unknown keyword
        raise FedshieldError(f"bad option for defense {name!r}: {e}") from None
