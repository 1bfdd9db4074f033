"""Gradient leakage attacks: DLG, Inverting Gradients, label inference, the adaptive attacker.

Threat model (the paper's, Section 3): an honest-but-curious server sees the update one client
shares and the global model it was computed on, and searches for the input that explains it.

=====================  ===================================================================
module                 what
=====================  ===================================================================
:mod:`.common`         victims' updates, input checks, gradient-matching objectives, results
:mod:`.lbfgs`          the batched L-BFGS with per-victim state
:mod:`.dlg`            DLG (:func:`dlg`, :func:`dlg_batch`, :class:`DLGOptions`)
:mod:`.inverting`      Inverting Gradients (:func:`inverting_gradients`, ``_batch``, :class:`IGOptions`)
:mod:`.labels`         the iDLG label rule (:func:`infer_label`)
:mod:`.adaptive`       the muted attacker (:func:`detect_noisy_slices`, :func:`slice_mask`, ...)
:mod:`.map`            the noise-aware MAP attacker (:func:`map_attack_batch`, :func:`tv_prior_weight`)
:mod:`.learned`        the learned inversion (:func:`train_inverter`, :func:`invert`)
=====================  ===================================================================

``w`` is an optional boolean mask over the flat gradient ("muted" attacks match only the entries
an adaptive attacker trusts). All attack functions run the model in ``eval`` mode (BatchNorm uses
its running statistics, as in Inverting Gradients' experiments) and assume softmax cross-entropy,
the loss of the paper's classifiers. Images are float32 NCHW in ``[0, 1]``.

The attack *experiments* (:class:`~fedshield.experiments.attack.AttackConfig`,
:func:`~fedshield.experiments.attack.run_attack`: victims from a data set, a defense from the
registry, the result cache) sit above the attacks in :mod:`fedshield.experiments.attack`: import
them from there (or from :mod:`fedshield`).
"""
from __future__ import annotations

from ..params import fc_mask, param_ranges
from .adaptive import detect_noisy_slices, entry_mask, gradient_reference, label_reference, slice_mask
from .common import INITS, AttackResult, fedavg_update, victim_gradient, victim_gradients
from .dlg import DLGOptions, dlg, dlg_batch
from .inverting import IGOptions, inverting_gradients, inverting_gradients_batch
from .labels import infer_label
from .learned import LearnedInversion, invert, train_inverter
from .map import MAPOptions, map_attack, map_attack_batch, noise_weights, tv_prior_weight

__all__ = [
    "AttackResult", "victim_gradient", "victim_gradients", "fedavg_update",
    "infer_label", "dlg", "dlg_batch", "inverting_gradients", "inverting_gradients_batch", "DLGOptions",
    "IGOptions", "param_ranges", "fc_mask", "slice_mask", "detect_noisy_slices", "gradient_reference",
    "entry_mask", "label_reference", "map_attack", "map_attack_batch", "MAPOptions", "noise_weights", "tv_prior_weight", "LearnedInversion", "train_inverter", "invert",
    "ATTACKS", "INITS",
]

ATTACKS = ("dlg", "ig", "map")
