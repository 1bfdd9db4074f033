"""The frontier table (fedshield.book.frontier) and the floor-relative goal (fedshield.claims)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedshield import claims
from fedshield.book.frontier import family, frontier_points


def _pts(rows):
    return pd.DataFrame(rows, columns=["dataset", "family", "setting", "acc", "identified", "gain_max"])


def test_goal_needs_accuracy_identification_and_every_victim_near_the_floor():
    pts = _pts([("mnist", "undefended", "none", 0.90, 1.0, 30.0),
                ("mnist", "DP-G", "a", 0.89, 0.0, 0.5),     # meets
                ("mnist", "DP-G", "b", 0.87, 0.0, 0.5),     # 3 points below
                ("mnist", "DP-G", "c", 0.90, 0.125, 0.5),   # one victim of 8 identified
                ("mnist", "DP-G", "d", 0.90, 0.0, 1.5),     # a victim 1.5 dB above the floor
                ("mnist", "DP-G", "e", np.nan, 0.0, 0.0)])  # no accuracy
    f = claims.frontier_goal_identified(pts)["mnist"]
    assert list(f["meets"].setting) == ["a"]
    assert list(f["points"].setting) == ["a", "b", "c", "d"]


def _tables(rows):
    return {"frontier_points": _pts(rows)}


def test_claim_needs_one_configuration_on_every_dataset():
    ok = [(ds, "undefended", "none", 0.9, 1.0, 30.0) for ds in ("mnist", "fmnist", "cifar10")]
    ok += [(ds, "DP-G", "a", 0.9, 0.0, 0.0) for ds in ("mnist", "fmnist", "cifar10")]
    assert claims.beyond_frontier_identified(_tables(ok))[1] is True
    # a different configuration on one dataset is not one configuration
    mixed = [r if r[0] != "cifar10" or r[2] == "none" else ("cifar10", "DP-G", "b", 0.9, 0.0, 0.0) for r in ok]
    assert claims.beyond_frontier_identified(_tables(mixed))[1] is False
    # every point identified: not supported even with two datasets unmeasured
    leak = [("mnist", "undefended", "none", 0.9, 1.0, 30.0), ("mnist", "DP-G", "a", 0.9, 1.0, 6.0)]
    assert claims.beyond_frontier_identified(_tables(leak))[1] is False
    with pytest.raises(claims.Inconclusive):
        claims.beyond_frontier_identified(_tables(ok[:1] + ok[3:4]))
    # a dataset whose only private strength has no accuracy yet: inconclusive, not a failure
    waiting = [r if r[0] != "cifar10" or r[2] == "none" else ("cifar10", "DP-G", "a", np.nan, 0.0, 0.0) for r in ok]
    with pytest.raises(claims.Inconclusive, match="accuracy not measured"):
        claims.beyond_frontier_identified(_tables(waiting))
    # ... unless another dataset has no private strength at all
    failing = waiting[:3] + [("mnist", "DP-G", "a", 0.9, 1.0, 6.0)] + waiting[4:]
    failing = [r for r in failing if not (r[0] == "mnist" and r[2] == "a" and r[4] == 0.0)]
    assert claims.beyond_frontier_identified(_tables(failing))[1] is False


def test_family():
    assert family("Ours + floor 0.03") == "Ours + floor"
    assert family("DP-G, variance 1e-3") == "DP-G"
    assert family("none") == "undefended"


def test_frontier_points_of_the_committed_tables():
    f = frontier_points("default", ("mnist",), root=Path(__file__).resolve().parents[1] / "results")
    assert {"attacker", "psnr_floor", "psnr_gain", "identified", "gain_max", "acc"} <= set(f.columns)
    assert f.setting.is_unique
    scored = f[f.attacker.notna()]
    assert len(scored) > 10
    # the strongest attacker is the one with the highest median gain
    gains = scored[[c for c in scored.columns if c.startswith("gain_") and c != "gain_max"]]
    assert np.allclose(scored.psnr_gain, gains.max(axis=1))
    # the goal is held against every attacker: the highest identification of any
    idents = scored[[c for c in scored.columns if c.startswith("identified_")]]
    assert np.allclose(scored.identified, idents.max(axis=1))
