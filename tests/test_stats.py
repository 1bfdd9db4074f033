"""Paired comparisons over the same victims (fedshield.stats)."""
import numpy as np
import pytest

from fedshield.errors import FedshieldError
from fedshield.stats import paired_comparison


def test_the_exact_p_value_of_n_wins_is_two_to_the_minus_n():
    for n in (4, 8):
        a, b = np.arange(n, dtype=float), np.arange(n, dtype=float) + 5.0 + np.arange(n)
        r = paired_comparison(a, b)
        assert r["wins"] == n and r["p"] == pytest.approx(2.0 ** -n)
        assert r["verdict"] is (n == 8)          # 4 victims can never reach p < 0.05
        assert r["median_diff"] < 0 and r["iqr_diff"][0] <= r["median_diff"] <= r["iqr_diff"][1]


def test_direction_ties_and_bad_input():
    a, b = [10.0, 12.0, 9.0, 30.0], [20.0, 21.0, 19.0, 22.0]   # one victim leaks under a
    r = paired_comparison(a, b)
    assert r["wins"] == 3 and r["p"] > 0.05 and not r["verdict"]
    g = paired_comparison(b, a, alternative="greater")
    assert g["p"] == pytest.approx(r["p"]) and g["wins"] == 3
    assert paired_comparison([1.0, 2.0], [1.0, 2.0])["p"] == 1.0
    with pytest.raises(FedshieldError, match="paired"):
        paired_comparison([1.0, 2.0], [1.0])
    with pytest.raises(FedshieldError, match="finite"):
        paired_comparison([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(FedshieldError, match="alternative"):
        paired_comparison([1.0], [2.0], alternative="two-sided")
