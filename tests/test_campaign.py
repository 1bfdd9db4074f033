"""The paper-scale campaign: cells, keys, resumable tables, the calibrated setting, plans."""
import pandas as pd
import pytest
import torch

from fedshield.errors import FedshieldError
from fedshield.experiments import campaign as C
from fedshield.fl import run_fedavg
from fedshield.report import load_table


@pytest.fixture()
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSHIELD_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FEDSHIELD_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_the_calibrated_setting_is_the_papers_local_training_with_batch_1():
    cfg = C.paper_scale_config("mnist", seed=3)
    assert (cfg.rounds, cfg.n_clients, cfg.per_round, cfg.local_lr, cfg.local_epochs, cfg.local_batch_size) == \
        (2000, 100, 10, 1e-2, 2, 1)
    assert dict(cfg.model_kwargs) == {"dlg_init": True} and cfg.seed == 3 and cfg.share == "gradient"
    assert C.paper_scale_config("cifar10").n_clients == 1000
    assert C.paper_scale_config("mnist", share="update").share == "update"


def test_cell_keys_identify_the_run():
    a = C.Cell("mnist", "ours", 0, options=(("risk_every", 200),))
    assert a.key() == C.Cell("mnist", "ours", 0, row="another label", options=(("risk_every", 200),)).key()
    others = [C.Cell("mnist", "ours", 1, options=a.options), C.Cell("fmnist", "ours", 0, options=a.options),
              C.Cell("mnist", "ours", 0), C.Cell("mnist", "dp-g", 0), C.Cell("mnist", "ours", 0, options=a.options,
                                                                             fl=(("share", "update"),)),
              C.Cell("mnist", "ours", 0, options=a.options, rounds=10)]
    assert len({a.key(), *(o.key() for o in others)}) == 1 + len(others)


def test_plans_cover_the_issue():
    t2 = C.plan("table2a_acc", (0, 1, 2))
    assert {(c.dataset, c.defense) for c in t2} == {(d, x) for d in ("mnist", "fmnist")
                                                    for x in ("none", "ours", "gc", "dp-g", "dp-l")}
    assert {c.seed for c in t2} == {0, 1, 2} and len({c.key() for c in t2}) == len(t2)
    assert all(dict(c.options) == C.OURS_REFRESH for c in t2 if c.defense == "ours")
    nr = C.plan("noise_readings", (0,))
    assert {c.row for c in nr} == {"ours, update units", "dp-g, update units", "dp-l, update units",
                                   "dp-g, every local step", "dp-l, every local step"}
    f2 = C.plan("fig2_table3de", (0,))
    assert {c.row for c in f2} == {"uncompensated", "paper variance", "Q=1", "Q=6", "Q=12", "Q=20", "clipping"}
    assert C.clip_bound("mnist") == pytest.approx(0.1 * 17038 ** 0.5, abs=0.01)
    cf = C.plan("table2a_cifar", (0,))
    assert [c.defense for c in cf] == list(C.TABLE2A_DEFENSES) and {c.dataset for c in cf} == {"cifar10"}
    # PLD on CIFAR-10 is over the budget at 2000 rounds: it runs SHORT_CELLS' rounds, the rest 2000;
    # the smoke profile's miniature replaces every cell's rounds
    assert {c.defense: c.rounds for c in cf} == {**{d: 2000 for d in C.TABLE2A_DEFENSES}, "pld": 300}
    assert C.SHORT_CELLS == {("cifar10", "pld"): 300}
    assert {c.rounds for c in C.plan("table2a_cifar", (0,), rounds=3)} == {3}
    tab = pd.DataFrame({"dataset": ["cifar10"] * 2, "row": ["none", "pld"], "rounds": [c.rounds for c in cf if c.defense in ("none", "pld")]})
    assert C.at_paper_scale(tab).row.tolist() == ["none"]
    assert cf[0].config().n_clients == 1000 and cf[0].config().per_round == 200
    with pytest.raises(FedshieldError, match="unknown plan"):
        C.plan("table9")
    assert C.plan("table2a_cifar", (0,), datasets=("mnist",)) == []


def test_collect_of_an_empty_selection_runs_nothing(results):
    t, missing = C.collect("table2a_cifar", [], profile="p", run=True)
    assert t.empty and missing == []


def test_campaign_runs_missing_cells_once_and_resumes_from_the_table(results, data_root, monkeypatch):
    cells = [C.Cell("mnist", "none", 0, rounds=2), C.Cell("mnist", "gc", 0, rounds=2)]
    tab = C.run_campaign("t", cells, profile="p", progress=False, log=lambda s: None)
    assert list(tab.row) == ["none", "gc"] and set(tab.key) == {c.key() for c in cells}
    first = tab.set_index("row").final_accuracy
    # the row is the run's result: the same as running the config directly
    direct = run_fedavg(cells[0].config(), None, progress=False)
    assert first["none"] == direct["final_accuracy"] and tab.eval_rounds[0] == [2]
    assert C.campaign_status("t", cells, "p") == (2, 2)
    # a finished table runs nothing (a new machine with the committed table continues, not restarts)
    monkeypatch.setattr(C, "run_cell", lambda *a, **k: pytest.fail("a done cell was run again"))
    C.run_campaign("t", cells, profile="p", progress=False, log=lambda s: None)
    # a spent budget starts no cell and says so; rows of other cells are kept
    logs = []
    more = cells + [C.Cell("mnist", "dp-g", 0, rounds=2)]
    C.run_campaign("t", more, profile="p", budget_s=-1, progress=False, log=logs.append)
    assert "budget" in logs[-1] and "1 cells left" in logs[-1]
    assert len(load_table("t", "p")) == 2
    with pytest.raises(FedshieldError, match="no cells"):
        C.run_campaign("t", [], profile="p")


def test_dp_noise_per_local_step_in_the_simulator(data_root):
    """Zero variance per step is no defense at all; with variance the shared updates carry the
    summed step noise, on both training paths."""
    from fedshield.experiments import fl_defense
    from fedshield.fl import Simulator, build_federation, build_global_model

    cfg = C.paper_scale_config("mnist", rounds=1)
    x, y, parts, _ = build_federation(cfg, progress=False)

    def norm(defense, batched=True):
        sim = Simulator.from_partition(build_global_model(cfg), x, y, parts, None, cfg, defense, batched=batched)
        return sim.round(evaluate=False)["update_norm"]

    clean = norm(None)
    assert norm(fl_defense("dp-g", cfg, variance=0.0, where="step")) == pytest.approx(clean, rel=1e-6)
    for batched in (True, False):
        noisy = norm(fl_defense("dp-g", cfg, variance=1.0, where="step"), batched)
        assert noisy > 3 * clean


def test_compensation_error_on_real_rounds(data_root):
    from fedshield.experiments.compensation_error import METHODS, run_compensation_error

    t = run_compensation_error(C.paper_scale_config("mnist", rounds=2), [0, 1], draws=2)
    assert set(t.method) == set(METHODS) and sorted(t["round"].unique()) == [0, 1] and len(t) == 2 * 2 * 4
    m = t.groupby("method").error.mean()
    assert m["perturbed"] > 0 and m["per-layer shrink"] < m["perturbed"]


def test_the_paper_profiles_convnet_fedavg_runs_a_few_rounds_on_cpu(data_root, results):
    """The `paper` profile keeps the ConvNet FedAvg of Table II[B] at 2000 rounds for a GPU; its
    config is smoke-tested here for one round on the CPU (undefended and with Ours)."""
    import importlib.util
    from pathlib import Path

    from fedshield.experiments import run_fl

    spec = importlib.util.spec_from_file_location("ppc", Path(__file__).parents[1] / "tools" / "paper_profile_cost.py")
    ppc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ppc)
    cfg = ppc.paper_convnet_config("mnist", 1)
    assert dict(cfg.model_kwargs)["width"] == 64 and cfg.local_lr == 1e-2 and cfg.local_batch_size is None
    for d, opts in (("none", {}), ("ours", {"risk_every": 200, "risk_warmup": True, "root_size": 4, "probes": 1})):
        res = run_fl(cfg.replace(test_samples=50), d, attack="ig", progress=False, **opts)
        assert len(res["round_time"]) == 1 and 0.0 <= res["final_accuracy"] <= 1.0


def test_interleaved_round_times(data_root):
    from fedshield.experiments.round_time import interleaved_round_times

    cfg = C.paper_scale_config("mnist")
    t = interleaved_round_times(cfg, {"none": None, "ours": dict(C.OURS_REFRESH, probes=1)}, rounds=2, warmup=1)
    r = t.set_index("variant")
    assert r.loc["none", "art_percent"] == 0 and r.loc["none", "defense_share_percent"] < 1
    assert r.loc["ours", "client_ms"] > 0 and r.loc["ours", "server_ms"] > 0 and (t.rounds == 2).all()
    with pytest.raises(FedshieldError, match="undefended"):
        interleaved_round_times(cfg, {"a": {}, "b": {}}, rounds=1)


def test_defense_share_and_art_ratio_against_the_same_seeds_undefended_run():
    import pandas as pd

    t = pd.DataFrame([dict(dataset="mnist", defense="none", row="none", seed=0, mean_round_time=0.10,
                           defense_round_start=0.0, defense_client=0.0, defense_server=0.0, final_accuracy=0.9),
                      dict(dataset="mnist", defense="ours", row="ours", seed=0, mean_round_time=0.13,
                           defense_round_start=0.001, defense_client=0.0005, defense_server=0.0005, final_accuracy=0.89),
                      dict(dataset="mnist", defense="ours", row="ours", seed=1, mean_round_time=0.10,
                           defense_round_start=0.001, defense_client=0.0, defense_server=0.0, final_accuracy=0.88)])
    share = C.defense_share(t)
    assert share[1] == pytest.approx(0.02) and share[0] == 0 and share.isna()[2]    # seed 1 has no undefended run
    assert C.art_ratio(t)[1] == pytest.approx(1.3)
    long = C.paper_long(t).set_index(["row", "metric"]).value
    assert long[("Ours", "ART")] == pytest.approx(2.0) and long[("Ours", "ACC")] == pytest.approx(88.5)
