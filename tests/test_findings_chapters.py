"""The helpers the chapters' hidden cells use besides the data accessors (fedshield.book.findings):
a page's parameters as a table, ranges and per-dataset lists for glued sentences."""
from types import SimpleNamespace

import math

from fedshield.book import findings as F
from fedshield.profiles import PROFILES, get_profile

CHAPTERS = ("threat_model", "leakage_risk", "slicing", "compensation", "clipping", "convergence", "main_results",
            "paper_scale")


def test_profile_table_is_one_short_row_per_setting():
    ns = SimpleNamespace(profile="default", datasets=("mnist", "fmnist"), seed=0, lr=0.1, kwargs=(("dlg_init", True),), extra=(),
                         rounds={"mnist": 60, "fmnist": 30}, ratios=(0.1, 0.5), spread=(("ig", ("mnist",), ("none", "ours")),),
                         attacks={"run": False, "tables": "default", "images": None})
    t = F.profile_table(ns)
    assert list(t.columns) == ["value"] and t.index.name == "parameter"
    assert t.value.to_dict() == {
        "profile": "default", "datasets": "mnist, fmnist", "seed": "0", "lr": "0.1", "kwargs": "dlg_init yes", "extra": "none",
        "rounds": "mnist 60; fmnist 30", "ratios": "0.1, 0.5", "spread": "(ig, mnist, (none, ours))",
        "attacks: run": "no", "attacks: tables": "default"}     # a None entry of a settings dict is left out


def test_every_chapter_profile_reads_as_a_table():
    for nb in CHAPTERS:
        for p in PROFILES:
            t = F.profile_table(get_profile(nb, p))
            assert t.value.iloc[0] == p and t.index.is_unique
            assert t.value.map(lambda v: isinstance(v, str) and 0 < len(v) <= 80).all(), (nb, p)


def test_span_and_each():
    assert F.span([3.14, 1.0, float("nan")]) == "1.0-3.1"
    assert F.span([2.0, 2.04]) == "2.0"
    assert F.span([None, math.nan]) == "n/a"
    assert F.span([0.5, 0.25], "{:.2f}") == "0.25-0.50"
    assert F.each(lambda d: d.upper(), ["mnist", "cifar10"]) == "MNIST MNIST, CIFAR-10 CIFAR10"
    assert F.each(str, ["other"], "; ") == "other other"
