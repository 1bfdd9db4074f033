"""The learned-inversion attacker (:mod:`fedshield.attacks.learned`) against the victims of an
attack experiment.

For an :class:`~fedshield.experiments.attack.AttackConfig` ``cfg`` and :class:`LearnedOptions`,
:func:`run_learned`

1. builds the attacked model and the victims exactly as :func:`~fedshield.experiments.attack.run_attack`
   does (:func:`~fedshield.experiments.attack.attack_setup`: a seeded sample of the *test* split,
   their shared updates through the defense with the experiment's noise seed);
2. draws ``train`` public images from the *training* split (seeded by ``options.seed``; the victims
   come from the test split, so no victim is among them) and computes their per-sample updates as
   the victims' are computed (:func:`~fedshield.attacks.common.victim_gradients`: one local step,
   the loss gradient, on the same model);
3. passes them through the same defense (the config's, with the same public slice boundaries for
   'ours', since the server computes them from its root set) in batches, each batch with a fresh
   noise generator derived from ``options.seed`` -- never the victims' noise stream. With
   ``resample`` the noise is drawn afresh for every batch of every epoch (defenses that draw
   noise: 'ours', 'dp-g', 'dp-l'), so the network learns what the noise looks like, not one draw
   of it. Against 'ours' the noise lands on randomly chosen slices at every call, against 'gc' the
   pruning mask is in the update itself, against 'pld' the pruned columns are: the network sees
   all of it in training;
4. trains the inverter (:func:`~fedshield.attacks.learned.train_inverter`) and inverts the
   victims' shared updates; PSNR / SSIM per victim.

The attacker uses every entry of the update: a config's ``muted`` flag (the DLG attacker's mask)
is ignored, and the result is keyed by the config with ``muted=False`` and the options, so the
frontier's muted and plain cells of one defense point share one result. The whole result is
cached (:class:`fedshield.cache.ResultCache`): a rerun returns it at once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..attacks.common import progress_bar, victim_gradients
from ..attacks.learned import LEARNED_DEFAULTS, invert, train_inverter
from ..cache import ResultCache, config_dict, config_key
from ..data import load_dataset
from ..errors import FedshieldError
from ..hooks import Defense, RoundContext
from ..metrics import psnr, ssim, summarize
from ..utils import make_generator
from .attack import AttackConfig, attack_defense, attack_setup, convert_images

__all__ = ["LearnedOptions", "learned_config", "learned_key", "training_pairs", "defended_pairs", "run_learned",
           "NOISE_DEFENSES"]

#: defenses whose client hook draws noise (from its ``generator``): the training pairs get a fresh
#: draw per batch, and with ``resample`` per batch of every epoch
NOISE_DEFENSES = ("ours", "dp-g", "dp-l")

#: pairs whose gradients are computed together (memory of the vmapped pass)
_GRAD_CHUNK = 500


@dataclass(frozen=True)
class LearnedOptions:
    """The learned attacker's options (hashable: part of the result's key).

    Attributes
    ----------
    train : training pairs, public images of the training split.
    hidden, epochs, lr, batch_size, weight_decay : :func:`fedshield.attacks.learned.train_inverter`.
    resample : a fresh draw of the defense's noise for every batch of every epoch (noise-drawing
        defenses only; the others are deterministic given the image).
    seed : the training images, the inverter's initialisation and batches, the training noise.
    """

    train: int = 4000
    hidden: int = 256
    epochs: int = 20
    lr: float = LEARNED_DEFAULTS["lr"]
    batch_size: int = LEARNED_DEFAULTS["batch_size"]
    weight_decay: float = LEARNED_DEFAULTS["weight_decay"]
    resample: bool = True
    seed: int = 0

    def validate(self) -> "LearnedOptions":
        for name in ("train", "hidden", "epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise FedshieldError(f"{name} must be a positive integer, got {v!r}")
        if self.train < 2:
            raise FedshieldError(f"train must be at least 2 pairs, got {self.train}")
        if not float(self.lr) > 0:
            raise FedshieldError(f"lr must be > 0, got {self.lr!r}")
        if not float(self.weight_decay) >= 0:
            raise FedshieldError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise FedshieldError(f"seed must be an integer, got {self.seed!r}")
        return self


def _seed(*parts: int) -> int:
    """A stable 63-bit seed from integers."""
    h = hashlib.sha256(("learned," + ",".join(str(int(p)) for p in parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def learned_config(cfg: AttackConfig) -> AttackConfig:
    """The config the learned attacker runs: ``cfg`` with ``muted=False`` (it uses every entry),
    validated; one image per victim, victims sharing their loss gradient."""
    if not isinstance(cfg, AttackConfig):
        raise FedshieldError("the learned attacker expects an AttackConfig")
    cfg = dataclasses.replace(cfg, muted=False).validate()
    if cfg.batch_size != 1:
        raise FedshieldError(f"the learned attacker reconstructs one image per victim: batch_size must be 1, "
                             f"got {cfg.batch_size}")
    if cfg.victim != "gradient":
        raise FedshieldError("the learned attacker's training pairs are loss gradients: victim must be 'gradient'")
    return cfg


def learned_key(cfg: AttackConfig, options: LearnedOptions) -> str:
    """The result's key: the learned config's key and the options."""
    return config_key({"attack": learned_config(cfg).cache_key(), "learned": config_dict(options.validate())},
                      "learned")


# one dataset's clean training pairs, kept between the cells of a campaign that share the model
_PAIRS: dict = {}


def _model_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def training_pairs(cfg: AttackConfig, model: nn.Module, n: int, *, seed: int = 0, data_dir=None,
                   progress: bool = False) -> dict:
    """``n`` public training pairs of ``cfg``: a seeded sample of the training split (``index``
    ``[n]``), its images ``x`` ``[n, C, H, W]`` (converted with ``cfg.images_as``), labels ``y``
    ``[n]`` and clean per-sample updates ``g`` ``[n, P]`` on ``model``; ``seconds`` the time the
    updates took. The last result is kept in memory (the cells of a campaign share the model)."""
    cfg = learned_config(cfg)
    key = (cfg.dataset, cfg.images_as, int(n), int(seed), str(data_dir), _model_digest(model))
    if key in _PAIRS:
        return _PAIRS[key]
    xtr, ytr = load_dataset(cfg.dataset, "train", data_dir, progress=False)
    if n > len(xtr):
        raise FedshieldError(f"{n} training pairs requested, the training split has {len(xtr)} images")
    idx = torch.randperm(len(xtr), generator=make_generator(_seed(seed, 1)))[:n]
    x, y = xtr[idx], ytr[idx]
    if cfg.images_as is not None:
        x = convert_images(x, cfg.images_as)
    t0 = time.perf_counter()
    parts = []
    with progress_bar(progress, n, "training updates") as bar:
        for i in range(0, n, _GRAD_CHUNK):
            parts.append(victim_gradients(model, x[i:i + _GRAD_CHUNK], y[i:i + _GRAD_CHUNK]))
            bar.update(min(_GRAD_CHUNK, n - i))
    out = {"index": idx, "x": x, "y": y, "g": torch.cat(parts), "seconds": time.perf_counter() - t0}
    _PAIRS.clear()
    _PAIRS[key] = out
    return out


def _training_defense(cfg: AttackConfig, model: nn.Module, data_dir) -> Defense:
    """The attacker's copy of ``cfg``'s defense: the same settings and public state (the slice
    boundaries of 'ours' come from the same root set and probes), its noise generator replaced per
    call by :func:`defended_pairs`."""
    defense = attack_defense(cfg, model, data_dir)
    defense.on_round_start(model, 0)
    if cfg.defense in NOISE_DEFENSES and not isinstance(getattr(defense, "generator", None), torch.Generator):
        raise FedshieldError(f"defense {cfg.defense!r} draws noise but exposes no generator to reseed")
    return defense


def defended_pairs(defense: Defense, model: nn.Module, g: Tensor, x: Tensor, y: Tensor, seed: int) -> Tensor:
    """``defense.client`` on the clean updates ``g`` ``[b, P]`` of images ``x`` / labels ``y``
    (one client per row, as the victims are), with a fresh noise generator seeded ``seed`` (the
    defense's ``generator``, when it has one)."""
    if isinstance(getattr(defense, "generator", None), torch.Generator):
        defense.generator = make_generator(seed)
    m = g.shape[0]
    ctx = RoundContext(round=0, model=model, weights=torch.full((m,), 1.0 / m), client_ids=list(range(m)),
                       client_data=[(x[i:i + 1], y[i:i + 1]) for i in range(m)], generator=make_generator(seed))
    return defense.client(g.clone(), ctx).detach()


def _summary(rows: list[dict]) -> dict:
    return {"psnr": summarize(r["psnr"] for r in rows), "ssim": summarize(r["ssim"] for r in rows)}


def run_learned(cfg: AttackConfig, options: Optional[LearnedOptions] = None, *, data_dir=None, progress: bool = True,
                cache: bool = True, cache_dir=None, setup: Optional[tuple] = None) -> dict:
    """Train the learned attacker for ``cfg``'s model and defense on public pairs and invert the
    victims' shared updates (the module docstring gives the steps).

    Parameters
    ----------
    cfg : the attack experiment (its model, defense, victims); ``muted`` is ignored.
    options : :class:`LearnedOptions` (default: its defaults).
    setup : :func:`~fedshield.experiments.attack.attack_setup`'s result for the learned config, if
        already built.

    Returns
    -------
    dict with ``config``, ``options``, ``key``, ``rows`` (per victim: ``victim, index, label, psnr,
    ssim, grad_loss, seconds``; ``grad_loss`` is the squared distance between the reconstruction's
    gradient, with the victim's label, and the shared update; ``seconds`` the whole attack's time,
    pairs + training + inversion, over the victims), ``summary`` (PSNR / SSIM), ``timing``
    (``pairs_s`` the clean training updates, ``defend_s`` their first pass through the defense,
    ``train_s``, ``invert_s``, ``total_s``), ``history`` (training MSE per epoch), ``x_true`` and
    ``x_rec`` ``[V, 1, C, H, W]`` float32 numpy, ``cached``.
    """
    options = (options or LearnedOptions()).validate()
    lcfg = learned_config(cfg)
    key = learned_key(lcfg, options)
    rc = ResultCache(cache_dir) if cache else None
    if rc is not None:
        hit = rc.get(key)
        npz = rc.dir / f"{key}.npz"
        if hit is not None and npz.exists():
            arr = np.load(npz)
            return {**hit, "key": key, "x_true": arr["x_true"], "x_rec": arr["x_rec"], "cached": True}
    model, victims = setup if setup is not None else attack_setup(lcfg, data_dir)
    pairs = training_pairs(lcfg, model, options.train, seed=options.seed, data_dir=data_dir, progress=progress)
    x, y, g = pairs["x"], pairs["y"], pairs["g"]
    N = g.shape[0]
    defense = _training_defense(lcfg, model, data_dir)
    chunk = max(options.batch_size, 256)
    t0 = time.perf_counter()
    u = torch.cat([defended_pairs(defense, model, g[i:i + chunk], x[i:i + chunk], y[i:i + chunk],
                                  _seed(options.seed, 2, i))
                   for i in range(0, N, chunk)])
    defend_s = time.perf_counter() - t0
    resample = None
    if options.resample and lcfg.defense in NOISE_DEFENSES:
        calls = iter(range(1 << 62))

        def resample(idx: Tensor) -> Tensor:
            return defended_pairs(defense, model, g[idx], x[idx], y[idx], _seed(options.seed, 3, next(calls)))

    inverter = train_inverter(u, x, hidden=options.hidden, epochs=options.epochs, lr=options.lr,
                              batch_size=options.batch_size, weight_decay=options.weight_decay, resample=resample,
                              generator=make_generator(_seed(options.seed, 4)), progress=progress)
    res = invert(inverter, victims.shared)
    xr = res.x.detach()
    xv = victims.x
    V = xv.shape[0]
    gr = victim_gradients(model, xr[:, 0], victims.y[:, 0])
    grad_loss = (gr - victims.shared).pow(2).sum(1)
    timing = {"pairs_s": pairs["seconds"], "defend_s": defend_s, "train_s": inverter.seconds,
              "invert_s": res.seconds}
    timing["total_s"] = sum(timing.values())
    p, s = psnr(xr[:, 0], xv[:, 0]), ssim(xr[:, 0], xv[:, 0])
    rows = [{"victim": v, "index": int(victims.index[v, 0]), "label": int(victims.y[v, 0]),
             "psnr": float(p[v]), "ssim": float(s[v]), "grad_loss": float(grad_loss[v]),
             "seconds": timing["total_s"] / V} for v in range(V)]
    out = {"config": config_dict(lcfg), "options": config_dict(options), "rows": rows, "summary": _summary(rows),
           "timing": timing, "history": list(inverter.history), "train": N}
    x_true, x_rec = xv.numpy().astype(np.float32), xr.numpy().astype(np.float32)
    if rc is not None:
        np.savez_compressed(rc.dir / f"{key}.npz", x_true=x_true, x_rec=x_rec)
        rc.put(key, out)
    return {**out, "key": key, "x_true": x_true, "x_rec": x_rec, "cached": False}
