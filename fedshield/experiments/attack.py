"""Attack experiments: victims from a data set, their (defended) shared updates, DLG / Inverting
Gradients, metrics, the per-victim result cache.

One experiment is an :class:`AttackConfig`; :func:`run_attack` runs it:

1. the attacked model (seeded initialisation, DLG's U(-0.5, 0.5) for LeNet by default);
2. ``images`` victims, a seeded random sample of the test split, ``batch_size`` images each, and
   the update each one shares (one local step: the loss gradient; or ``local_epochs`` of SGD);
3. the defense from the registry (:func:`fedshield.experiments.registry.build_defense`, noise
   seed ``defense_seed(seed)``; for 'ours' a root set of ``root_size`` training images);
4. the muted attacker's mask (if ``muted``) and the labels (known, iDLG, or optimised);
5. the attack, ``chunk`` victims at a time, and PSNR / SSIM per victim.
"""
from __future__ import annotations

import dataclasses
import hashlib
from functools import lru_cache
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..attacks import ATTACKS, INITS
from ..attacks.adaptive import (detect_noisy_slices, entry_mask, expanded_slice_mask, gradient_reference,
                                label_reference, slice_mask)
from ..attacks.common import AttackResult, fedavg_update, init_dummy, victim_gradients
from ..attacks.dlg import dlg_batch
from ..attacks.inverting import inverting_gradients_batch
from ..attacks.map import map_attack_batch, tv_prior_weight
from ..attacks.labels import infer_label
from ..baselines import DEFENSES
from ..cache import ResultCache, config_dict, config_key
from ..data import load_dataset, root_set
from ..errors import FedshieldError
from ..fl import build_global_model
from ..hooks import Defense, RoundContext
from ..metrics import psnr, ssim, summarize
from ..models import DATASET_SHAPES, build_model, dlg_init_
from ..params import fc_mask
from ..utils import make_generator
from .campaign import Cell, training_options
from .fedavg import global_model_states
from .registry import ROOT_OPTIONS, SEEDED_DEFENSES, build_defense, split_root_options

__all__ = ["AttackConfig", "run_attack", "attack_setup", "attack_victims", "signal_to_noise", "convert_images", "LABEL_MODES", "VICTIMS", "MODEL_INITS"]

LABEL_MODES = ("known", "infer", "joint")
VICTIMS = ("gradient", "fedavg")
#: where the victims come from: the test split (the victims), or the training split (public images
#: on which an attacker calibrates its own hyper-parameters before it attacks)
SPLITS = ("test", "train")
MODEL_INITS = ("auto", "dlg", "default")
#: what the muted attacker drops against 'ours', after finding the top k slices of the server's own
#: boundaries by log-likelihood ratio: "slices" (those slices), "expanded" (each widened by the most
#: a randomised boundary can move, ``jitter / 2`` of its neighbour:
#: :func:`fedshield.attacks.adaptive.expanded_slice_mask`), "auto" (expanded against
#: ``jitter > 0``, else slices)
DETECTORS = ("auto", "slices", "expanded")
#: the muted attacker's clean reference against 'ours': "root" (the root set's per-sample gradients
#: with their own labels) or "label" (the root images relabelled to each victim's label, the labels
#: the attack uses: :func:`fedshield.attacks.adaptive.label_reference`)
REFERENCES = ("root", "label")


@dataclass(frozen=True)
class AttackConfig:
    """One attack experiment (hashable; its results are cached under :meth:`cache_key`).

    Attributes
    ----------
    dataset, model : see :func:`fedshield.models.build_model`; ``model_kwargs`` overrides, e.g.
        ``(("width", 16),)`` for a narrow ConvNet, ``(("n_conv", 3),)`` for DLG's 3-conv LeNet.
    attack : 'dlg' or 'ig'.
    defense : a name of :func:`fedshield.baselines.make_defense` with the paper's settings for the
        attack, overridden by ``defense_kwargs`` (e.g. ``(("ratio", 0.3),)``).
    root_size, root_bias : the server's root set for 'ours' (training images,
        :func:`fedshield.data.root_set`): its size (default 100) and the fraction drawn from class
        0 (default ``None``: uniform). The old spelling ``defense_kwargs=(("root_size", n),)`` /
        ``(("root_bias", b),)`` is still accepted: it is moved into these fields, so both spellings
        are one config with one cache key.
    muted : the adaptive attacker: against 'pld' it drops the FC layer; against 'ours' it detects
        the noisy slices (:func:`fedshield.attacks.detect_noisy_slices`) and matches the rest;
        against 'gc' it matches only the non-zero (unpruned) entries.
    images : number of victims (each a client update of ``batch_size`` test images).
    iterations : DLG: L-BFGS steps; IG: Adam steps.
    seed : victims (a seeded random sample of the test split), model initialisation, dummy
        starts and, through ``defense_seed(seed) = seed + 1009``, the defense's noise.
    label : 'known' (the paper's worst case), 'infer' (iDLG rule, batch 1) or 'joint'
        (soft label optimised with the image, DLG's original).
    model_init : 'dlg' (every parameter ~ U(-0.5, 0.5), DLG's LeNet), 'default' (PyTorch's) or
        'auto' (dlg for LeNet, default otherwise).
    victim : 'gradient' (one local step: the shared update is the loss gradient, the paper's
        setting) or 'fedavg' (``local_epochs`` SGD steps at ``local_lr``; the attacker matches
        ``update / (local_lr * steps)``, the mean gradient along the trajectory).
    lr, tv, init, restarts : attack hyper-parameters; ``None`` = the attack's default.
    trained_round, trained_defense : attack the global model of a training run instead of a freshly
        initialised one: the paper-scale FedAvg run of ``dataset`` with ``trained_defense`` and
        ``seed`` (:class:`fedshield.experiments.campaign.Cell`, the calibrated setting) after
        ``trained_round`` rounds (0: its initial model) of ``trained_total`` (the run's length;
        2000, the paper's). ``None``: the attack's own model.
    detector : the muted attacker's detector against 'ours' (:data:`DETECTORS`).
    reference : the muted attacker's clean reference against 'ours' (:data:`REFERENCES`).
    images_as : ``None`` (the dataset's own images) or another dataset's name: every image of
        ``dataset`` (victims and root set) is converted to that dataset's shape before anything else
        (colour to ITU-R BT.601 luma when it has one channel, then an area resize), and the model
        is sized for it. ``dataset="cifar10", images_as="mnist"``: CIFAR-10's content at MNIST's 784
        unknowns per image, which separates what an attack's success owes to the image size from
        what it owes to the images (Chapter 10.5). Needs the same number of classes.
    """

    dataset: str = "cifar10"
    model: str = "lenet"
    attack: str = "dlg"
    defense: str = "none"
    muted: bool = False
    images: int = 8
    iterations: int = 300
    seed: int = 0
    label: str = "known"
    model_init: str = "auto"
    victim: str = "gradient"
    defense_kwargs: tuple = ()
    model_kwargs: tuple = ()
    batch_size: int = 1
    local_epochs: int = 5
    local_lr: float = 1e-2
    lr: Optional[float] = None
    tv: Optional[float] = None
    init: Optional[str] = None
    restarts: int = 1
    root_size: int = 100
    root_bias: Optional[float] = None
    trained_round: Optional[int] = None
    trained_defense: str = "none"
    trained_total: int = 2000
    detector: str = "auto"
    reference: str = "root"
    images_as: Optional[str] = None
    split: str = "test"

    def __post_init__(self):
        if not isinstance(self.defense_kwargs, tuple) or not all(
                isinstance(p, tuple) and len(p) == 2 for p in self.defense_kwargs):
            return  # validate() reports it
        rest, root = split_root_options(self.defense_kwargs)
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in ROOT_OPTIONS}
        for k, v in root.items():
            if k == "root_size" and isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) == int(v):
                v = int(v)
            cur = getattr(self, k)
            if cur != defaults[k] and cur != v:
                raise FedshieldError(f"{k} is given twice, {cur!r} as a field and {v!r} in defense_kwargs")
            object.__setattr__(self, k, v)
        object.__setattr__(self, "defense_kwargs", rest)

    def validate(self) -> "AttackConfig":
        for field_, choices in (("attack", ATTACKS), ("defense", DEFENSES), ("dataset", sorted(DATASET_SHAPES)),
                                ("label", LABEL_MODES), ("victim", VICTIMS), ("model_init", MODEL_INITS),
                                ("detector", DETECTORS), ("reference", REFERENCES), ("split", SPLITS)):
            if getattr(self, field_) not in choices:
                raise FedshieldError(f"unknown {field_} {getattr(self, field_)!r}; choose from {list(choices)}")
        if self.model.lower() not in ("lenet", "convnet"):
            raise FedshieldError(f"unknown model {self.model!r}; choose from ['convnet', 'lenet']")
        for name in ("images", "iterations", "batch_size", "local_epochs", "restarts", "root_size", "trained_total"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise FedshieldError(f"{name} must be a positive integer, got {v!r}")
        if self.root_bias is not None and not 0.0 <= float(self.root_bias) <= 1.0:
            raise FedshieldError(f"root_bias must be in [0, 1] or None, got {self.root_bias!r}")
        if self.trained_round is not None:
            r = self.trained_round
            if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
                raise FedshieldError(f"trained_round must be a round >= 0 or None, got {r!r}")
            if self.model.lower() != "lenet" or self.model_kwargs:
                raise FedshieldError("trained_round attacks the campaign's LeNet: model='lenet', no model_kwargs")
            if self.trained_defense not in DEFENSES:
                raise FedshieldError(f"unknown trained_defense {self.trained_defense!r}; choose from {list(DEFENSES)}")
        if self.label == "infer" and self.batch_size != 1:
            raise FedshieldError("label='infer' (the iDLG rule) needs batch_size 1")
        if self.images_as is not None:
            if self.images_as not in DATASET_SHAPES:
                raise FedshieldError(f"unknown images_as {self.images_as!r}; choose from None or {sorted(DATASET_SHAPES)}")
            if DATASET_SHAPES[self.images_as][2] != DATASET_SHAPES[self.dataset][2]:
                raise FedshieldError(f"images_as={self.images_as!r} has {DATASET_SHAPES[self.images_as][2]} classes, "
                                     f"{self.dataset!r} {DATASET_SHAPES[self.dataset][2]}: they must match")
            if self.trained_round is not None:
                raise FedshieldError("images_as attacks a fresh model: trained_round must be None")
        if self.attack == "map" and self.label == "joint":
            raise FedshieldError("the MAP attacker needs labels: label='known' or 'infer'")
        if self.reference == "label" and self.label == "joint":
            raise FedshieldError("reference='label' needs the victims' labels: label='known' or 'infer'")
        if self.muted and self.defense not in ("pld", "ours", "gc"):
            raise FedshieldError(f"a muted attack is defined against 'pld', 'ours' and 'gc', not {self.defense!r}")
        if self.init is not None and self.init not in INITS:
            raise FedshieldError(f"unknown init {self.init!r}; choose from {list(INITS)}")
        for name in ("defense_kwargs", "model_kwargs"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
                                                   for p in v):
                raise FedshieldError(f"{name} must be a tuple of (name, value) pairs, got {v!r}")
        return self

    def cache_key(self) -> str:
        """The result-cache key: a hash of the fields that determine the result. The root set's
        fields count only for 'ours' (no other defense has one), so configs of the other
        defenses keep the keys they had before the fields existed; defenses that draw noise are
        tagged with the seed rule (``defense_seed``), under which their numbers are computed."""
        d = config_dict(self)
        if self.trained_round is None:   # the fields added later: earlier configs keep their keys
            d.pop("trained_round"), d.pop("trained_defense"), d.pop("trained_total")
        if d.get("detector") == "auto":   # added later: earlier configs keep their keys
            d.pop("detector")
        if d.get("reference") == "root":
            d.pop("reference")
        if d.get("split") == "test":
            d.pop("split")
        if d.get("images_as") is None:   # added later: earlier configs keep their keys
            d.pop("images_as", None)
        if self.defense != "ours":
            for k in ROOT_OPTIONS:
                d.pop(k)
        if self.defense in SEEDED_DEFENSES:
            d["defense_seed_rule"] = "seed+1009"
        if self.muted and self.defense == "ours" and dict(self.defense_kwargs).get("floor"):
            d["detector"] = "floor-aware"   # the muted attacker models the public noise floor: its results never share
            # a key with those of a detector that ignored the floor
        return config_key(d, "attack")


def _seed_of(*parts: int) -> int:
    """A stable 63-bit seed derived from integers (victim-wise streams independent of chunking)."""
    h = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def _trained_model(cfg: AttackConfig, data_dir=None) -> nn.Module:
    """The global model of ``cfg``'s training run after ``cfg.trained_round`` rounds."""
    cell = Cell(cfg.dataset, cfg.trained_defense, cfg.seed, options=training_options(cfg.trained_defense),
                rounds=cfg.trained_total)
    fl = cell.config()
    if cfg.trained_round > fl.rounds:
        raise FedshieldError(f"trained_round {cfg.trained_round} is past the run's {fl.rounds} rounds")
    model = build_global_model(fl)
    state = global_model_states(fl, cell.defense, [cfg.trained_round], data_dir=data_dir, **dict(cell.options))
    model.load_state_dict(state[cfg.trained_round])
    return model.eval()


def convert_images(x: Tensor, like: str) -> Tensor:
    """Images ``x`` ``[N, C, H, W]`` in ``[0, 1]`` in the shape of dataset ``like``'s: to one
    channel by ITU-R BT.601 luma (``0.299 R + 0.587 G + 0.114 B``) when ``like`` has one and ``x``
    three, then an area resize (an average over each output pixel's footprint) to its size. The
    values stay in ``[0, 1]``."""
    if like not in DATASET_SHAPES:
        raise FedshieldError(f"unknown dataset {like!r}; choose from {sorted(DATASET_SHAPES)}")
    if x.dim() != 4:
        raise FedshieldError(f"images must be [N, C, H, W], got shape {tuple(x.shape)}")
    c, hw, _ = DATASET_SHAPES[like]
    if x.shape[1] != c:
        if (x.shape[1], c) != (3, 1):
            raise FedshieldError(f"cannot convert {x.shape[1]}-channel images to {c} channels")
        x = (x * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if tuple(x.shape[-2:]) != (hw, hw):
        x = torch.nn.functional.interpolate(x, size=(hw, hw), mode="area")
    return x


def _build_attack_model(cfg: AttackConfig, data_dir=None) -> nn.Module:
    if cfg.trained_round is not None:
        return _trained_model(cfg, data_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_of(cfg.seed, 1))
        model = build_model(cfg.model, cfg.images_as or cfg.dataset, **dict(cfg.model_kwargs))
    init = cfg.model_init
    if init == "auto":
        init = "dlg" if cfg.model.lower() == "lenet" else "default"
    if init == "dlg":
        dlg_init_(model, make_generator(_seed_of(cfg.seed, 2)))
    return model.eval()


def _match_order(xr: Tensor, xt: Tensor) -> Tensor:
    """Reorder the B reconstructions of one victim to best match the true images (PSNR,
    Hungarian assignment); identity for B = 1."""
    B = xt.shape[0]
    if B == 1:
        return xr
    mse = ((xr.clamp(0, 1)[:, None] - xt[None]) ** 2).flatten(2).mean(2)
    rows, cols = linear_sum_assignment(mse.numpy())
    out = torch.empty_like(xr)
    out[cols] = xr[rows]
    return out


def attack_root_set(cfg: AttackConfig, data_dir=None) -> tuple[Tensor, Tensor]:
    """The server's root set of an attack experiment: ``cfg.root_size`` training images
    (``cfg.root_bias`` from class 0), drawn with ``cfg.seed``."""
    xtr, ytr = load_dataset(cfg.dataset, "train", data_dir)
    idx = root_set(ytr, cfg.root_size, bias=cfg.root_bias, seed=cfg.seed)
    x = xtr[idx]
    return (x if cfg.images_as is None else convert_images(x, cfg.images_as)), ytr[idx]


def attack_defense(cfg: AttackConfig, model: nn.Module, data_dir=None) -> Defense:
    """The defense of ``cfg`` from the registry (root set: :func:`attack_root_set`)."""
    return build_defense(cfg.defense, seed=cfg.seed, attack="ig" if cfg.attack == "ig" else "dlg",
                         options=cfg.defense_kwargs, model=model,
                         root_size=cfg.root_size, root_bias=cfg.root_bias,
                         root_source=lambda n, bias: attack_root_set(cfg, data_dir))


@dataclass
class Victims:
    """The victims of an experiment and what the attacker gets from them (every victim at once).

    ``index`` ``[V, B]`` test-split indices, ``x`` ``[V, B, C, H, W]``, ``y`` ``[V, B]``; ``shared``
    ``[V, P]`` the defended updates; ``mask`` the muted attacker's ``[P]`` / ``[V, P]`` mask (or
    ``None``); ``label`` the labels the attack uses (``None``: optimised); ``detect_precision``
    per victim (muted attack on 'ours', else ``None``); ``clean`` ``[V, P]`` the undefended updates
    (what the defense received)."""

    index: Tensor
    x: Tensor
    y: Tensor
    shared: Tensor
    mask: Optional[Tensor]
    label: Optional[Tensor]
    detect_precision: list
    clean: Optional[Tensor] = None
    noise_var: Optional[Tensor] = None
    clip: Optional[float] = None


def _muted_mask(cfg: AttackConfig, model: nn.Module, defense: Defense, shared: Tensor,
                ctx: RoundContext, labels: Optional[Tensor] = None) -> tuple[Tensor, list]:
    """The adaptive attacker's mask and, against 'ours', its detection precision per victim: the
    fraction of the flagged slices that were noised, or against randomised boundaries
    (``jitter > 0``) of the dropped entries."""
    V = cfg.images
    if cfg.defense == "pld":
        return fc_mask(model), [None] * V
    if cfg.defense == "gc":
        return shared != 0, [None] * V
    bounds = defense.bounds  # the server recomputes the slices from the public root set
    k = int(defense.k)  # max(1, floor(s * ratio)): public
    if cfg.reference == "label":
        ref = label_reference(model, defense.root_x, labels)
    else:
        ref = gradient_reference(model, defense.root_x, defense.root_y)
    floor = float(getattr(defense, "floor", 0.0))   # the floor is public too
    jitter = float(getattr(defense, "jitter", 0.0))
    ids = ctx.extra["perturbed_slices"]
    detector = cfg.detector if cfg.detector != "auto" else ("expanded" if jitter > 0 else "slices")
    P = shared.shape[1]
    noisy = detect_noisy_slices(shared, bounds, float(defense.sigma), n_noisy=k, reference=ref, floor=floor)
    keep = expanded_slice_mask(bounds, noisy, jitter, P) if detector == "expanded" else slice_mask(bounds, noisy, P)
    if jitter == 0:   # the clients' slices are the server's: precision over the flagged slices
        truth = torch.zeros_like(noisy).scatter_(1, ids, True)
        return keep, ((noisy & truth).sum(1).float() / noisy.sum(1).float()).tolist()
    # randomised boundaries: precision over the dropped entries, against each client's own slices
    truth = entry_mask(ctx.extra["slice_bounds"], ids, P)
    dropped = (~keep).sum(1).float()
    return keep, (((~keep) & truth).sum(1).float() / dropped.clamp_min(1)).tolist()


def _prepare_victims(cfg: AttackConfig, model: nn.Module, data_dir) -> Victims:
    """Victim images, their shared (defended) updates, the attacker's masks and labels -- for
    every victim at once (cheap; deterministic regardless of how the attacks are chunked)."""
    xte, yte = load_dataset(cfg.dataset, cfg.split, data_dir)
    n = cfg.images * cfg.batch_size
    if n > len(xte):
        raise FedshieldError(f"{n} test images requested, the split has {len(xte)}")
    perm = torch.randperm(len(xte), generator=make_generator(_seed_of(cfg.seed, 0)))[:n]
    idx = perm.view(cfg.images, cfg.batch_size)
    xv, yv = xte[idx], yte[idx]  # [V, B, C, H, W], [V, B]
    if cfg.images_as is not None:
        xv = convert_images(xv.flatten(0, 1), cfg.images_as).unflatten(0, (cfg.images, cfg.batch_size))
    if cfg.victim == "gradient":
        g = victim_gradients(model, xv, yv)
    else:
        steps = cfg.local_epochs
        g = torch.stack([fedavg_update(model, xv[v], yv[v], lr=cfg.local_lr, epochs=cfg.local_epochs)
                         for v in range(cfg.images)]) / (cfg.local_lr * steps)
    defense = attack_defense(cfg, model, data_dir)
    defense.on_round_start(model, 0)
    ctx = RoundContext(round=0, model=model, weights=torch.full((cfg.images,), 1.0 / cfg.images),
                       client_ids=list(range(cfg.images)), client_data=[(xv[v], yv[v]) for v in range(cfg.images)],
                       generator=make_generator(_seed_of(cfg.seed, 4)))
    shared = defense.client(g.clone(), ctx).detach()
    if cfg.label == "known":
        lab = yv
    elif cfg.label == "infer":
        lab = infer_label(shared, model)
    else:
        lab = None
    mask, precision = None, [None] * cfg.images
    noise_var, clip = None, None
    if cfg.attack == "map":
        mask, noise_var, clip, precision = _map_knowledge(cfg, model, defense, shared, ctx, lab)
    elif cfg.muted:
        mask, precision = _muted_mask(cfg, model, defense, shared, ctx, lab)
    return Victims(idx, xv, yv, shared, mask, lab, precision, clean=g.detach(), noise_var=noise_var, clip=clip)


def _map_knowledge(cfg: AttackConfig, model: nn.Module, defense: Defense, shared: Tensor, ctx: RoundContext,
                   labels: Optional[Tensor]) -> tuple:
    """What the MAP attacker knows of the defense, as ``(mask, noise variance [V, P] or scalar,
    clip bound, detection precision)``: DP-G / DP-L their variance on every entry; GC its unpruned
    entries; PLD everything but the FC layer; the paper's defense sigma^2 on the slices the
    detector flags (every entry at ratio 1) plus its public floor^2 everywhere, and its clipping
    bound."""
    V = cfg.images
    none = [None] * V
    name = cfg.defense
    if name == "none":
        return None, 0.0, None, none
    if name in ("dp-g", "dp-l"):
        return None, float(defense.variance), None, none
    if name == "gc":
        return shared != 0, 0.0, None, none
    if name == "pld":
        return fc_mask(model), 0.0, None, none
    if name != "ours":
        raise FedshieldError(f"the MAP attacker has no noise model of defense {name!r}")
    s2, floor2 = float(defense.sigma) ** 2, float(getattr(defense, "floor", 0.0)) ** 2
    clip = getattr(defense, "clip_bound", None)
    clip = None if clip is None else float(clip)
    if float(defense.ratio) >= 1.0:   # every slice noised: nothing to locate
        return None, s2 + floor2, clip, none
    keep, precision = _muted_mask(dataclasses.replace(cfg, muted=True), model, defense, shared, ctx, labels)
    var = torch.where(keep, torch.full(keep.shape, floor2), torch.full(keep.shape, s2 + floor2))
    return None, var, clip, precision



def vectorized_default(attack: str) -> bool:
    """Whether :func:`attack_victims` runs ``attack`` vectorised by default: DLG yes (its batched
    L-BFGS is faster than the per-victim loop), Inverting Gradients no (on ConvNet-64 the vmapped
    double backward is slower than the loop; ``benchmarks/bench_attacks.py --victims 8 --threads 1
    --width 64`` prints both side by side, with their ratio)."""
    return attack != "ig"


#: the TV weights (multiples of the public images' Laplace rate) the MAP attacker tries on public
#: images before it attacks, and how many public images it tries them on
MAP_TV_GRID = (0.0, 1 / 9, 1 / 3, 1.0)
MAP_TUNE_IMAGES = 4


@lru_cache(maxsize=64)
def map_tv(cfg: AttackConfig, data_dir=None) -> float:
    """The MAP attacker's TV weight for ``cfg``: ``cfg.tv`` when given, else calibrated on public
    images, never on a victim: the Laplace rate of training images' pixel differences
    (:func:`fedshield.attacks.map.tv_prior_weight`) times the multiple in :data:`MAP_TV_GRID` that
    gives the highest median PSNR when the same attack, against the same defense, reconstructs
    :data:`MAP_TUNE_IMAGES` training images from their defended updates."""
    if cfg.tv is not None:
        return float(cfg.tv)
    xtr, _ = load_dataset(cfg.dataset, "train", data_dir)
    sample = torch.randperm(len(xtr), generator=make_generator(_seed_of(cfg.seed, 8)))[:1000]
    pub = xtr[sample] if cfg.images_as is None else convert_images(xtr[sample], cfg.images_as)
    alpha = tv_prior_weight(pub)
    tune = dataclasses.replace(cfg, split="train", images=MAP_TUNE_IMAGES, tv=0.0)
    model, v = attack_setup(tune, data_dir)
    best, best_psnr = 0.0, -float("inf")
    for mult in MAP_TV_GRID:
        res = _map_run(tune, model, v, list(range(MAP_TUNE_IMAGES)), tuple(v.x.shape[1:]), alpha * mult, False)
        med = float(psnr(res.x.flatten(0, 1).clamp(0, 1), v.x.flatten(0, 1)).median())
        if med > best_psnr:
            best, best_psnr = alpha * mult, med
    return best


def _map_run(cfg: AttackConfig, model: nn.Module, victims: Victims, vids: list[int], shape, tv: float,
             progress: bool) -> AttackResult:
    nv = victims.noise_var
    nv = nv[vids] if isinstance(nv, Tensor) and nv.dim() == 2 else nv
    mask = victims.mask
    m = None if mask is None else (mask[vids] if mask.dim() == 2 else mask)
    return map_attack_batch(model, victims.shared[vids], shape, label=victims.label[vids], noise_var=nv, mask=m,
                            clip=victims.clip, tv=tv, iterations=cfg.iterations, restarts=cfg.restarts,
                            generator=make_generator(_seed_of(cfg.seed, 7, vids[0])), progress=progress)


def _map_chunk(cfg: AttackConfig, model: nn.Module, victims: Victims, vids: list[int], shape, progress: bool,
               data_dir=None) -> AttackResult:
    if victims.label is None:
        raise FedshieldError("the MAP attacker needs labels: label='known' or 'infer'")
    return _map_run(cfg, model, victims, vids, shape, map_tv(cfg, data_dir), progress)


def _attack_chunk(cfg: AttackConfig, model: nn.Module, victims: Victims, vids: list[int],
                  progress: bool, vectorized: Optional[bool] = None, data_dir=None) -> AttackResult:
    """Attack the victims ``vids`` together (each with its own seeded start); ``vectorized`` None:
    :func:`vectorized_default`."""
    vec = vectorized_default(cfg.attack) if vectorized is None else bool(vectorized)
    xv = victims.x
    shape = (cfg.batch_size,) + tuple(xv.shape[2:])
    init = cfg.init or ("uniform" if cfg.attack == "dlg" else "gray")
    inits = torch.stack([init_dummy(init, 1, shape, make_generator(_seed_of(cfg.seed, 5, v)), xv.dtype, xv.device)[0]
                         for v in vids])
    if cfg.attack == "ig" and cfg.restarts > 1:
        inits = None  # restarts draw their own starts from the chunk generator
    mask = victims.mask
    m = None if mask is None else (mask[vids] if mask.dim() == 2 else mask)
    lb = None if victims.label is None else victims.label[vids]
    gen = make_generator(_seed_of(cfg.seed, 6, vids[0]))
    hyper = {k: v for k, v in (("lr", cfg.lr), ("tv", cfg.tv)) if v is not None}
    common = dict(label=lb, iterations=cfg.iterations, init=inits if inits is not None else init, mask=m,
                  generator=gen, progress=progress, vectorized=vec)
    if cfg.attack == "map":
        return _map_chunk(cfg, model, victims, vids, shape, progress, data_dir)
    if cfg.attack == "dlg":
        hyper.pop("tv", None)
        return dlg_batch(model, victims.shared[vids], shape, **common, **hyper)
    return inverting_gradients_batch(model, victims.shared[vids], shape, restarts=cfg.restarts, **common, **hyper)


def _victim_row(cfg: AttackConfig, victims: Victims, v: int, xr: Tensor, res: AttackResult, j: int,
                seconds: float) -> dict:
    xr_c = xr.clamp(0, 1)
    xt = victims.x[v]
    lp = res.label[j].reshape(-1).tolist()
    lt = victims.y[v].reshape(-1).tolist()
    many = cfg.batch_size > 1
    return {"victim": v, "index": victims.index[v].tolist() if many else int(victims.index[v, 0]),
            "label": lt if many else lt[0], "label_pred": lp if many else lp[0],
            "label_correct": bool(sorted(lp) == sorted(lt)),
            "psnr": float(psnr(xr_c, xt).mean()), "ssim": float(ssim(xr_c, xt).mean()),
            "grad_loss": float(res.loss[j]), "seconds": seconds, "evaluations": int(res.evaluations[j]),
            "detect_precision": victims.detect_precision[v]}


def _summary(cfg: AttackConfig, rows: list[dict]) -> dict:
    V = len(rows)
    secs = sum(r["seconds"] for r in rows)
    det = [r["detect_precision"] for r in rows if r["detect_precision"] is not None]
    summary = {"psnr": summarize(r["psnr"] for r in rows), "ssim": summarize(r["ssim"] for r in rows),
               "grad_loss": summarize(r["grad_loss"] for r in rows),
               "label_accuracy": float(np.mean([r["label_correct"] for r in rows])),
               "seconds": secs, "images_per_second": (V * cfg.batch_size / secs) if secs > 0 else float("inf")}
    if det:
        summary["detect_precision"] = float(np.mean(det))
    return summary


def attack_setup(cfg: AttackConfig, data_dir=None) -> tuple[nn.Module, Victims]:
    """The attacked model and every victim of ``cfg`` (images, defended updates, masks, labels)."""
    cfg.validate()
    model = _build_attack_model(cfg, data_dir)
    return model, _prepare_victims(cfg, model, data_dir)


def signal_to_noise(cfg: AttackConfig, data_dir=None, *, setup: Optional[tuple] = None) -> pd.DataFrame:
    """What the defense leaves of each victim's update, before any attack runs: per victim
    ``signal`` (``||g||^2``, the clean update), ``noise`` (``||g~ - g||^2``, what the defense added
    or removed), ``snr`` (their ratio; ``inf`` undefended), ``noise_per_entry`` (``noise / P``, the
    defense's per-entry variance for a noising defense) and ``entries_per_unknown`` (``P`` over the
    victim's pixels ``B C H W``: how many shared numbers the attack fits per unknown). Cheap (one
    backward pass per victim); ``setup``: :func:`attack_setup`'s result, if already built."""
    model, v = setup if setup is not None else attack_setup(cfg, data_dir)
    g = v.clean.double()
    d = v.shared.double() - g
    P = g.shape[1]
    signal, noise = g.pow(2).sum(1), d.pow(2).sum(1)
    snr = torch.where(noise > 0, signal / noise.clamp_min(1e-300), torch.full_like(signal, float("inf")))
    return pd.DataFrame({"victim": range(cfg.images), "signal": signal.numpy(), "noise": noise.numpy(),
                         "snr": snr.numpy(), "noise_per_entry": (noise / P).numpy(),
                         "entries_per_unknown": P / float(v.x[0].numel())})


def attack_victims(cfg: AttackConfig, vids: Sequence[int], *, chunk: int = 8, progress: bool = False,
                   data_dir=None, setup: Optional[tuple] = None,
                   vectorized: Optional[bool] = None) -> Iterator[list[tuple[int, dict, np.ndarray]]]:
    """Attack the victims ``vids`` of ``cfg``, ``chunk`` at a time (vectorised), yielding after each
    chunk its ``[(victim, row, reconstruction [B, C, H, W] float32 in [0, 1])]``. A victim's
    defended update, start and result do not depend on which other victims it is attacked with
    (except Inverting Gradients with ``restarts > 1``, whose starts come from the chunk's
    generator), so a run resumed with the victims not yet done gives the rows an uninterrupted run
    gives, up to floating-point rounding of the batched kernels. ``setup``: :func:`attack_setup`'s result,
    if already built. ``vectorized``: the batched kernels (True) or one optimiser per victim (False);
    None: :func:`vectorized_default` (both give the same victim's result up to rounding)."""
    if int(chunk) < 1:
        raise FedshieldError(f"chunk must be >= 1, got {chunk}")
    vids = [int(v) for v in vids]
    bad = [v for v in vids if not 0 <= v < cfg.images]
    if bad:
        raise FedshieldError(f"victims {bad} out of range: the config has {cfg.images}")
    model, victims = setup if setup is not None else attack_setup(cfg, data_dir)
    for c in range(0, len(vids), int(chunk)):
        part = vids[c:c + int(chunk)]
        res = _attack_chunk(cfg, model, victims, part, progress, vectorized, data_dir)
        per = res.seconds / len(part)
        out = []
        for j, v in enumerate(part):
            xr = _match_order(res.x[j].detach().cpu(), victims.x[v])
            out.append((v, _victim_row(cfg, victims, v, xr, res, j, per), xr.clamp(0, 1).numpy().astype(np.float32)))
        yield out


def run_attack(cfg: AttackConfig, *, data_dir=None, progress: bool = True, cache: bool = True,
               chunk: int = 8, cache_dir=None) -> dict:
    """Run one attack experiment: victims, (defended) shared updates, attacks, metrics.

    Victims are a seeded random sample of the test split, ``cfg.images`` client updates of
    ``cfg.batch_size`` images each, attacked ``chunk`` at a time (vectorised). For each victim a
    row ``{victim, index, label, label_pred, label_correct, psnr, ssim, grad_loss, seconds,
    detect_precision}`` is stored in the result cache under the config's key as soon as its chunk
    finishes (an interrupted run resumes), with the reconstruction in an ``.npz`` next to it.

    Returns
    -------
    dict with ``config``, ``key``, ``rows`` (per victim), ``summary`` (mean / std / median / min /
    max of PSNR, SSIM, gradient loss; label accuracy; images per second), ``npz`` (path of
    ``x_true``, ``x_rec`` ``[V, B, C, H, W]``, ``labels``, ``index``; ``None`` with
    ``cache=False``) and the arrays ``x_true``, ``x_rec`` (numpy).
    """
    if not isinstance(cfg, AttackConfig):
        raise FedshieldError("run_attack expects an AttackConfig")
    cfg.validate()
    if int(chunk) < 1:
        raise FedshieldError(f"chunk must be >= 1, got {chunk}")
    rc = ResultCache(cache_dir) if cache else None
    key = cfg.cache_key()
    model, victims = attack_setup(cfg, data_dir)
    V = cfg.images
    rows: list[Optional[dict]] = [None] * V
    recs: list[Optional[np.ndarray]] = [None] * V
    vdir = (rc.dir / key) if rc else None
    if rc:
        for v in range(V):
            row = rc.get(f"{key}/v{v:04d}")
            npz = vdir / f"v{v:04d}.npz"
            if row is not None and npz.exists():
                rows[v] = row
                recs[v] = np.load(npz)["x_rec"]
    todo = [v for v in range(V) if rows[v] is None]
    with tqdm(total=V, initial=V - len(todo), desc=f"{cfg.attack} vs {cfg.defense}{' (muted)' if cfg.muted else ''}",
              disable=not progress, unit="victim") as bar:
        for done in attack_victims(cfg, todo, chunk=chunk, progress=progress, setup=(model, victims)):
            for v, row, rec in done:
                rows[v], recs[v] = row, rec
                if rc:
                    vdir.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(vdir / f"v{v:04d}.npz", x_rec=rec)
                    rc.put(f"{key}/v{v:04d}", row)
            bar.update(len(done))
    x_rec = np.stack(recs)
    x_true = victims.x.numpy()
    summary = _summary(cfg, rows)
    npz_path = None
    if rc:
        npz_path = rc.dir / f"{key}.npz"
        np.savez_compressed(npz_path, x_true=x_true, x_rec=x_rec, labels=victims.y.numpy(),
                            index=victims.index.numpy())
        rc.put(key, {"config": config_dict(cfg), "result": {"rows": rows, "summary": summary}})
    return {"config": config_dict(cfg), "key": key, "rows": rows, "summary": summary,
            "npz": None if npz_path is None else str(npz_path), "x_true": x_true, "x_rec": x_rec}
