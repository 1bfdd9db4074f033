"""The summary chapter's claim checks (fedshield.claims) on small hand-made tables."""
import pandas as pd
import pytest

from fedshield import claims as C


def table2(psnr, acc, muted_psnr=None):
    """A Table II-shaped frame: psnr/acc = {(dataset, defense): value}; muted rows for 'ours'."""
    rows = [dict(dataset=ds, defense=d, muted=False, psnr_mean=v, acc=acc[(ds, d)]) for (ds, d), v in psnr.items()]
    for ds, v in (muted_psnr or {}).items():
        rows.append(dict(dataset=ds, defense="ours", muted=True, psnr_mean=v, acc=acc[(ds, "ours")]))
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
    meas, ok = C.ours_keeps_accuracy(t, "table2a")
    assert ok is True and "cifar10: at chance, not counted" in meas
    assert C.muted_fails(t, "table2a")[1] is True
    worse = GOOD.copy()
    worse.loc[(worse.defense == "ours") & ~worse.muted, "acc"] = [0.70, 0.10]
    worse.loc[(worse.defense == "ours") & worse.muted, "psnr_mean"] = [50.0, 8.0]
    t = {"table2a": worse}
    assert C.ours_keeps_accuracy(t, "table2a")[1] is False
    assert C.muted_fails(t, "table2a")[1] is False
    weak = GOOD.copy()
    weak.loc[weak.defense == "none", "psnr_mean"] = [12.0, 11.0]
    assert C.undefended_leaks({"table2a": weak}, "table2a")[1] is False
    assert C.ours_protects({"table2a": weak}, "table2a")[1] is False


def test_accuracy_at_chance_is_inconclusive_not_supported():
    chance = GOOD.assign(acc=0.1)
    row = verdict("Ours keeps test accuracy close to undefended (LeNet)", {"table2a": chance})
    assert row["verdict"] == "inconclusive" and "chance" in row["measured"]
    fig2 = pd.DataFrame({"variant": ["uncompensated", "compensated"], "seed": [0, 0], "final_accuracy": [0.1, 0.1]})
    row = verdict("Compensation improves accuracy over uncompensated training", {"fig2_compensation": fig2})
    assert row["verdict"] == "inconclusive"


def test_seed_claim():
    d = pd.DataFrame({"table": ["A", "A", "A", "A"], "dataset": ["MNIST", "MNIST", "FMNIST", "FMNIST"],
                      "defense": ["none", "Ours", "none", "Ours"], "seeds": 3, "acc_mean": [0.9, 0.88, 0.8, 0.6]})
    meas, ok = C.ours_keeps_accuracy_seeds({"table2_acc_seeds": d})
    assert ok is False and "mean over 3 seeds" in meas and "[A] FMNIST: 0.80 vs 0.60" in meas
    meas, ok = C.ours_keeps_accuracy_seeds({"table2_acc_seeds": d.iloc[:2]})
    assert ok is True


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
    fig2 = pd.DataFrame({"variant": ["uncompensated"] * 2 + ["compensated"] * 2, "seed": [0, 1, 0, 1],
                         "final_accuracy": [0.80, 0.82, 0.70, 0.74]})
    meas, ok = C.comp_helps_accuracy({"fig2_compensation": fig2})
    assert ok is False and "0.720 vs uncompensated 0.810" in meas


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
    assert C.risk_vs_size({"table3a_slicing": a})[1] is False
    t1 = pd.DataFrame({"dataset": ["mnist", "mnist"], "column": ["ours (perturbed)", "ours, muted attacker"],
                       "psnr": [8.0, 60.0]})
    assert C.muted_table1({"table1_threat_model": t1})[1] is False


def test_missing_table_is_not_tested_and_other_errors_fail_loudly():
    out = C.evaluate({})
    assert list(out.columns) == ["claim", "section", "measured", "verdict"]
    assert len(out) == len(C.CLAIMS) and (out.verdict == "not tested").all()
    assert set(C.tables_needed()) >= {"table2a", "table2b", "table1_threat_model", "convergence", "fig2_compensation"}
    broken = GOOD.drop(columns="psnr_mean")   # a renamed column is a bug, not "not tested"
    with pytest.raises(AttributeError):
        C.evaluate({"table2a": broken})


def test_every_verdict_is_one_of_the_four():
    out = C.evaluate({"table2a": GOOD})
    assert set(out.verdict) <= set(C.VERDICTS)
    assert out.set_index("claim").loc["Ours lowers DLG's PSNR far below the undefended one", "verdict"] == "supported"
