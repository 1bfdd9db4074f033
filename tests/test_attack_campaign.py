"""The paper-scale attack campaign: plans, per-victim resumable tables, images, summaries."""
import numpy as np
import pandas as pd
import pytest

from fedshield.errors import FedshieldError
from fedshield.experiments import attack_campaign as A
from fedshield.experiments.attack import attack_victims
from fedshield.report import load_table

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSHIELD_RESULTS", str(tmp_path / "results"))
    return tmp_path


def test_plans_hold_the_issues_cells():
    dlg = A.attack_plan("attacks_dlg")
    main = [c for c in dlg if c.table == "II[A]"]
    assert {(c.config.dataset, c.row) for c in main} == {(d, r) for d in ("mnist", "fmnist", "cifar10")
                                                          for r, _, _ in A.TABLE2_ROWS}
    assert all(c.config.iterations == 500 and c.config.attack == "dlg" and c.config.model_init == "dlg" for c in dlg)
    many = {"none", "Ours", "Ours-muted", "PLD-muted"}
    assert all(c.config.images == (8 if c.row in many else 4) for c in main)
    assert {(c.config.dataset, c.row) for c in dlg if c.table == "I"} == {("cifar100", r) for r in ("none", "Ours", "Ours-muted")}
    ig = A.attack_plan("attacks_ig")
    assert all(c.config.iterations == 1000 and dict(c.config.model_kwargs) == {"width": 64} for c in ig)
    assert all(c.config.images >= 2 for c in ig)
    t3 = A.attack_plan("attacks_table3")
    assert {c.table for c in t3} == {"III[A]", "III[B]", "III[C]", "III[E]"}
    assert sorted(c.config.root_size for c in t3 if c.table == "III[B]" and c.config.dataset == "mnist") == [50, 200, 300, 400]
    from fedshield.report import paper_table
    for tab in ("III[A]", "III[B]", "III[C]", "III[E]"):   # every row is one of the paper's
        assert {c.setting for c in t3 if c.table == tab} | ({A.TABLE3_REFERENCE[tab]} if tab in A.TABLE3_REFERENCE else set()) \
            == set(paper_table(tab).row)
    assert all(c.config.defense == "ours" and dict(c.config.defense_kwargs).get("ratio") is None for c in t3)
    fr = A.attack_plan("attacks_frontier")
    assert all(c.config.images == 8 and c.config.iterations == 500 for c in fr)
    muted = {c.setting: c.config.muted for c in fr}
    assert muted["Ours"] and muted["GC"] and muted["PLD"] and not muted["DP-G"] and not muted["Ours, ratio 1.0"]
    assert muted["Ours + floor 0.01"] and dict(next(c for c in fr if c.setting == "Ours + floor 0.03").config.defense_kwargs) == {"floor": 0.03}
    from fedshield.experiments.campaign import plan as fl_plan
    assert {c.row for c in fl_plan("frontier", (0,))} == {c.setting for c in fr} - {"DP-G", "GC", "Ours", "PLD"}
    for plan in (dlg, ig, t3, fr):
        assert len({c.key() for c in plan}) == len(plan)
    small = A.attack_plan("attacks_ig", iterations=5, images=1, width=4, datasets=("mnist",))
    assert {(c.config.iterations, c.config.images, c.config.model_kwargs) for c in small} == {(5, 1, (("width", 4),))}
    with pytest.raises(FedshieldError, match="unknown attack plan"):
        A.attack_plan("attacks_table9")


def test_image_code_round_trips_to_8_bits():
    x = np.random.default_rng(0).random((1, 3, 5, 4)).astype(np.float32)
    y = A.decode_image(A.encode_image(x))
    assert y.shape == x.shape and np.abs(y - x).max() <= 0.5 / 255 + 1e-7
    assert A.decode_image(None) is None


def test_campaign_attacks_missing_victims_once_and_resumes(results, data_root):
    cells = A.attack_plan("attacks_dlg", iterations=2, images=2, datasets=("mnist",))[:2]
    logs = []
    A.run_attack_campaign("t", cells, profile="p", budget_s=-1, log=logs.append)
    assert A.attack_status("t", cells, "p") == (0, 4) and logs == ["[t] budget of -1 s spent"]

    def killed(msg):   # the machine is reclaimed after the first chunk has been merged
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        A.run_attack_campaign("t", cells, profile="p", chunk=1, log=killed)
    assert A.attack_status("t", cells, "p") == (1, 4)
    assert [(c.key(), n) for c, n in A.cell_status("t", cells, "p")] == [(cells[0].key(), 1), (cells[1].key(), 0)]
    tab = A.run_attack_campaign("t", cells, profile="p", chunk=1, log=lambda s: None)
    assert A.attack_status("t", cells, "p") == (4, 4) and len(tab) == 4
    assert set(tab.row) == {"none", "Ours"} and tab.psnr.notna().all()
    assert tab.x_rec.notna().all()          # keep_images=2: both victims keep their images
    # victim v is the same test image in every cell of the plan
    assert tab[tab.row == "none"].sort_values("victim")["index"].tolist() == \
        tab[tab.row == "Ours"].sort_values("victim")["index"].tolist()
    before = load_table("t", "p")
    A.run_attack_campaign("t", cells, profile="p", log=lambda s: None)   # nothing left: nothing runs
    pd.testing.assert_frame_equal(before, load_table("t", "p"))
    # the interrupted and resumed rows are those of one uninterrupted run (same chunks); with other
    # chunks they differ only by the rounding of the batched kernels, which L-BFGS without line
    # search amplifies (1e-3 of a pixel after one step of 20 updates)
    for c in cells:
        rows = tab[tab.cell == c.key()].sort_values("victim")
        once = [r["psnr"] for part in attack_victims(c.config, [0, 1], chunk=1) for _, r, _ in part]
        assert np.allclose(rows.psnr, once, rtol=1e-9, atol=0)
    res, missing = A.collect_attacks("t", cells, profile="p")
    assert not missing and set(res) == {c.key() for c in cells}
    r = res[cells[0].key()]
    assert r["summary"]["victims"] == 2 and r["summary"]["psnr"]["q1"] <= r["summary"]["psnr"]["median"] <= r["summary"]["psnr"]["q3"]
    assert r["x_rec"][0].shape == (1, 1, 28, 28) and r["x_true"][1].min() >= 0
    more = A.attack_plan("attacks_dlg", iterations=2, images=2, datasets=("mnist",))
    res, missing = A.collect_attacks("t", more, profile="p")
    assert len(missing) == len(more) - 2 and set(res) == {c.key() for c in cells}
    # another results folder is read through root, not the environment; it is read-only
    res, missing = A.collect_attacks("t", cells, profile="p", root=results / "elsewhere")
    assert not res and len(missing) == len(cells)
    with pytest.raises(FedshieldError, match="pass root only to read"):
        A.collect_attacks("t", cells, profile="p", run=True, root=results / "elsewhere")


def test_bad_campaign_input_is_one_clear_error(results, data_root):
    cells = A.attack_plan("attacks_dlg", iterations=2, images=2, datasets=("mnist",))[:1]
    with pytest.raises(FedshieldError, match="no cells"):
        A.run_attack_campaign("t", [], profile="p")
    with pytest.raises(FedshieldError, match="chunk"):
        A.run_attack_campaign("t", cells, profile="p", chunk=0)
    with pytest.raises(FedshieldError, match="out of range"):
        next(attack_victims(cells[0].config, [2]))


def test_cell_summary_counts_exact_reconstructions_in_the_quartiles():
    rows = pd.DataFrame(dict(psnr=[10.0, 20.0, np.inf, 30.0], ssim=[0.1, 0.2, 1.0, 0.3], seconds=[1.0] * 4,
                             detect_precision=[None, None, None, None]))
    s = A.cell_summary(rows)
    assert s["psnr"]["median"] == 25.0 and s["psnr"]["mean"] == 20.0 and s["psnr"]["q3"] == np.inf
    assert s["detect_precision"] is None and s["victims"] == 4 and s["seconds"] == 4.0


def test_attack_during_training_uses_the_runs_global_model(results, data_root, tmp_path):
    import torch
    from fedshield.experiments.attack import AttackConfig, attack_setup
    from fedshield.experiments.campaign import Cell, training_options
    from fedshield.experiments.fedavg import global_model_states
    from fedshield.fl import build_global_model

    cells = A.attack_plan("attacks_training", iterations=2, images=1, datasets=("mnist",), rounds=(0, 2), total=3)
    assert [(c.row, c.setting) for c in cells] == [(r, f"round {k}") for k in (0, 2) for r in ("none", "Ours", "Ours-muted")]
    ours2 = next(c for c in cells if c.row == "Ours" and c.setting == "round 2").config
    model, _ = attack_setup(ours2)
    fl = Cell("mnist", "ours", 0, options=training_options("ours"), rounds=3).config()
    states = global_model_states(fl, "ours", [0, 2], **dict(training_options("ours")))
    assert all(torch.equal(model.state_dict()[k], states[2][k]) for k in states[2])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])      # training moved the model
    init = build_global_model(fl).state_dict()
    assert all(torch.equal(init[k], states[0][k]) for k in init)                    # round 0 = initial model
    # the untrained configs keep the keys they had before the fields existed
    assert A.dlg_config("mnist").cache_key() == "attack-abac98d37ce5c82f"
    with pytest.raises(FedshieldError, match="trained_round"):
        AttackConfig(dataset="mnist", trained_round=-1).validate()
    with pytest.raises(FedshieldError, match="LeNet"):
        AttackConfig(dataset="mnist", model="convnet", trained_round=1).validate()
    with pytest.raises(FedshieldError, match="past the run"):
        attack_setup(A.dlg_config("mnist", trained_round=5, trained_total=3))
    tab = A.run_attack_campaign("t", cells[:2], profile="p", log=lambda s: None)
    assert len(tab) == 2 and tab.psnr.notna().all()


def test_table3_long_reads_the_sweep_and_the_reference_cell(results, data_root):
    from fedshield.report import beside_paper
    scale = dict(iterations=2, images=1, width=4, datasets=("mnist",))
    long, missing = A.table3_long(profile="p", **scale)
    assert long.empty and len(missing) == len(A.attack_plan("attacks_table3", **scale)) + 1
    ref = [c for c in A.attack_plan("attacks_ig", **scale) if c.row == "Ours"]
    sweep = [c for c in A.attack_plan("attacks_table3", **scale) if c.table == "III[A]"]
    A.run_attack_campaign("attacks_ig", ref, profile="p", log=lambda s: None)
    A.run_attack_campaign("attacks_table3", sweep, profile="p", log=lambda s: None)
    long, missing = A.table3_long(profile="p", **scale)
    a = long[long.table == "III[A]"].set_index(["row", "metric"])
    assert set(a.index) == {("layer size", "PSNR"), ("layer size", "SSIM"), ("sensitivity", "PSNR"), ("sensitivity", "SSIM")}
    assert (long[long.table == "III[B]"].row == "root size 100").all() and (long.victims == 1).all()
    cmp = beside_paper(long[long.table == "III[A]"], "III[A]")
    assert cmp[(cmp.dataset == "MNIST") & (cmp.row == "layer size") & (cmp.metric == "PSNR")].paper.item() == 14.51


def test_a_cell_another_plan_has_attacked_is_copied_not_rerun(results, data_root, monkeypatch):
    """The frontier's paper-setting cells share their configs with Table II[A]'s: their victims are
    taken from the table that holds them, under the frontier's names, and nothing is attacked."""
    dlg = [c for c in A.attack_plan("attacks_dlg", iterations=2, images=2, datasets=("mnist",)) if c.row == "Ours-muted"]
    fr = [c for c in A.attack_plan("attacks_frontier", iterations=2, images=2, datasets=("mnist",)) if c.setting == "Ours"]
    assert len(dlg) == len(fr) == 1 and dlg[0].key() == fr[0].key()
    A.run_attack_campaign("attacks_dlg", dlg, profile="p", log=lambda s: None)
    src = load_table("attacks_dlg", "p")

    def no_attack(*a, **k):
        raise AssertionError("attacked again")
    monkeypatch.setattr(A, "attack_victims", no_attack)
    logs = []
    got = A.run_attack_campaign("attacks_frontier", fr, profile="p", log=logs.append)
    assert len(got) == 2 and set(got.row) == {"Ours-muted"} and set(got.table) == {"frontier"} and set(got.setting) == {"Ours"}
    assert got.sort_values("victim").psnr.tolist() == src.sort_values("victim").psnr.tolist()
    assert "taken from attacks_dlg" in logs[0]
    assert A.attack_status("attacks_frontier", fr, "p") == (2, 2)
