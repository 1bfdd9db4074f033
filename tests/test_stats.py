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


def test_paired_victims_matches_by_victim_and_caps_exact_reconstructions():
    import pandas as pd
    from fedshield.stats import PSNR_CAP, paired_victims, wins_text
    # b holds victims 3..0 in reverse order plus one a lacks; a's victim 2 is an exact reconstruction
    a = pd.DataFrame({"victim": [0, 1, 2, 3], "psnr": [10.0, 11.0, float("inf"), 12.0]})
    b = pd.DataFrame({"victim": [4, 3, 2, 1, 0], "psnr": [1.0, 20.0, 30.0, 21.0, 22.0]})
    c = paired_victims(a, b, alternative="less")
    # victim by victim: 10-22, 11-21, cap-30, 12-20: three wins, the capped one a loss
    assert c["n"] == 4 and c["wins"] == 3
    assert c == paired_comparison([10.0, 11.0, PSNR_CAP, 12.0], [22.0, 21.0, 30.0, 20.0], alternative="less")
    assert wins_text(c) == f"3/4 victims, p = {c['p']:.3g}"
    assert paired_victims(a, b.assign(victim=b.victim + 10)) is None and wins_text(None) == "n/a"
    with pytest.raises(FedshieldError, match="columns"):
        paired_victims(a.drop(columns="psnr"), b)
