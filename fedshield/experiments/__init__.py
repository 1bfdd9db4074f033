"""Experiments the book's notebooks and the CLI run, each one config plus a defense by name, its
results cached on disk keyed by both (a notebook that is re-run or interrupted loses nothing).

- :mod:`.registry`: :func:`build_defense`, the one place that turns a defense name, options and an
  experiment seed into a defense (paper settings, noise seed, root set).
- :mod:`.fedavg`: FedAvg runs (:func:`run_fl`, :func:`fl_defense`, :func:`fl_root_set`).
- :mod:`.attack`: attack experiments (:class:`AttackConfig`, :func:`run_attack`).
- :mod:`.calibration`: the undefended run under each reading of the paper's local training
  (:func:`run_calibration`, the search behind the calibrated setting).
- :mod:`.clipping`: the attacker who compensates one client's update (Chapter 5,
  :func:`run_clipping_attack`).
- :mod:`.campaign`: the paper-scale FedAvg campaign (Chapter 8): cells, plans, resumable tables.
- :mod:`.drift`: how fast the equal-risk slice boundaries move in training (the refresh schedule).
"""
from __future__ import annotations

from .attack import AttackConfig, attack_defense, attack_root_set, run_attack
from .calibration import READINGS, Reading, calibration_config, run_calibration
from .clipping import clipping_attack_config, run_clipping_attack
from .fedavg import fl_defense, fl_root_set, run_fl
from .registry import build_defense, defense_seed

__all__ = ["build_defense", "defense_seed", "fl_root_set", "fl_defense", "run_fl", "AttackConfig", "run_attack",
           "attack_defense", "attack_root_set", "clipping_attack_config", "run_clipping_attack",
           "READINGS", "Reading", "calibration_config", "run_calibration"]
