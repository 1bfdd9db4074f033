"""Chapter 9's discussion (fedshield.summary) on small hand-made tables: the numbers it must print,
the verdicts and their margins, "not run yet" for what is missing, no ACC from a short cell."""
import os
import re

import pandas as pd
import pytest

from fedshield import claims as C
from fedshield import summary as S
from fedshield.errors import FedshieldError
from fedshield.experiments import attack_campaign as A


# ------------------------------------------------------------------------------------- builders
def fedavg_rows(dataset, accs, *, seeds=(0, 1, 2), rounds=2000, time=0.1):
    """One campaign row per seed and row name of ``accs`` ({row: final accuracy})."""
    return [dict(dataset=dataset, row=r, defense=r, seed=s, rounds=rounds, final_accuracy=a, mean_round_time=time,
                 eval_rounds=[0, rounds // 2, rounds], accuracy=[0.1, a / 2, a], defense_round_start=0.0,
                 defense_client=0.0, defense_server=0.0)
            for r, a in accs.items() for s in seeds]


def victim_rows(plan, dataset, psnr, *, victims=None, detect=None, ssim=0.5):
    """Rows of ``plan``'s cells on ``dataset`` ({row: PSNR}), every planned victim unless ``victims``."""
    out = []
    for c in A.attack_plan(plan):
        if c.config.dataset != dataset or c.row not in psnr:
            continue
        for v in range(c.config.images if victims is None else victims):
            out.append(dict(cell=c.key(), dataset=dataset, row=c.row, victim=v, psnr=psnr[c.row], ssim=ssim,
                            detect_precision=(detect if c.config.muted else None), seconds=120.0))
    return out


def long3(rows):
    """A Table III long frame from ``[(table, dataset, row, psnr, victims)]``."""
    return pd.DataFrame([dict(table=t, dataset=d, row=r, metric=m, value=v if m == "PSNR" else 0.1, q1=v, q3=v,
                              victims=n) for t, d, r, v, n in rows for m in ("PSNR", "SSIM")],
                        columns=["table", "dataset", "row", "metric", "value", "q1", "q3", "victims"])


MISSING_COLS = ["table", "dataset", "row", "victims", "planned"]


# ------------------------------------------------------------------------------------- missing
def test_every_item_renders_without_any_table_and_says_not_run_yet():
    text = S.discussion({})
    numbers = [int(m) for m in re.findall(r"^(\d+)\. \*\*", text, flags=re.M)]
    assert numbers == list(range(1, len(S.ITEMS) + 1)) == list(range(1, 17))
    assert S.NOT_RUN in text
    assert "nan" not in text.lower().replace("nan ", "")  # no NaN leaks as a number
    assert "**supported**" not in text and "**NOT supported**" not in text   # no verdict without numbers


def test_load_tables_from_an_empty_results_folder(tmp_path):
    before = os.environ.get("FEDSHIELD_RESULTS")
    tabs = S.load_tables("default", results=tmp_path)
    assert os.environ.get("FEDSHIELD_RESULTS") == before          # no environment override
    assert all(tabs[n] is None for n in S.TABLES)
    assert tabs["table3_long"].empty
    assert len(tabs["table3_missing"]) == len(A.attack_plan("attacks_table3")) + len(
        [c for c in A.attack_plan("attacks_ig") if c.row == "Ours"])
    assert S.NOT_RUN in S.item_slicing(tabs)


def test_load_tables_counts_the_victims_of_a_partial_table3_cell(tmp_path):
    # table3_missing's victim counts read attacks_table3, which load_tables loads (it did not before session 11,
    # so a cell with some victims done was listed with none)
    from fedshield.report import save_table
    save_table("attacks_table3", pd.DataFrame(victim_rows("attacks_table3", "mnist", {"Ours": 4.0}, victims=1)).assign(
        x_true=None, x_rec=None),
               "default", root=tmp_path)
    miss = S.load_tables("default", results=tmp_path)["table3_missing"]
    t3 = miss[miss.dataset == "MNIST"].merge(pd.DataFrame({"row": [c.setting for c in A.attack_plan("attacks_table3")
                                                                   if c.config.dataset == "mnist"]}), on="row")
    assert len(t3) and (t3.victims == 1).all() and (t3.planned == 2).all()


def test_load_tables_reads_the_folder_it_is_given(tmp_path):
    from fedshield.report import save_table
    save_table("table2a_acc", pd.DataFrame(fedavg_rows("mnist", {"none": 0.5})), "default", root=tmp_path)
    tabs = S.load_tables("default", results=tmp_path)
    assert tabs["table2a_acc"] is not None and len(tabs["table2a_acc"]) == 3
    assert "undefended 50.0 % (3 seeds)" in S.item_compensation(tabs)


# ------------------------------------------------------------------------------------- FedAvg
def acc_tables(ours=0.89, gc=0.50, dp=0.10):
    rows = []
    for ds in ("mnist", "fmnist"):
        rows += fedavg_rows(ds, {"none": 0.90, "ours": ours, "gc": gc, "dp-g": dp, "dp-l": dp + 0.01})
    return {"table2a_acc": pd.DataFrame(rows)}


def test_accuracy_item_prints_the_means_and_derives_the_verdicts():
    text = S.item_accuracy(acc_tables())
    assert "90.0 / 89.0 / 50.0 / 10.0 / 11.0 % on MNIST" in text
    assert "keeps accuracy (within 2 points of undefended) is **supported**" in text
    assert "(more than 25 points; the paper: 55.2 on MNIST) is **supported**" in text
    assert "DP falls to chance (below 15 %; the paper: 10.37 %) is **supported**" in text
    text = S.item_accuracy(acc_tables(ours=0.80, gc=0.85, dp=0.88))
    assert "keeps accuracy (within 2 points of undefended) is **NOT supported**" in text
    assert "is **NOT supported**: GC costs at most 5.0 points" in text
    assert "is **NOT supported**: DP ends at 88.0 % at the least" in text


def test_a_cell_at_fewer_rounds_is_not_quoted_as_acc():
    cif = pd.DataFrame(fedavg_rows("cifar10", {"none": 0.44, "ours": 0.43}, seeds=(0,), time=2.0)
                       + fedavg_rows("cifar10", {"pld": 0.30}, seeds=(0,), rounds=300, time=5.0))
    tabs = {"table2a_cifar": cif}
    assert S.fedavg(tabs, "table2a_cifar", "cifar10", "none") == (pytest.approx(0.44), 1)
    v, n = S.fedavg(tabs, "table2a_cifar", "cifar10", "pld")
    assert n == 0 and v != v
    text = S.cifar_sentence(tabs)
    assert "undefended 44.0 % (1 seed; paper 54.15 %)" in text
    assert "PLD 30.0 % after only 300 rounds" in text and "PLD 30.0 % (1 seed" not in text
    assert "not run yet: GC, DP-G, DP-L" in text
    # a short cell in another FedAvg table is left out of the mean as well
    short = pd.DataFrame(fedavg_rows("mnist", {"none": 0.9}, seeds=(0, 1)) + fedavg_rows("mnist", {"none": 0.2},
                                                                                          seeds=(2,), rounds=100))
    assert S.fedavg({"table2a_acc": short}, "table2a_acc", "mnist", "none") == (pytest.approx(0.9), 2)


def test_cifar_pattern_uses_its_margins():
    same = pd.DataFrame(fedavg_rows("cifar10", {"none": 0.44, "ours": 0.435, "gc": 0.40, "dp-g": 0.44}, seeds=(0,)))
    assert "The same pattern as on MNIST" in S.cifar_sentence({"table2a_cifar": same})
    diff = pd.DataFrame(fedavg_rows("cifar10", {"none": 0.44, "ours": 0.40, "gc": 0.40, "dp-g": 0.44}, seeds=(0,)))
    text = S.cifar_sentence({"table2a_cifar": diff})
    assert "Not the same pattern" in text and "within 4.0 points of undefended" in text


# ------------------------------------------------------------------------------------- Table III
def test_slicing_verdict_with_its_margin_and_the_missing_datasets():
    tabs = {"table3_long": long3([("III[A]", "MNIST", "sensitivity", 9.0, 4), ("III[A]", "MNIST", "layer size", 14.0, 2)])}
    text = S.item_slicing(tabs)
    assert "MNIST 9.0 dB (4 victims) vs 14.0 dB (2 victims) (the paper: 9.83 vs 14.51 dB)" in text
    assert "**supported**" in text
    assert "Fashion-MNIST, CIFAR-10: not run yet" in text
    tabs = {"table3_long": long3([("III[A]", "MNIST", "sensitivity", 9.0, 4), ("III[A]", "MNIST", "layer size", 9.5, 2)])}
    assert "**NOT supported**" in S.item_slicing(tabs)


def test_slicing_verdict_is_taken_on_the_shared_victims():
    # the cells' medians (4 vs 2 victims) say "supported"; on the 2 test images both slicings were attacked on
    # the two are 0.1 dB apart, and the verdict follows the shared victims, as claims.risk_vs_size does
    at = dict(dataset="mnist", iterations=1000, width=64, muted=False)
    ig = pd.DataFrame([dict(at, row="Ours", index=i, psnr=p) for i, p in enumerate([13.9, 14.1, 4.0, 5.0])])
    t3 = pd.DataFrame([dict(at, table="III[A]", setting="layer size", row="Ours", index=i, psnr=p)
                       for i, p in enumerate([14.0, 14.0])])
    tabs = {"table3_long": long3([("III[A]", "MNIST", "sensitivity", 9.0, 4), ("III[A]", "MNIST", "layer size", 14.0, 2)]),
            "attacks_ig": ig, "attacks_table3": t3,
            "table3a_slicing": pd.DataFrame({"setting": ["ours, risk slicing", "ours, size slicing"], "psnr": [7.0, 7.0]})}
    text = S.item_slicing(tabs)
    assert "MNIST 9.0 dB (4 victims) vs 14.0 dB (2 victims), on the 2 shared victims 14.0 vs 14.0 dB" in text
    assert "(at most 0.1 dB apart victim by victim)" in text
    assert "**NOT supported**" in text
    assert C.risk_vs_size(tabs)[1] is False


def test_scale_item_lists_the_table3_cells_still_missing():
    tabs = {"table3_long": long3([("III[A]", "MNIST", "layer size", 4.0, 2), ("III[E]", "MNIST", "clipping", 4.2, 2),
                                  ("III[A]", "CIFAR-10", "layer size", 6.0, 1)]),
            "table3_missing": pd.DataFrame([("III[A]", "CIFAR-10", "layer size", 1, 2),
                                            ("III[E]", "CIFAR-10", "clipping", 0, 2)], columns=MISSING_COLS)}
    text = S.item_scale(tabs)
    assert "MNIST 2 of 2 cells complete" in text
    assert "CIFAR-10 0 of 2 cells complete (missing: III[A] layer size (1 of 2 victims), III[E] clipping)" in text


def test_root_set_item_quotes_the_gia_sweeps():
    rows = [("III[B]", "MNIST", f"root size {n}", 4.0 + 0.1 * i, 2) for i, n in enumerate((50, 100, 200, 300, 400))]
    text = S.item_root_set({"table3_long": long3(rows)})
    assert "III[B] MNIST 4.0-4.4 dB over root sizes 50-400 (5 of 5 rows, 2 victims each" in text
    assert "III[C] MNIST not run yet" in text
    assert "So far neither changes the attack's PSNR" in text      # III[C] and CIFAR-10 not run: "so far"
    every = rows + [(t, ds, f"{what} {x}", 4.0, 2) for t, what, xs in (("III[B]", "root size", (50, 100, 200, 300, 400)),
                                                                       ("III[C]", "root bias", (0.1, 0.2, 0.4, 0.6, 1.0)))
                    for ds in ("MNIST", "CIFAR-10") for x in xs if not (t == "III[B]" and ds == "MNIST")]
    text = S.item_root_set({"table3_long": long3(every)})
    assert "(5 of 5 rows" in text and "III[C] CIFAR-10 4.0 dB over root bias" in text
    assert ". Neither changes the attack's PSNR" in text and "So far" not in text
    rows[0] = ("III[B]", "MNIST", "root size 50", 9.0, 2)
    assert "changes the attack's PSNR by more than 1 dB" in S.item_root_set({"table3_long": long3(rows)})


# ------------------------------------------------------------------------------------- attacks
def dlg_tables(muted=65.0):
    psnr = {"none": 70.0, "Ours": 10.0, "Ours-muted": muted, "PLD-muted": 60.0, "GC": 5.0, "DP-G": 5.0, "DP-L": 5.0,
            "PLD": 5.0}
    return {"attacks_dlg": pd.DataFrame(victim_rows("attacks_dlg", "mnist", psnr, detect=1.0))}


def test_muted_and_attack_items_quote_the_victims():
    tabs = dlg_tables()
    assert S.complete_datasets(tabs) == ["mnist"]
    text = S.item_muted(tabs)
    assert "detection precision MNIST 1.00" in text and "MNIST 65.0 dB against 70.0 undefended" in text
    text = S.item_attacks(tabs)
    assert "MNIST 8/8 victims" in text and "MNIST 65.0 dB (Ours 10.0, undefended 70.0)" in text
    assert "less than GC, DP-G and PLD do on MNIST" in text
    # one victim missing: the dataset is not complete and its numbers are not quoted
    t = tabs["attacks_dlg"]
    cut = {"attacks_dlg": t.drop(t.index[-1])}
    assert S.complete_datasets(cut) == []
    assert S.NOT_RUN in S.item_attacks(cut)


def test_ig_item_counts_the_victims_and_lists_only_rows_that_ran():
    t = pd.DataFrame(victim_rows("attacks_ig", "cifar10", {"none": 20.0, "Ours": 6.0}, victims=1))
    tabs = {"attacks_ig": t}
    done, total = S.plan_status(tabs, "attacks_ig")
    assert done == 2
    text = S.item_ig(tabs)
    assert f"2 of {total}" in text
    assert "CIFAR-10: none 20.0 dB (SSIM 0.50, 1 victim); Ours 6.0 dB (SSIM 0.50, 1 victim)" in text
    assert "Ours-muted" not in text.split("Medians over")[1].split("planned")[0]
    assert "MNIST:" not in text


def test_frontier_item_lists_the_points_that_meet_the_goal():
    fr = pd.DataFrame([dict(dataset="mnist", family="undefended", setting="undefended", acc=0.90, psnr_median=70.0),
                       dict(dataset="mnist", family="DP-G", setting="DP-G", acc=0.895, psnr_median=4.0),
                       dict(dataset="mnist", family="Ours", setting="Ours", acc=0.89, psnr_median=60.0)])
    text = S.item_frontier({"frontier_points": fr})
    assert "MNIST (2 points): DP-G (89.5 %, 4.0 dB)" in text and "Ours (89.0" not in text
    assert "At equal accuracy (within 2 points), the most private: MNIST DP-G (4.0 dB)." in text
    assert "CIFAR-10 is not on the frontier yet" in text
    assert "worst victim" not in text                  # no psnr_max column: nothing to say about it
    # a point whose median meets the goal but whose worst victim does not is named with that victim
    strict = fr.assign(psnr_max=[75.0, 4.5, 70.0])
    strict = pd.concat([strict, pd.DataFrame([dict(dataset="mnist", family="Ours + jitter", setting="jitter", acc=0.899,
                                                   psnr_median=7.2, psnr_max=52.5)])], ignore_index=True)
    text = S.item_frontier({"frontier_points": strict})
    assert "DP-G (89.5 %, 4.0 dB), jitter (89.9 %, 7.2 dB, its worst victim 52.5 dB)" in text
    assert S.NOT_RUN in S.item_frontier({})
    # CIFAR-10: PLD's paper-setting cell is shorter than 2000 rounds by design, the other missing one is not run yet
    cif = pd.DataFrame([dict(dataset="cifar10", family="undefended", setting="none", acc=0.44, psnr_median=47.0),
                        dict(dataset="cifar10", family="DP-G", setting="DP-G", acc=0.438, psnr_median=5.3),
                        dict(dataset="cifar10", family="PLD", setting="PLD", acc=float("nan"), psnr_median=47.8),
                        dict(dataset="cifar10", family="GC", setting="GC, p = 0.99", acc=float("nan"), psnr_median=8.4)])
    text = S.item_frontier({"frontier_points": pd.concat([fr, cif], ignore_index=True)})
    assert "CIFAR-10 has 1 of 3 points with both halves; 1 strength without a FedAvg cell yet" in text and "(GC, p = 0.99)" in text
    assert "PLD's CIFAR-10 cell runs 300 rounds by design" in text
    text = S.item_frontier({"frontier_points": pd.concat([fr, cif[cif.setting != "GC, p = 0.99"]], ignore_index=True)})
    assert "without a FedAvg cell" not in text and "1 of 2 points with both halves; PLD's CIFAR-10 cell" in text


def test_convergence_item_derives_its_ratios():
    c = pd.DataFrame([dict(sigma=0.1, compensated=False, holds=True, psi=1.0, psi_theory=1.0),
                      dict(sigma=0.1, compensated=True, holds=True, psi=0.25, psi_theory=1.0),
                      dict(sigma=0.2, compensated=False, holds=False, psi=4.4, psi_theory=4.0),
                      dict(sigma=0.2, compensated=True, holds=True, psi=2.0, psi_theory=4.0)])
    text = S.item_convergence({"convergence": c})
    assert "holds in 3 of 4 settings" in text and "within 10.0 %" in text and "2.2-4.0 times" in text


def test_standalone_renders_one_item_as_its_own_paragraph():
    text = S.standalone(S.item_slicing, {})
    assert text.startswith("**Risk-based vs size-based slicing (Table III[A])**")
    assert "\n   " not in text and S.NOT_RUN in text
    assert text == S.item_slicing({})[3:].replace("\n   ", "\n")
    with pytest.raises(FedshieldError, match="not an item"):
        S.standalone(len, {})


def test_threat_model_discussion_quotes_table1_and_the_label_aware_attacker():
    dlg = victim_rows("attacks_dlg", "mnist", {"none": 70.0, "Ours": 10.0, "Ours-muted": 65.0}, detect=1.0)
    dlg += victim_rows("attacks_dlg", "cifar100", {"none": 50.0, "Ours": 7.0, "Ours-muted": 6.5}, detect=0.25)
    tabs = {"attacks_dlg": pd.DataFrame(dlg)}
    text = S.threat_model_discussion(tabs)
    assert "datasets run so far: MNIST, CIFAR-100." in text
    assert "median MNIST 70.0 dB (SSIM 0.50); CIFAR-100 50.0 dB" in text
    assert "2 of 10 equal-risk slices" in text and "the other 80 % of the gradient" in text   # the paper's ratio 0.2
    assert "precision\n  MNIST 1.00, CIFAR-100 0.25" in text
    # CIFAR-100's detector fails (precision < DETECTS); the label-aware cell is quoted once it is complete
    assert "Where the detector fails (CIFAR-100" in text and "label-aware" not in text
    la = victim_rows("attacks_label_aware", "cifar100", {"Ours-muted, label-aware": 45.0}, detect=1.0)
    tabs["attacks_label_aware"] = pd.DataFrame(la)
    assert "(CIFAR-100 precision 1.00, 45.0 dB)" in S.threat_model_discussion(tabs)
    assert "recovers 45.0 dB" in S._label_aware(tabs)   # chapter 9's item 3 reads the same cell (own helper)
    tabs["attacks_label_aware"] = pd.DataFrame(la[:-1])          # one victim short: not quoted
    assert "label-aware" not in S.threat_model_discussion(tabs)
    assert S.NOT_RUN in S.threat_model_discussion({})


def test_formal_privacy_item_reads_the_accounting():
    import re

    from fedshield.accounting import gaussian_mu, gdp_epsilon
    text = S.item_formal_privacy({})
    assert S.item_formal_privacy in S.ITEMS and "no epsilon exists" in text
    one, k, run = re.search(r"one round is epsilon = (\S+) and the (\d+) rounds a client takes part in on average (\S+);", text).groups()
    one, k, run = float(one), int(k), float(run)
    assert k == 200                                    # 2000 rounds, 10 of 100 clients a round
    # one round at the paper's noise (std 0.1) and bound (13.05): mu = 2 * 13.05 / 0.1 = 261, epsilon ~ mu^2 / 2
    assert one == pytest.approx(gdp_epsilon(261.0, 1e-5), rel=1e-3) and 261 ** 2 / 2 < one < 261 ** 2 / 2 + 5 * 261
    # k rounds compose to sqrt(k) * mu, so epsilon grows about k times
    assert run == pytest.approx(gdp_epsilon(gaussian_mu(13.05, 0.1, 200), 1e-5), rel=1e-3) and run > 150 * one
