"""The attacker who compensates (Section 5C, the book's Chapter 5): does clipping stop a server from
denoising one client's perturbed update with the paper's own compensation?

One experiment, one cached result (:func:`run_clipping_attack`, keyed by its config dict):

1. the DLG LeNet (every weight ~ U(-0.5, 0.5), seeded) and ``images`` MNIST test victims;
2. each victim's gradient, clipped to each bound ``B`` of ``bounds`` (``None``: no clipping) and
   perturbed by the paper's defense with that bound (its noise seed per victim);
3. the server's compensation of each *single* update (noise variance of one client,
   :func:`~fedshield.defense.aggregate_noise_var` with weight 1);
4. DLG on the clean, the perturbed and the perturbed + compensated gradients, all at once, and the
   PSNR of each reconstruction (perfect ones capped at 60 dB), plus the relative errors of the
   perturbed / compensated targets and the compensation's kept / dropped directions.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..attacks.common import victim_gradients
from ..attacks.dlg import dlg_batch
from ..baselines import paper_defense_kwargs
from ..cache import ResultCache
from ..data import load_dataset, root_set
from ..defense import PaperDefense, aggregate_noise_var, clip, compensate
from ..metrics import psnr
from ..models import build_model
from ..utils import make_generator

#: the experiment's name and cache prefix (kept: a renamed key would recompute cached results)
KIND = "attacker_compensates"
PREFIX = "clipping-attacker"


def clipping_attack_config(*, images: int, iterations: int, seed: int, bounds: Sequence[Optional[float]],
                           root_size: int, probes: int, q: float = 6.0, n_slices: int = 10) -> dict:
    """The experiment's config (the paper's DLG defense setting for ratio and sigma)."""
    return dict(kind=KIND, dataset="mnist", model="lenet-dlg-init", images=images, iterations=iterations,
                seed=seed, bounds=list(bounds), q=q, n_slices=n_slices, root_size=root_size, probes=probes,
                **paper_defense_kwargs("ours", "dlg"))


def clipping_attack(cfg: dict) -> dict:
    """Run the experiment of ``cfg`` (:func:`clipping_attack_config`); JSON-able result:
    ``rows`` (one per target: bound, defended, compensated, victim, psnr, grad_loss), ``info``
    (one per defended victim and bound: norms, relative errors, kept / dropped directions),
    ``x_true``, ``x_rec`` and DLG's ``seconds``."""
    gen_model = make_generator(cfg["seed"])
    model = build_model("lenet", "mnist").dlg_init_(gen_model).eval()
    xte, yte = load_dataset("mnist", "test")
    vid = torch.randperm(len(yte), generator=make_generator(cfg["seed"] + 1))[:cfg["images"]]
    xv, yv = xte[vid], yte[vid]
    g = victim_gradients(model, xv, yv)                                   # [V, P]
    xtr, ytr = load_dataset("mnist", "train")
    ridx = root_set(ytr, cfg["root_size"], seed=cfg["seed"])
    var1 = aggregate_noise_var(torch.ones(1), cfg["ratio"], cfg["sigma"], n_slices=cfg["n_slices"])
    targets, rows = [g], [dict(bound=None, defended=False, compensated=False, victim=v) for v in range(len(vid))]
    info_rows = []
    for b in cfg["bounds"]:
        d = PaperDefense(xtr[ridx], ytr[ridx], n_slices=cfg["n_slices"], ratio=cfg["ratio"], sigma=cfg["sigma"],
                         clip_bound=b, q=cfg["q"], probes=cfg["probes"], seed=cfg["seed"])
        d.update_slices(model)
        gp = torch.stack([d.perturb_gradient(g[v], generator=make_generator(cfg["seed"] * 1000 + v))
                          for v in range(len(vid))])
        truth = clip(g, b) if b is not None else g                       # what the client meant to share
        comp = [compensate(gp[v], var1, cfg["q"], return_info=True) for v in range(len(vid))]
        gc = torch.stack([c for c, _ in comp])
        for v, (_, info) in enumerate(comp):
            info_rows.append(dict(bound=b, victim=v, clean_norm=float(g[v].norm()), shared_norm=float(truth[v].norm()),
                                  err_perturbed=float((gp[v] - truth[v]).norm() / truth[v].norm()),
                                  err_compensated=float((gc[v] - truth[v]).norm() / truth[v].norm()),
                                  kept=info["kept"], dropped=info["dropped"]))
        targets += [gp, gc]
        rows += [dict(bound=b, defended=True, compensated=c, victim=v) for c in (False, True) for v in range(len(vid))]
    T = torch.cat(targets)
    labels = yv.repeat(T.shape[0] // len(vid))
    res = dlg_batch(model, T, (1, 28, 28), label=labels, iterations=cfg["iterations"],
                    generator=make_generator(cfg["seed"] + 2))
    xr = res.x.reshape(T.shape[0], 1, 28, 28).clamp(0, 1)
    ps = psnr(xr, xv.repeat(T.shape[0] // len(vid), 1, 1, 1)).clamp(max=60.0)
    for r, p, l in zip(rows, ps.tolist(), res.loss.tolist()):
        r.update(psnr=p, grad_loss=l)
    return {"rows": rows, "info": info_rows, "x_true": xv.tolist(), "x_rec": xr.tolist(), "seconds": res.seconds}


def run_clipping_attack(cfg: dict, *, cache: bool = True) -> dict:
    """:func:`clipping_attack` through the result cache (an interrupted run recomputes only this
    experiment; a finished one is read back)."""
    if not cache:
        return clipping_attack(cfg)
    return ResultCache().cached(cfg, clipping_attack, prefix=PREFIX)
