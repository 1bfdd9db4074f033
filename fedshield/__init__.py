"""fedshield: defending federated learning against gradient leakage.

Implements Wang, Guo, Xie, Qi, "Protect Privacy from Gradient Leakage Attack in Federated
Learning" (IEEE INFOCOM 2022) with the attacks and baselines it is evaluated against.

The main API is importable from here (``from fedshield import PaperDefense, run_fedavg, dlg``);
each name is loaded from its module on first use, so ``import fedshield`` itself loads no torch.

=================================  ============================================================
name                               from
=================================  ============================================================
``PaperDefense``                   :mod:`fedshield.defense`, the paper's defense
``build_defense``                  :mod:`fedshield.experiments.registry`, a defense by name
``make_defense``                   :mod:`fedshield.baselines`, a defense by name (paper settings)
``FLConfig``, ``run_fedavg``       :mod:`fedshield.fl`, the FedAvg simulator
``run_fl``                         :mod:`fedshield.experiments.fedavg`, FedAvg with a defense by name
``dlg``, ``dlg_batch``,            :mod:`fedshield.attacks`, the gradient leakage attacks
``inverting_gradients``,
``infer_label``
``AttackConfig``, ``run_attack``   :mod:`fedshield.experiments.attack`, attack experiments
``psnr``, ``ssim``, ``accuracy``   :mod:`fedshield.metrics`
``load_dataset``,                  :mod:`fedshield.data`
``partition_noniid``, ``root_set``
``build_model``                    :mod:`fedshield.models`
``FedshieldError``                 :mod:`fedshield.errors`, every bad-input error
=================================  ============================================================

Modules
-------
- :mod:`fedshield.errors`      ``FedshieldError``, the one exception for bad input
- :mod:`fedshield.params`      the flat-vector layout (trainable tensors, ranges, slices)
- :mod:`fedshield.utils`       generators, the eval-mode context manager, input checks
- :mod:`fedshield.hooks`       the ``Defense`` base class and its client / server hook points
- :mod:`fedshield.data`        datasets (MNIST, Fashion-MNIST, CIFAR-10/100), download, partitions, root set
- :mod:`fedshield.models`      LeNet (DLG) and ConvNet (Inverting Gradients)
- :mod:`fedshield.metrics`     PSNR, SSIM, accuracy, overhead
- :mod:`fedshield.cache`       experiment configs and the on-disk result cache
- :mod:`fedshield.defense`     the paper's defense, one function per step
- :mod:`fedshield.baselines`   GC, DP-G, DP-L, PLD (Soteria) and ``make_defense``
- :mod:`fedshield.fl`          batched FedAvg simulator with client / server hooks
- :mod:`fedshield.attacks`     DLG and Inverting Gradients, label inference, the adaptive attacker
- :mod:`fedshield.experiments` attack and FedAvg experiments by defense name (one ``build_defense``), the campaigns
- :mod:`fedshield.accounting`  the (epsilon, delta) of Gaussian noise on a clipped update (Gaussian DP)
- :mod:`fedshield.audit`       an empirical lower bound on that epsilon (clip-and-noise, a likelihood-ratio test)
- :mod:`fedshield.bounds`      the Cramér-Rao bound on reconstructing an image from noised updates (Fisher information)
- :mod:`fedshield.stats`       paired comparisons over the same victims or seeds (Wilcoxon signed-rank)
- :mod:`fedshield.claims`      the paper's claims as functions of the measured tables
- :mod:`fedshield.report`      the book's helpers: measured tables, the paper's numbers, image grids
- :mod:`fedshield.book`        what the book's chapters read from the committed tables
- :mod:`fedshield.profiles`    the three scales (``smoke``, ``default``, ``paper``) of every notebook
- :mod:`fedshield.reproduce`   runs the notebooks with papermill under a profile
- :mod:`fedshield.flower`      the defense as a Flower mod and strategy (optional extra)
- :mod:`fedshield.commands`    the CLI's sub-commands, one module each
- :mod:`fedshield.cli`         the ``fedshield`` command line
"""
from __future__ import annotations

import importlib

from .errors import FedshieldError

__version__ = "0.1.0"

# name -> module it is loaded from on first use (module-level __getattr__ below)
_LAZY = {
    "PaperDefense": "fedshield.defense",
    "build_defense": "fedshield.experiments.registry",
    "make_defense": "fedshield.baselines",
    "FLConfig": "fedshield.fl",
    "run_fedavg": "fedshield.fl",
    "run_fl": "fedshield.experiments.fedavg",
    "dlg": "fedshield.attacks",
    "dlg_batch": "fedshield.attacks",
    "inverting_gradients": "fedshield.attacks",
    "infer_label": "fedshield.attacks",
    "AttackConfig": "fedshield.experiments.attack",
    "run_attack": "fedshield.experiments.attack",
    "psnr": "fedshield.metrics",
    "ssim": "fedshield.metrics",
    "accuracy": "fedshield.metrics",
    "load_dataset": "fedshield.data",
    "partition_noniid": "fedshield.data",
    "root_set": "fedshield.data",
    "build_model": "fedshield.models",
}

__all__ = ["FedshieldError", "__version__", *_LAZY]


def __getattr__(name: str):
    """Load a name of the main API from its module the first time it is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
