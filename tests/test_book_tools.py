"""The book's plumbing: profiles, measured tables, the result cache, the reproduce command."""
import json

import pandas as pd
import pytest

from fedshield import FedshieldError
from fedshield.cache import ResultCache, config_key
from fedshield.cli import main
from fedshield.profiles import PROFILES, describe, get_profile
from fedshield.report import PAPER_TABLES, load_table, paper_numbers, paper_table, save_table
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
    # an explicit root wins over the environment, for reading and for writing
    other = tmp_path / "other"
    assert load_table("t", "smoke", root=other) is None
    save_table("t", df.head(1), "smoke", root=other)
    assert len(load_table("t", "smoke", root=other)) == 1 and len(load_table("t", "smoke")) == 2


def test_cache_keys_depend_on_every_field(tmp_path):
    rc = ResultCache(tmp_path)
    calls = []
    f = lambda c: calls.append(c) or {"v": c["a"] * 2}
    assert rc.cached({"a": 1, "b": 2}, f, prefix="x") == {"v": 2}
    assert rc.cached({"b": 2, "a": 1}, f, prefix="x") == {"v": 2}   # order does not matter
    assert len(calls) == 1
    assert config_key({"a": 1, "b": 2}) != config_key({"a": 1, "b": 3})


def _numeric_leaves(d, path=()):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _numeric_leaves(v, path + (k,))
    elif isinstance(d, list):
        for v in d:
            yield from _numeric_leaves(v, path)
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield path, d


SHARED = repo_root().parent / "shared" / "paper" / "paper_tables.json"
AXES = {"sizes", "bias", "Q"}   # the swept values of Table III[B-D]: coordinates, not results


def test_every_paper_number_has_a_source_naming_its_table():
    values = paper_numbers()["values"]
    assert len(values) > 200
    for r in values:
        assert isinstance(r["value"], (int, float)) and not isinstance(r["value"], bool), r
        assert r["table"] in PAPER_TABLES and r["metric"] in ("PSNR", "SSIM", "ACC", "ART"), r
        assert r["source"].startswith(f"Table {r['table']}") and r["dataset"] in r["source"], r
    keys = [(r["table"], r["dataset"], r["row"], r["metric"]) for r in values]
    assert len(keys) == len(set(keys)), "a cell of the paper is stored twice"


@pytest.mark.skipif(not SHARED.exists(), reason="the shared transcription of the paper is not beside this checkout")
def test_paper_numbers_match_the_shared_transcription():
    shared = json.loads(SHARED.read_text())
    want = sorted(v for p, v in _numeric_leaves({k: shared[k] for k in ("table_II", "table_III")}) if p[-1] not in AXES)
    got = sorted(r["value"] for r in paper_numbers()["values"])
    assert got == want
    ours = paper_table("II[A]").set_index(["row", "dataset", "metric"]).value
    assert ours[("Ours", "MNIST", "ACC")] == shared["table_II"]["A_DGA_LeNet"]["Ours"]["MNIST"]["ACC"]
    assert ours[("none", "CIFAR-10", "ACC")] == shared["table_II"]["A_DGA_LeNet"]["undefended_ACC"]["CIFAR-10"]
    b = paper_table("III[B]")
    assert b[(b.dataset == "MNIST") & (b.metric == "PSNR")].sort_values("x").value.tolist() == \
        shared["table_III"]["B_root_size"]["MNIST"]["PSNR"]
    with pytest.raises(FedshieldError, match="unknown paper table"):
        paper_table("IV")


def test_cli_lists_commands_and_rejects_unknown_profile(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("train", "attack", "reproduce"):
        assert cmd in out
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--profile", "huge"])
    assert e.value.code == 2


def test_beside_paper_puts_paper_ours_and_delta_in_the_papers_units():
    from fedshield.report import beside_paper, paper_wide, table2_long
    t = pd.DataFrame({"dataset": ["mnist", "mnist", "mnist"], "defense": ["none", "ours", "ours"],
                      "muted": [False, False, True], "psnr_mean": [60.0, 10.0, 50.0], "ssim_mean": [1.0, 0.1, 0.9],
                      "acc": [0.9, 0.8, 0.8], "art_ratio": [1.0, 1.1, 1.1]})
    long = table2_long(t)
    row = long.set_index(["row", "metric"]).value
    assert row[("Ours", "ACC")] == pytest.approx(80.0) and row[("Ours", "ART")] == pytest.approx(10.0)
    assert ("Ours-muted", "ACC") not in row.index and ("none", "ART") not in row.index
    cmp = beside_paper(long, "II[A]")
    ours = cmp[(cmp.dataset == "MNIST") & (cmp.row == "Ours")].set_index("metric")
    assert ours.loc["PSNR", "paper"] == 9.41 and ours.loc["PSNR", "delta"] == pytest.approx(10.0 - 9.41)
    assert ours.loc["ACC", "delta"] == pytest.approx(80.0 - 90.43)
    w = paper_wide(cmp, order=["none", "Ours", "GC"])
    assert [d for d, _ in w.index][:3] == ["MNIST"] * 3 and list(w.index[:3]) == [("MNIST", "none"), ("MNIST", "Ours"), ("MNIST", "GC")]
    assert list(w.columns[:3]) == [("PSNR", "paper"), ("PSNR", "ours"), ("PSNR", "Δ")]
    med = table2_long(t.assign(psnr_median=[70.0, 12.0, 55.0], ssim_median=[1.0, 0.2, 0.95]), stat="median")
    assert med.set_index(["row", "metric"]).value[("Ours", "PSNR")] == 12.0
    with pytest.raises(ValueError, match="stat"):
        table2_long(t, stat="mode")


def test_accuracy_beside_paper_averages_seeds_quotes_the_paper_and_lists_what_is_missing():
    from fedshield.report import accuracy_beside_paper, paper_table
    t = pd.DataFrame({"dataset": ["cifar10", "cifar10", "cifar10", "mnist"], "row": ["none", "ours", "ours", "gc"],
                      "final_accuracy": [0.439, 0.44, 0.42, 0.5]})
    s = accuracy_beside_paper(t, "cifar10", rows=("none", "ours", "gc", "pld"))
    pa = paper_table("II[A]").query("metric == 'ACC' and dataset == 'CIFAR-10'").set_index("row").value
    assert s == (f"undefended 43.9 % (1 seed; paper {pa['none']:.2f} %); Ours 43.0 % (2 seeds; paper {pa['Ours']:.2f} %); "
                 "not run yet: GC, PLD")
    assert accuracy_beside_paper(t.iloc[:0], "mnist", rows=("none", "ours")) == "not run yet: undefended, Ours"
    assert accuracy_beside_paper(None, "mnist", rows=("ours",)) == "not run yet: Ours"
    with pytest.raises(FedshieldError, match="dataset"):
        accuracy_beside_paper(t, "svhn")
    # a cell over the budget, run at fewer rounds, is marked and compared at its own round, not with the paper
    c = pd.DataFrame({"dataset": ["cifar10"] * 3, "row": ["none", "gc", "pld"], "rounds": [2000, 2000, 300],
                      "final_accuracy": [0.439, 0.401, 0.31], "mean_round_time": [2.7, 2.7, 7.8],
                      "eval_rounds": [[100, 200, 300, 2000], [100, 200, 300, 2000], [100, 200, 300]],
                      "accuracy": [[0.25, 0.3, 0.334, 0.439], [0.25, 0.3, 0.318, 0.401], [0.24, 0.29, 0.31]]})
    s = accuracy_beside_paper(c, "cifar10", rows=("none", "gc", "pld"))
    assert s.endswith("PLD 31.0 % after only 300 rounds (1 seed; 2000 rounds are over the budget at 7.8 s a round; "
                      "undefended 33.4 % at round 300)")
    assert f"GC 40.1 % (1 seed; paper {pa['GC']:.2f} %)" in s and str(pa["PLD"]) not in s
    with pytest.raises(FedshieldError, match="rows"):
        accuracy_beside_paper(t, "mnist", rows=("dp",))


def test_fewer_rounds_marks_cells_over_the_budget_and_accuracy_at_reads_the_curve():
    from fedshield.report import accuracy_at, fewer_rounds
    t = pd.DataFrame({"dataset": ["cifar10", "cifar10", "mnist"], "row": ["none", "pld", "none"],
                      "rounds": [2000, 300, 3], "eval_rounds": [[100, 300], [300], [3]],
                      "accuracy": [[0.2, 0.33], [0.3], [0.1]]})
    assert fewer_rounds(t).tolist() == [False, True, False]       # per dataset: MNIST's 3 rounds are its longest
    assert not fewer_rounds(t.drop(columns="rounds")).any() and not fewer_rounds(None).any()
    assert accuracy_at(t, "cifar10", "none", 300) == pytest.approx(0.33)
    assert accuracy_at(t, "cifar10", "none", 200) != accuracy_at(t, "cifar10", "none", 200)   # NaN: not evaluated
    assert accuracy_at(None, "mnist", "none", 3) != accuracy_at(None, "mnist", "none", 3)


@pytest.mark.parametrize("select, env, why", [
    (["tests/notebooks/09_summary.ipynb"], "empty", "01_threat_model.ipynb, 02_leakage_risk.ipynb"),
    (["tests/notebooks"], "stale", "already holds tables (table2a.json)"),
])
def test_the_summary_notebook_check_refuses_a_run_it_cannot_mean_anything_in(select, env, why, tmp_path):
    """Chapter 9's checked output counts the tables chapters 1-8 wrote before it into an empty
    results folder: collected alone or over old tables, pytest stops at collection with the reason
    (tests/conftest.py), instead of an opaque nbval diff. (Without FEDSHIELD_RESULTS the session
    makes an empty one: tests/test_conftest.py.)"""
    import os
    import subprocess
    import sys
    environ = {k: v for k, v in os.environ.items() if k != "FEDSHIELD_RESULTS"}
    if env:
        environ["FEDSHIELD_RESULTS"] = str(tmp_path)
    if env == "stale":
        (tmp_path / "tables" / "smoke").mkdir(parents=True)
        (tmp_path / "tables" / "smoke" / "table2a.json").write_text("{}")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--collect-only", *select]
    run = lambda: subprocess.run(cmd, cwd=repo_root(), env=environ, capture_output=True, text=True, timeout=120)
    out = run()
    assert out.returncode == 4 and why in out.stdout + out.stderr, out.stdout + out.stderr
    if env == "empty":  # the whole folder, into an empty results folder, collects
        cmd[-1] = "tests/notebooks"
        ok = run()
        assert ok.returncode == 0 and "tests collected" in ok.stdout, ok.stdout + ok.stderr


def test_the_summary_appendix_is_a_section_of_chapter_9():
    """Chapter 9's raw tables live on their own page, run right after it (it reads the same tables)."""
    import yaml
    root = repo_root()
    assert NOTEBOOKS.index("09a_appendix_tables") == NOTEBOOKS.index("09_summary") + 1
    toc = yaml.safe_load((root / "book" / "_toc.yml").read_text())
    ch9 = next(c for c in toc["chapters"] if c["file"] == "09_summary")
    assert [s["file"] for s in ch9.get("sections", [])] == ["09a_appendix_tables"]
