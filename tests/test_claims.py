"""The summary chapter's claim checks (fedshield.claims) on small hand-made tables: each verdict
flips where its margin says it should, and every margin is a named constant of the module."""
import ast
import inspect

import numpy as np
import pandas as pd
import pytest

from fedshield import FedshieldError
from fedshield import claims as C


def table2(psnr, acc, muted_psnr=None):
    """A Table II-shaped frame: psnr/acc = {(dataset, defense): value}; muted rows for 'ours'."""
    rows = [dict(dataset=ds, defense=d, muted=False, psnr_median=v, acc=acc[(ds, d)]) for (ds, d), v in psnr.items()]
    for ds, v in (muted_psnr or {}).items():
        rows.append(dict(dataset=ds, defense="ours", muted=True, psnr_median=v, acc=acc[(ds, "ours")]))
    return pd.DataFrame(rows)


GOOD = table2({("mnist", "none"): 60.0, ("mnist", "ours"): 8.0, ("cifar10", "none"): 25.0, ("cifar10", "ours"): 7.0},
              {("mnist", "none"): 0.90, ("mnist", "ours"): 0.89, ("cifar10", "none"): 0.10, ("cifar10", "ours"): 0.10},
              muted_psnr={"mnist": 9.0, "cifar10": 8.0})


def verdict(name, tables):
    claim = next(c for c in C.CLAIMS if c.claim == name)
    return C.verdict_of(claim, tables)


def test_table2_claims_supported_and_not():
    t = {"table2a": GOOD}
    assert C.undefended_leaks(t, "table2a")[1] is True
    assert C.ours_protects(t, "table2a")[1] is True
    assert C.muted_fails(t, "table2a")[1] is True
    worse = GOOD.copy()
    worse.loc[(worse.defense == "ours") & worse.muted, "psnr_median"] = [50.0, 8.0]
    t = {"table2a": worse}
    assert C.muted_fails(t, "table2a")[1] is False
    weak = GOOD.copy()
    weak.loc[weak.defense == "none", "psnr_median"] = [12.0, 11.0]
    assert C.undefended_leaks({"table2a": weak}, "table2a")[1] is False
    assert C.ours_protects({"table2a": weak}, "table2a")[1] is False


def campaign(acc, *, times=None):
    """A campaign-table frame: acc = {(dataset, row, seed): final accuracy}."""
    rows = []
    for (ds, row, seed), a in acc.items():
        rt, (rs, cl, sv) = (times or {}).get((ds, row), (0.1, (0.0, 0.0, 0.0)))
        rows.append(dict(dataset=ds, row=row, defense=row if row in ("none", "ours", "gc", "dp-g", "dp-l", "pld")
                         else "ours", seed=seed, final_accuracy=a, mean_round_time=rt, defense_round_start=rs,
                         defense_client=cl, defense_server=sv))
    return pd.DataFrame(rows)


def test_accuracy_at_chance_is_inconclusive_not_supported():
    t2 = campaign({("mnist", "none", 0): 0.1, ("mnist", "ours", 0): 0.1})
    row = verdict("Ours loses under 2 points of accuracy (LeNet, 2000 rounds)", {"table2a_acc": t2})
    assert row["verdict"] == "inconclusive"


def test_paper_scale_table2a_claims():
    acc = {("mnist", "none", 0): 0.90, ("mnist", "none", 1): 0.88, ("mnist", "ours", 0): 0.895, ("mnist", "ours", 1): 0.875,
           ("mnist", "gc", 0): 0.86, ("mnist", "dp-g", 0): 0.89, ("mnist", "dp-l", 0): 0.10,
           ("fmnist", "none", 0): 0.78, ("fmnist", "ours", 0): 0.70}
    times = {("mnist", "none"): (0.1, (0.0, 0.0, 0.0)), ("mnist", "ours"): (0.104, (0.001, 0.0005, 0.0005))}
    t = {"table2a_acc": campaign(acc, times=times)}
    meas, ok = C.paper_scale_ours_accuracy(t)
    assert ok is False and "fmnist: 0.780 vs 0.700" in meas and "mean over 1-2 seeds" in meas
    t_mn = {"table2a_acc": t["table2a_acc"][t["table2a_acc"].dataset == "mnist"]}
    assert C.paper_scale_ours_accuracy(t_mn)[1] is True
    meas, ok = C.paper_scale_dp_chance(t_mn)
    assert ok is False and "mnist dp-g: 0.890" in meas
    assert C.paper_scale_gc_loses(t_mn)[1] is False
    meas, ok = C.paper_scale_ours_round_time(t_mn)
    assert ok is True and "2.00 %" in meas
    pld = campaign({("mnist", "pld", 0): 0.86})
    assert C.paper_scale_pld_accuracy({**t_mn, "table2a_pld": pld})[1] is True
    assert verdict("PLD keeps accuracy (LeNet, 2000 rounds)", t_mn)["verdict"] == "not tested"
    # CIFAR-10's cells (table2a_cifar) join the verdicts where they exist, and are not required
    cif = campaign({("cifar10", "none", 0): 0.44, ("cifar10", "ours", 0): 0.40})
    meas, ok = C.paper_scale_ours_accuracy({**t_mn, "table2a_cifar": cif})
    assert ok is False and "cifar10: 0.440 vs 0.400" in meas and "mnist:" in meas
    assert C.paper_scale_ours_accuracy({**t_mn, "table2a_cifar": cif.iloc[:1]})[1] is True   # CIFAR-10 Ours not run
    assert "table2a_cifar" in C.tables_needed()
    # a CIFAR-10 cell run at fewer rounds (over the budget) is no 2000-round ACC: the verdicts skip it
    short = campaign({("cifar10", "none", 0): 0.44, ("cifar10", "dp-g", 0): 0.10}).assign(rounds=[2000, 300])
    meas, ok = C.paper_scale_dp_chance({**t_mn, "table2a_cifar": short})
    assert "cifar10" not in meas and ok is False
    meas, ok = C.paper_scale_dp_chance({**t_mn, "table2a_cifar": short.assign(rounds=2000)})
    assert "cifar10 dp-g: 0.100" in meas


def test_paper_scale_fig2_q_clipping_claims():
    t2 = campaign({("mnist", "none", 0): 0.90, ("mnist", "ours", 0): 0.89})
    f2 = campaign({("mnist", "uncompensated", 0): 0.895, ("mnist", "Q=1", 0): 0.85, ("mnist", "Q=6", 0): 0.88,
                   ("mnist", "clipping", 0): 0.875})
    t = {"table2a_acc": t2, "fig2_table3de": f2}
    meas, ok = C.paper_scale_compensation_helps(t)
    assert ok is False and "compensated 0.890 vs uncompensated 0.895" in meas
    assert C.paper_scale_q1_loses(t)[1] is True
    assert C.paper_scale_clipping_accuracy(t)[1] is True
    worse = f2.copy()
    worse.loc[worse.row == "clipping", "final_accuracy"] = 0.8
    assert C.paper_scale_clipping_accuracy({"fig2_table3de": worse})[1] is False
    with pytest.raises(C.Inconclusive):
        C.paper_scale_q1_loses({"fig2_table3de": f2[f2.row != "Q=1"]})


def test_compensation_and_q_claims():
    spec = pd.DataFrame({"variance": ["ours", "paper (m^2 too large)"], "err_perturbed": [0.7, 0.7],
                         "err_compensated": [0.3, 1.2], "dropped": [45, 1]})
    t = {"compensation_spectrum": spec}
    assert C.comp_reduces_error(t)[1] is True
    meas, ok = C.paper_variance_harmful(t)
    assert ok is True and "1 direction(s) dropped" in meas
    q = pd.DataFrame({"Q": [1, 6, 12], "err_compensated": [0.39, 0.32, 0.35]})
    assert C.q_matters({"table3d_q": q})[1] is True
    assert C.q_matters({"table3d_q": q.assign(err_compensated=[0.1, 0.32, 0.35])})[1] is False


def test_clipping_convergence_root_slicing_table1():
    e = pd.DataFrame({"B": ["no defense", "none", "1.0"], "psnr_dlg": [25.0, 10.0, 3.0],
                      "psnr_dlg_compensated": [float("nan"), 12.5, 3.1]})
    assert C.clipping_stops_denoising({"table3e_clipping": e})[1] is True
    conv = pd.DataFrame({"sigma": [0.0, 0.1, 0.1], "compensated": [False, False, True], "holds": [True, True, False],
                         "psi": [0.0, 3.20, 1.4], "psi_theory": [0.0, 3.14, 3.14]})
    meas, ok = C.bound_holds({"convergence": conv})
    assert ok is False and meas == "2/3 settings satisfy the bound"
    assert C.variance_derivation({"convergence": conv})[1] is True
    assert C.variance_derivation({"convergence": conv.assign(psi=[0.0, 4.0, 1.4])})[1] is False
    b = pd.DataFrame({"root size": [25, 50], "risk rel.err": [0.014, 0.006]})
    assert C.small_root_enough({"table3b_root_size": b})[1] is True
    a = pd.DataFrame({"setting": ["ours, risk slicing", "ours, size slicing"], "psnr": [6.7, 6.8]})
    # the small regime alone decides nothing: the paper's claim is at the GIA scale
    with pytest.raises(C.Inconclusive, match="small regime"):
        C.risk_vs_size({"table3a_slicing": a})
    far = a.assign(psnr=[1.0, 20.0])
    assert C.verdict_of(C.claim("risk_slicing"), {"table3a_slicing": far})["verdict"] == "inconclusive"
    # at the GIA scale where it has run: the same victims (test image index) under both slicings
    ig = pd.DataFrame({"dataset": "mnist", "row": ["Ours", "Ours", "Ours", "none"], "muted": False, "iterations": 1000,
                       "width": 64, "index": [3, 7, 9, 3], "psnr": [4.0, 5.0, 30.0, 30.0]})
    t3 = pd.DataFrame({"dataset": "mnist", "table": "III[A]", "setting": "layer size", "muted": False,
                       "iterations": [1000, 1000, 50], "width": 64, "index": [3, 7, 9], "psnr": [9.0, 8.0, 1.0]})
    meas, ok = C.risk_vs_size({"table3a_slicing": a, "attacks_ig": ig, "attacks_table3": t3})
    assert ok is True and "mnist 4.50 vs 8.50 dB (2 victims)" in meas     # the 50-step victim is not the GIA scale
    meas, ok = C.risk_vs_size({"table3a_slicing": a, "attacks_ig": ig, "attacks_table3": t3.assign(psnr=5.0)})
    assert ok is False
    assert "attacks_table3" in C.tables_needed()
    t1 = pd.DataFrame({"dataset": ["mnist", "mnist"], "column": ["ours (perturbed)", "ours, muted attacker"],
                       "psnr": [8.0, 60.0]})
    assert C.muted_table1({"table1_threat_model": t1})[1] is False


def test_missing_table_is_not_tested_and_other_errors_fail_loudly():
    out = C.evaluate({})
    assert list(out.columns) == ["claim", "section", "measured", "verdict", "key", "group"]
    assert len(out) == len(C.CLAIMS) and (out.verdict == "not tested").all()
    assert set(C.tables_needed()) >= {"table2a", "table2b", "table1_threat_model", "convergence", "table2a_acc", "fig2_table3de"}
    broken = GOOD.drop(columns="psnr_median")   # a renamed column is a bug, not "not tested"
    with pytest.raises(AttributeError):
        C.evaluate({"table2a": broken})


def test_every_verdict_is_one_of_the_four():
    out = C.evaluate({"table2a": GOOD})
    assert set(out.verdict) <= set(C.VERDICTS)
    assert out.set_index("claim").loc["Ours lowers DLG's PSNR far below the undefended one", "verdict"] == "supported"


def test_beyond_shrink_claim():
    t2 = campaign({("mnist", "none", 0): 0.90})
    f2 = campaign({("mnist", "uncompensated", 0): 0.89})
    cr = campaign({("mnist", "per-layer shrink", 0): 0.895})
    meas, ok = C.beyond_shrink_trains({"table2a_acc": t2, "fig2_table3de": f2, "compensation_rules": cr})
    assert ok is True and "shrink 0.895" in meas
    cr.loc[0, "final_accuracy"] = 0.88
    assert C.beyond_shrink_trains({"table2a_acc": t2, "fig2_table3de": f2, "compensation_rules": cr})[1] is False
    with pytest.raises(C.Inconclusive):
        C.beyond_shrink_trains({"table2a_acc": t2.assign(final_accuracy=0.1), "fig2_table3de": f2, "compensation_rules": cr})


def victims_table(psnr):
    """A table2_victims-shaped frame: psnr = {(dataset, defense, muted): [per-victim PSNR]}."""
    return pd.DataFrame([dict(table="A", dataset=ds, defense=d, muted=m, victim=v, psnr=p)
                         for (ds, d, m), ps in psnr.items() for v, p in enumerate(ps)])


def test_paired_claims_decide_on_the_victims():
    none = [70.0, 72.0, 65.0, float("inf"), 71.0, 69.0, 74.0, 60.0]
    ours = [10.0, 9.0, 20.0, 6.0, 13.0, 8.0, 8.0, 17.0]
    t = {"table2_victims": victims_table({("mnist", "none", False): none, ("mnist", "ours", False): ours,
                                          ("mnist", "ours", True): [o + 0.1 * (-1) ** i for i, o in enumerate(ours)]})}
    meas, ok = C.ours_protects_paired(t)
    assert ok is True and "8/8 victims" in meas and "p=0.00391" in meas   # 2^-8: every victim, an inf capped
    assert C.muted_fails_paired(t)[1] is True
    leak = {"table2_victims": victims_table({("mnist", "ours", False): ours,
                                             ("mnist", "ours", True): [o + 30 for o in ours]})}
    assert C.muted_fails_paired(leak)[1] is False
    few = {"table2_victims": victims_table({("mnist", "ours", False): ours[:4], ("mnist", "ours", True): ours[:4]})}
    assert C.verdict_of(next(c for c in C.CLAIMS if c.check.__code__.co_names == ("muted_fails_paired",)),
                        few)["verdict"] == "inconclusive"
    # only the victims both rows have are paired (GC-like rows have 4 of the 8)
    half = {"table2_victims": victims_table({("mnist", "none", False): none, ("mnist", "ours", False): ours[:6],
                                             ("cifar10", "none", False): none, ("cifar10", "ours", False): ours[:4]})}
    meas, ok = C.ours_protects_paired(half)
    assert ok is True and "6/6 victims" in meas and "not counted, too few victims: cifar10 (4 victims)" in meas


def test_frontier_goal_claim():
    pts = pd.DataFrame([dict(dataset="mnist", family="undefended", setting="none", acc=0.90, psnr_median=72.0),
                        dict(dataset="mnist", family="Ours", setting="Ours", acc=0.89, psnr_median=71.0),
                        dict(dataset="mnist", family="DP-G", setting="DP-G", acc=0.895, psnr_median=3.5),
                        dict(dataset="mnist", family="GC", setting="GC, p = 0.99", acc=0.60, psnr_median=5.0)])
    meas, ok = C.beyond_frontier_goal({"frontier_points": pts}, required=("mnist",))
    assert ok is True and meas == "mnist: 1 of 3 strengths (DP-G); on every one: DP-G"
    meas, ok = C.beyond_frontier_goal({"frontier_points": pts[pts.setting != "DP-G"]})
    assert ok is False and "0 of 2" in meas          # a measured dataset fails: not supported
    with pytest.raises(C.Inconclusive, match="not on the frontier yet: fmnist, cifar10"):
        C.beyond_frontier_goal({"frontier_points": pts})   # met where measured, two datasets missing
    with pytest.raises(C.Inconclusive):
        C.beyond_frontier_goal({"frontier_points": pts.assign(psnr_median=float("nan"))})
    # one configuration must meet it everywhere: DP-G on MNIST and GC on a second dataset is not the goal
    other = pts.assign(dataset="fmnist", setting=pts.setting.replace({"DP-G": "x"}))
    other.loc[other.setting == "GC, p = 0.99", ["acc", "psnr_median"]] = (0.895, 4.0)
    meas, ok = C.beyond_frontier_goal({"frontier_points": pd.concat([pts, other], ignore_index=True)},
                                      required=("mnist", "fmnist"))
    assert ok is False and "on every one: none" in meas
    # a dataset with rows but no point that has both halves is not on the frontier either
    half = pd.DataFrame([dict(dataset=d, family="undefended", setting="none", acc=0.44, psnr_median=47.0)
                         for d in ("fmnist", "cifar10")]
                        + [dict(dataset=d, family="DP-G", setting="DP-G", acc=float("nan"), psnr_median=5.3)
                           for d in ("fmnist", "cifar10")])
    with pytest.raises(C.Inconclusive, match="not on the frontier yet: fmnist, cifar10"):
        C.beyond_frontier_goal({"frontier_points": pd.concat([pts, half], ignore_index=True)})
    f = C.frontier_goal(pd.concat([pts, half], ignore_index=True))
    assert list(f) == ["mnist", "fmnist", "cifar10"] and list(f["mnist"]["meets"].setting) == ["DP-G"]
    assert f["cifar10"]["points"].empty and list(f["cifar10"]["attack_only"].setting) == ["DP-G"]
    assert len(f["mnist"]["all"]) == 3 and f["cifar10"]["base"] == 0.44
    assert f["mnist"]["meets_every_victim"] is None          # no worst-victim column: no strict reading


def test_frontier_goal_every_victim_reading():
    # a median below 15 dB can hide victims reconstructed in full: the strict reading needs the worst one below
    pts = pd.DataFrame([dict(dataset="mnist", family="undefended", setting="none", acc=0.90, psnr_median=72.0, psnr_max=80.0),
                        dict(dataset="mnist", family="DP-G", setting="DP-G", acc=0.895, psnr_median=3.5, psnr_max=4.5),
                        dict(dataset="mnist", family="Ours + jitter", setting="jitter", acc=0.899, psnr_median=7.2,
                             psnr_max=52.5),
                        dict(dataset="mnist", family="Ours + floor", setting="floor", acc=0.896, psnr_median=13.3,
                             psnr_max=15.0)])     # exactly at the bound: not below it
    f = C.frontier_goal(pts)["mnist"]
    assert list(f["meets"].setting) == ["DP-G", "jitter", "floor"]
    assert list(f["meets_every_victim"].setting) == ["DP-G"]
    meas, ok = C.beyond_frontier_goal({"frontier_points": pts}, required=("mnist",), every_victim=True)
    assert ok is True and meas == "mnist: 1 of 3 strengths (DP-G); on every one: DP-G"
    meas, ok = C.beyond_frontier_goal({"frontier_points": pts[pts.setting != "DP-G"]}, required=("mnist",),
                                      every_victim=True)
    assert ok is False and "0 of 2" in meas
    assert C.beyond_frontier_goal({"frontier_points": pts[pts.setting != "DP-G"]}, required=("mnist",))[1] is True
    with pytest.raises(C.Inconclusive, match="psnr_max"):
        C.beyond_frontier_goal({"frontier_points": pts.drop(columns="psnr_max")}, every_victim=True)


def _pts(rows, dataset="mnist"):
    return pd.DataFrame([dict(dataset=dataset, family=f, setting=s, acc=a, psnr_median=p) for f, s, a, p in rows])


def test_pareto_front_is_the_usual_front_without_tolerance_and_keeps_ties_within_it():
    pts = _pts([("undefended", "none", 0.900, 72.0), ("DP-G", "DP-G", 0.899, 3.6), ("Ours", "Ours, ratio 1.0", 0.890, 3.7),
                ("GC", "GC, p = 0.99", 0.60, 5.8), ("Ours", "Ours", 0.896, 71.6), ("PLD", "PLD", float("nan"), 47.0)])
    front = lambda **kw: list(pts[C.pareto_front(pts, **kw)].setting)
    # strict: the most accurate point and the most private one; Ours 1.0 and GC are dominated by DP-G
    assert front() == ["none", "DP-G"]
    # within 1 point and 1 dB nothing tells DP-G and Ours at ratio 1.0 apart; the undefended point is
    # no more accurate than DP-G and far less private
    assert front(acc_tol=0.01, psnr_tol=1.0) == ["DP-G", "Ours, ratio 1.0"]
    # a brute-force check of the definition on random points
    g = np.random.default_rng(0)
    rnd = pd.DataFrame(dict(acc=g.uniform(0.4, 0.9, 40).round(2), psnr_median=g.uniform(3, 70, 40).round(0)))
    for at, pt in ((0.0, 0.0), (0.02, 2.0)):
        got = C.pareto_front(rnd, acc_tol=at, psnr_tol=pt)
        for i, r in rnd.iterrows():
            dominated = any((s.acc >= r.acc - at and s.psnr_median < r.psnr_median - pt)
                            or (s.acc > r.acc + at and s.psnr_median <= r.psnr_median + pt) for _, s in rnd.iterrows())
            assert got[i] == (not dominated)
    assert C.pareto_front(rnd).any()   # a finite set always has a front
    with pytest.raises(FedshieldError, match="acc_tol and psnr_tol must be >= 0"):
        C.pareto_front(pts, psnr_tol=-1)


def test_frontier_dominance_takes_each_familys_most_private_strength_within_the_budget():
    pts = pd.concat([_pts([("undefended", "none", 0.90, 72.0), ("DP-G", "DP-G, variance 1e-4", 0.90, 25.0),
                           ("DP-G", "DP-G", 0.895, 3.6), ("GC", "GC", 0.87, 47.8), ("GC", "GC, p = 0.99", 0.60, 5.8),
                           ("Ours", "Ours, ratio 0.5", float("nan"), 66.0)]),
                     _pts([("undefended", "none", 0.44, 47.0), ("GC", "GC", 0.40, 9.7)], "cifar10")],
                    ignore_index=True)
    d = C.frontier_dominance(pts, budgets=(0.001, 0.01, 0.05, 1.0))
    at = lambda ds, b: d[(d.dataset == ds) & (d.budget == b)].set_index("family")
    assert list(at("mnist", 0.001).setting) == ["DP-G, variance 1e-4"]        # only it is within 0.1 point
    assert dict(at("mnist", 0.01).setting) == {"DP-G": "DP-G"}               # GC's best is 3 points behind
    assert dict(at("mnist", 0.05).setting) == {"DP-G": "DP-G", "GC": "GC"}
    assert dict(at("mnist", 1.0).setting) == {"DP-G": "DP-G", "GC": "GC, p = 0.99"}
    assert list(at("mnist", 1.0).lowest) == [True, False]
    assert "Ours" not in set(d.family)                                         # no accuracy, no point
    assert at("cifar10", 0.01).empty and list(at("cifar10", 0.05).setting) == ["GC"]
    with pytest.raises(FedshieldError, match="budgets must be accuracy fractions"):
        C.frontier_dominance(pts, budgets=(0.0,))


def test_paired_loss_pairs_by_seed_and_drops_unpaired_seeds():
    base = pd.Series({0: 0.90, 1: 0.87, 2: 0.89})
    point = pd.Series({2: 0.88, 0: 0.895, 5: 0.10})      # seed 5 has no undefended run: not compared
    d = C.paired_loss(base, point)
    assert list(d.index) == [0, 2] and np.allclose(d.to_numpy(), [0.5, 1.0])
    assert C.paired_loss(base, pd.Series(dtype=float)).empty
    with pytest.raises(FedshieldError, match="one accuracy per seed"):
        C.paired_loss(pd.Series([0.9, 0.8], index=[0, 0]), point)


# ------------------------------------------------------------------------------------- one place, named margins
FRONTIER = {"paired_loss", "frontier_goal", "pareto_front", "frontier_dominance", "beyond_frontier_goal"}


def _own_functions():
    tree = ast.parse(inspect.getsource(C))
    return [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name not in FRONTIER]


def test_every_margin_is_a_named_constant():
    """No check carries a bare number as a keyword default or compares against one: a margin is a
    module constant (the chapters quote it from there)."""
    bad = []
    for f in _own_functions():
        for d in f.args.defaults + [d for d in f.args.kw_defaults if d is not None]:
            if isinstance(d, ast.Constant) and isinstance(d.value, (int, float)) and not isinstance(d.value, bool):
                bad.append(f"{f.name}: default {d.value!r}")
        for node in ast.walk(f):
            if isinstance(node, ast.Compare):
                for c in node.comparators:
                    if isinstance(c, ast.Constant) and isinstance(c.value, (int, float)) and c.value not in (0, 1):
                        bad.append(f"{f.name}: compares with {c.value!r}")
    assert not bad, bad


def test_claim_keys_are_unique_and_groups_known():
    keys = [c.key for c in C.CLAIMS]
    assert all(keys) and len(keys) == len(set(keys))
    assert {c.group for c in C.CLAIMS} == set(C.GROUPS)
    with pytest.raises(FedshieldError, match="no claim with key"):
        C.claim("no such claim")
    out = C.evaluate({})
    assert list(out.key) == keys and list(out.group) == [c.group for c in C.CLAIMS]


def test_no_claim_is_decided_on_the_small_convnet_regime():
    # Table II[B]'s ACC column is a 30-round width-16 ConvNet: no claim reads it
    assert not any("small regime" in c.claim for c in C.CLAIMS)
    assert not hasattr(C, "ours_keeps_accuracy")


# ------------------------------------------------------------------------------------- every dataset, not any
def test_accuracy_claims_need_every_dataset():
    base = {("mnist", "none", 0): 0.90, ("fmnist", "none", 0): 0.80}
    # GC loses most on MNIST only: not "GC loses most of the accuracy"
    t = {"table2a_acc": campaign({**base, ("mnist", "gc", 0): 0.30, ("fmnist", "gc", 0): 0.78})}
    assert C.paper_scale_gc_loses(t)[1] is False
    t = {"table2a_acc": campaign({**base, ("mnist", "gc", 0): 0.30, ("fmnist", "gc", 0): 0.50})}
    assert C.paper_scale_gc_loses(t)[1] is True
    # DP at chance on one dataset only
    t = {"table2a_acc": campaign({**base, ("mnist", "dp-g", 0): 0.10, ("mnist", "dp-l", 0): 0.10,
                                  ("fmnist", "dp-g", 0): 0.10, ("fmnist", "dp-l", 0): 0.70})}
    assert C.paper_scale_dp_chance(t)[1] is False


@pytest.mark.parametrize("ours, ok", [(0.90 - C.ACC_TOLERANCE / 2, True), (0.90 - 2 * C.ACC_TOLERANCE, False),
                                      (0.99, True)])
def test_ours_keeps_accuracy_is_one_sided(ours, ok):
    # "loses under 2 points": an Ours run more accurate than undefended keeps accuracy
    t = {"table2a_acc": campaign({("mnist", "none", 0): 0.90, ("mnist", "ours", 0): ours})}
    assert C.paper_scale_ours_accuracy(t)[1] is ok


# ------------------------------------------------------------------------------------- the headline, PLD-muted
def _t2(psnr, muted=None):
    """A Table II frame from {(dataset, defense): psnr} and {(dataset, defense): muted psnr}."""
    rows = [dict(dataset=ds, defense=d, muted=False, psnr_median=v, acc=0.9) for (ds, d), v in psnr.items()]
    rows += [dict(dataset=ds, defense=d, muted=True, psnr_median=v, acc=0.9) for (ds, d), v in (muted or {}).items()]
    return pd.DataFrame(rows)


def test_psnr_reduction_against_the_lowest_baseline_brute_force():
    g = np.random.default_rng(1)
    for _ in range(20):
        vals = {("mnist", d): float(g.uniform(2, 40)) for d in ("none", "ours") + C.BASELINES}
        r = C.psnr_reduction(_t2(vals)).iloc[0]
        want = min(1 - vals[("mnist", "ours")] / vals[("mnist", b)] for b in C.BASELINES)
        assert r.reduction == pytest.approx(want)
        assert vals[("mnist", r.baseline)] == min(vals[("mnist", b)] for b in C.BASELINES)
    # undefended and muted rows are no baseline
    r = C.psnr_reduction(_t2({("mnist", "ours"): 4.0, ("mnist", "gc"): 20.0, ("mnist", "none"): 1.0},
                             muted={("mnist", "pld"): 2.0}))
    assert list(r.baseline) == ["gc"] and r.reduction.iloc[0] == pytest.approx(0.8)
    assert C.psnr_reduction(_t2({("mnist", "ours"): 4.0})).empty


def test_headline_claim_needs_every_baseline_on_every_dataset():
    low = C.HEADLINE_REDUCTION
    good = {(ds, d): v for ds in ("mnist", "cifar10") for d, v in
            [("none", 60.0), ("ours", 4.0)] + [(b, 4.0 / (1 - low) + 1.0) for b in C.BASELINES]}
    assert C.headline_reduction({"table2a": _t2(good)})[1] is True
    # one baseline as private as Ours on one dataset flips it
    bad = dict(good)
    bad[("cifar10", "dp-g")] = 4.5
    meas, ok = C.headline_reduction({"table2a": _t2(bad)})
    assert ok is False and "cifar10: Ours 4.0 vs dp-g 4.5 dB" in meas
    # exactly at the margin is not "more than"
    edge = {k: (4.0 / (1 - low) if k[1] in C.BASELINES else v) for k, v in good.items()}
    assert C.headline_reduction({"table2a": _t2(edge)})[1] is False
    # Table II[B] joins where it exists
    assert C.headline_reduction({"table2a": _t2(good), "table2b": _t2(bad)})[1] is False
    with pytest.raises(C.Inconclusive):
        C.headline_reduction({"table2a": _t2({("mnist", "none"): 60.0})})
    assert C.verdict_of(C.claim("headline"), {})["verdict"] == "not tested"


def test_the_papers_own_table2_does_not_show_the_headline():
    # the paper's Ours PSNR sits within a few percent of its DP columns: no 60 % reduction in its own numbers
    for tab in ("II[A]", "II[B]"):
        r = C.psnr_reduction(C.paper_table2(tab))
        assert len(r) == 3 and (r.reduction < C.HEADLINE_REDUCTION).all() and (r.reduction.abs() < 0.05).all()
    p = C.paper_table2("II[A]").set_index(["dataset", "defense", "muted"]).psnr_median
    assert p[("MNIST", "pld", True)] == pytest.approx(18.49) and p[("MNIST", "pld", False)] == pytest.approx(9.57)
    # the paper's own PLD-muted rows pass the PLD-muted claim's margin
    assert C.pld_muted_recovers({"t": C.paper_table2("II[A]")}, "t")[1] is True


def test_pld_muted_claim_flips_at_its_ratio():
    r = C.PLD_MUTED_RATIO
    t = _t2({("mnist", "pld"): 10.0, ("mnist", "none"): 70.0, ("fmnist", "pld"): 10.0},
            muted={("mnist", "pld"): 10.0 * r, ("fmnist", "pld"): 10.0 * r + 5})
    meas, ok = C.pld_muted_recovers({"table2a": t}, "table2a")
    assert ok is True and "mnist: PLD 10.0 -> muted 15.0 dB (undefended 70.0)" in meas
    t.loc[t.muted & (t.dataset == "mnist"), "psnr_median"] = 10.0 * r - 0.1
    assert C.pld_muted_recovers({"table2a": t}, "table2a")[1] is False
    with pytest.raises(C.Inconclusive):
        C.pld_muted_recovers({"table2a": t[~t.muted]}, "table2a")


# ------------------------------------------------------------------------------------- noise readings, shrink error
def test_noise_readings_claim():
    t2 = campaign({("mnist", "dp-g", 0): 0.89, ("mnist", "dp-l", 0): 0.89, ("mnist", "ours", 0): 0.89})
    nr = campaign({("mnist", "dp-g, update units", 0): 0.65, ("mnist", "dp-l, update units", 0): 0.64,
                   ("mnist", "ours, update units", 0): 0.75})
    meas, ok = C.noise_reading_dp_chance({"table2a_acc": t2, "noise_readings": nr})
    assert ok is False and "update units: dp-g 0.650, dp-l 0.640, ours 0.750" in meas
    # a reading that takes DP to chance while Ours learns supports it
    hit = nr.assign(final_accuracy=[0.10, 0.10, 0.75])
    assert C.noise_reading_dp_chance({"table2a_acc": t2, "noise_readings": hit})[1] is True
    # ... but not when Ours falls with it
    both = nr.assign(final_accuracy=[0.10, 0.10, 0.10])
    assert C.noise_reading_dp_chance({"table2a_acc": t2, "noise_readings": both})[1] is False
    assert "noise_readings" in C.tables_needed()


def test_shrink_error_claim_needs_every_round():
    e = pd.DataFrame([dict(round=r, draw=d, method=m, error=v) for r in (0, 100) for d in (0, 1)
                      for m, v in (("per-layer shrink", 0.3), ("paper (global, Q = 6)", 0.4), ("perturbed", 0.4))])
    assert C.beyond_shrink_error({"compensation_rules_error": e})[1] is True
    e.loc[(e["round"] == 100) & (e.method == "per-layer shrink"), "error"] = 0.5
    meas, ok = C.beyond_shrink_error({"compensation_rules_error": e})
    assert ok is False and "round 100: 0.500 vs 0.400" in meas
    with pytest.raises(C.Inconclusive):
        C.beyond_shrink_error({"compensation_rules_error": e[e.method == "perturbed"]})


def test_committed_default_verdicts():
    """The verdicts the summary chapter's sentences rest on, on the committed tables (a campaign that
    flips one fails here and in the chapter's guard cells)."""
    from fedshield.report import load_table
    from fedshield.book.findings import committed_results
    t = {n: load_table(n, "default", root=committed_results()) for n in C.tables_needed()}
    v = {c.key: C.verdict_of(c, t)["verdict"] for c in C.CLAIMS if c.group != "beyond"}
    assert v["headline"] == "NOT supported" and v["pld_muted_dlg"] == "supported"
    assert v["protects_dlg"] == "supported" and v["muted_dlg"] == "NOT supported"
    assert "not tested" not in v.values()
