"""The book's plumbing: profiles, measured tables, the result cache, the reproduce command."""
import json

import pandas as pd
import pytest

from fedshield import FedshieldError
from fedshield.cache import ResultCache, config_key
from fedshield.cli import main
from fedshield.profiles import PROFILES, describe, get_profile
from fedshield.report import load_table, paper_numbers, save_table
from fedshield.reproduce import NOTEBOOKS, repo_root


def test_every_notebook_has_a_file_and_the_book_lists_it():
    root = repo_root()
    toc = (root / "book" / "_toc.yml").read_text()
    for name in NOTEBOOKS:
        assert (root / "notebooks" / f"{name}.ipynb").exists(), name
        assert f"file: {name}" in toc, name


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_load_for_every_profile(profile):
    p = get_profile("convergence", profile)
    assert p.profile == profile and describe(p).startswith(f"profile={profile}")


def test_profile_errors_are_clear():
    with pytest.raises(FedshieldError, match="unknown profile"):
        get_profile("convergence", "huge")
    with pytest.raises(FedshieldError, match="no profiles"):
        get_profile("no_such_notebook", "smoke")


def test_tables_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSHIELD_RESULTS", str(tmp_path))
    df = pd.DataFrame({"dataset": ["mnist", "cifar10"], "psnr": [12.5, 30.25], "muted": [False, True]})
    save_table("t", df, "smoke")
    back = load_table("t", "smoke")
    pd.testing.assert_frame_equal(back, df)
    assert load_table("t", "default") is None


def test_cache_keys_depend_on_every_field(tmp_path):
    rc = ResultCache(tmp_path)
    calls = []
    f = lambda c: calls.append(c) or {"v": c["a"] * 2}
    assert rc.cached({"a": 1, "b": 2}, f, prefix="x") == {"v": 2}
    assert rc.cached({"b": 2, "a": 1}, f, prefix="x") == {"v": 2}   # order does not matter
    assert len(calls) == 1
    assert config_key({"a": 1, "b": 2}) != config_key({"a": 1, "b": 3})


def _numeric_leaves(d):
    if isinstance(d, dict):
        for v in d.values():
            yield from _numeric_leaves(v)
    elif isinstance(d, list):
        for v in d:
            yield from _numeric_leaves(v)
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield d


def test_paper_numbers_file_is_honest_about_missing_values():
    """A number of the paper may only be stored together with its source."""
    pn = paper_numbers()
    a = pn["table_II"]["A"]
    assert set(a["values"]) >= {"Ours", "GC", "PLD"}
    for name in ("table_I", "table_II", "table_III"):
        tab = pn[name]
        parts = tab.values() if name != "table_I" else [tab]
        for part in parts:
            if isinstance(part, dict) and part.get("source") is None:
                assert list(_numeric_leaves(part.get("values"))) == [], f"{name}: numbers without a source"


def test_cli_lists_commands_and_rejects_unknown_profile(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("train", "attack", "reproduce"):
        assert cmd in out
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--profile", "huge"])
    assert e.value.code == 2
