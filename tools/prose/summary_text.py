"""Rewrite items 1, 2, 6, 7, 9 of the summary's discussion (and add 12, 13) from the committed tables."""
import pathlib
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
import sys
sys.path.insert(0, str(ROOT))
import numpy as np, pandas as pd
from fedshield.reproduce import read_notebook, write_notebook
from fedshield.report import load_table, paper_table

D = "default"
t2 = load_table("table2a_acc", D)
pld = load_table("table2a_pld", D)
nr = load_table("noise_readings", D)
_cif = load_table("table2a_cifar", D)
from fedshield.report import accuracy_beside_paper
CIF_TXT = ("CIFAR-10 at the paper's partition (1000 clients, 200 a round; about 2 s a round on one\n   idle core, "
           "1-2 hours a cell; PLD about 2.7 times that, so it runs 300 rounds), after 2000 rounds: "
           + accuracy_beside_paper(_cif, "cifar10") + ".")
_pc = paper_table("II[A]").query("metric == 'ACC' and dataset == 'CIFAR-10'").set_index("row").value
from fedshield.experiments.campaign import at_paper_scale
_ca = {} if _cif is None else at_paper_scale(_cif).groupby("row").final_accuracy.mean().to_dict()
if {"none", "ours", "gc", "dp-g"} <= set(_ca):
    _same = abs(_ca["none"] - _ca["ours"]) < 0.02 and abs(_ca["none"] - _ca["dp-g"]) < 0.02 and _ca["none"] - _ca["gc"] < 0.10
    CIF_TXT += (f" {'The same pattern' if _same else 'Not the same pattern'} as on MNIST: Ours and DP-G within "
                f"{100 * max(abs(_ca['none'] - _ca['ours']), abs(_ca['none'] - _ca['dp-g'])):.1f} points of undefended, "
                f"GC {100 * (_ca['none'] - _ca['gc']):.1f} points below (the paper: {_pc['none'] - _pc['GC']:.1f}).")
f2 = load_table("fig2_table3de", D)
cr = load_table("compensation_rules", D)
ce = load_table("compensation_rules_error", D)
art = load_table("art_benchmark", D).set_index("variant")
cal = load_table("calibration", D)

def m(t, ds, row):
    if t is None: return float("nan"), 0
    v = t[(t.dataset == ds) & (t.row == row)].final_accuracy
    return (v.mean(), len(v)) if len(v) else (float("nan"), 0)
def pct(x): return f"{100 * x:.1f}"
def seeds(t, ds, rows):
    n = [m(t, ds, r)[1] for r in rows]
    return f"{min(n)}" if min(n) == max(n) else f"{min(n)}-{max(n)}"

mn = {r: m(t2, "mnist", r)[0] for r in ("none", "ours", "gc", "dp-g", "dp-l")}
fm = {r: m(t2, "fmnist", r)[0] for r in ("none", "ours", "gc", "dp-g", "dp-l")}
pld_mn, pld_fm = m(pld, "mnist", "pld"), m(pld, "fmnist", "pld")
o = t2[t2.defense == "ours"]
none_t = t2[t2.defense == "none"].set_index(["dataset", "seed"]).mean_round_time
share = [(r.defense_round_start + r.defense_client + r.defense_server) / none_t[(r.dataset, r.seed)]
         for r in o.itertuples() if (r.dataset, r.seed) in none_t.index]
share = 100 * float(np.mean(share))
unc = m(f2, "mnist", "uncompensated")
pvar = m(f2, "mnist", "paper variance")
q = {k: m(f2, "mnist", f"Q={k}") for k in (1, 6, 12, 20)}
clip = m(f2, "mnist", "clipping")
shrink, hard = m(cr, "mnist", "per-layer shrink"), m(cr, "mnist", "per-layer hard")
r2 = {d: m(nr, "mnist", f"{d}, update units")[0] for d in ("ours", "dp-g", "dp-l")}
r3 = {d: m(nr, "mnist", f"{d}, every local step")[0] for d in ("dp-g", "dp-l")}
last = ce[ce["round"] == ce["round"].max()].groupby("method").error.mean()
lastcal = cal.sort_values("round").groupby(["dataset", "reading"]).last().accuracy

def maybe(v, n, fmt=pct):
    return "not run yet" if n == 0 else f"{fmt(v)} % ({n} seed{'s' if n > 1 else ''})"

items = {}
items[1] = f"""1. **Scale.** Accuracy and round time are at the paper's scale: 2000 FedAvg rounds at its partition
   and local training ({{doc}}`08_paper_scale`). The attacks are not: the `default` numbers of the PSNR
   columns come from tens of optimiser steps, against the paper's 500 L-BFGS / 1000 Adam steps (each
   chapter prints its scale). The PSNR of a failed reconstruction is about the same at any scale (the
   paper's defended columns sit at 9-10 dB, ours at 5-10 dB)."""
items[2] = f"""2. **Accuracy at the paper's scale** (Chapter 8; MNIST and Fashion-MNIST, the mean over
   {seeds(t2, 'mnist', ['none', 'ours'])} seeds). The paper states SGD 1e-2, 2 local epochs and a "batch size of 1-20", and reads
   literally (full local batch, PyTorch's initialisation) the sigmoid LeNet never leaves chance.
   The calibration search over what the paper leaves open puts DLG's initialisation and local
   mini-batches of 1 closest: undefended {pct(lastcal[('mnist', 'DLG init, 4 conv, batch 1')])} % on MNIST (paper 91.69 %) and
   {pct(lastcal[('fmnist', 'DLG init, 4 conv, batch 1')])} % on Fashion-MNIST (paper 91.80 %; no reading comes within 10 points, and
   every reading puts Fashion-MNIST below MNIST where the paper has it above). In that setting:
   undefended / Ours / GC / DP-G / DP-L end at {pct(mn['none'])} / {pct(mn['ours'])} / {pct(mn['gc'])} / {pct(mn['dp-g'])} / {pct(mn['dp-l'])} % on MNIST
   (paper 91.69 / 90.43 / 36.52 / 10.37 / 10.21 %) and {pct(fm['none'])} / {pct(fm['ours'])} / {pct(fm['gc'])} / {pct(fm['dp-g'])} / {pct(fm['dp-l'])} % on
   Fashion-MNIST; PLD (16-probe score) {maybe(*pld_mn)} on MNIST, {maybe(*pld_fm)} on Fashion-MNIST. So the
   paper's claim that its defense keeps accuracy is **supported** at its scale: the 60-round regime of
   earlier versions of this book, where Ours cost 0.10, measured early training. Its claims that GC
   loses most of the accuracy and DP falls to chance are **not**: at the variance it states, they cost
   a few points (GC) or nothing (DP). {CIF_TXT}"""
items[6] = f"""6. **Compensation: the single aggregate and training.** With our derived variance compensation
   lowers the error of a single aggregate (Chapter 4, (a)); with the paper's $m^2$-too-large variance
   it keeps the noise and drops the strongest signal direction. In training at 2000 rounds (Fig. 2,
   MNIST): undefended {pct(mn['none'])} %, perturbed without compensation {maybe(*unc)}, with compensation
   {pct(mn['ours'])} %, with the paper's variance {maybe(*pvar)}. The projection's effect on training is
   within the seed spread at this scale; the paper's Fig. 2 claim that compensation *improves*
   convergence has the verdict above. Table III[D] (GIA setting): Q = 1 / 6 / 12 / 20 give
   {' / '.join('-' if q[k][1] == 0 else pct(q[k][0]) for k in (1, 6, 12, 20))} % (paper 82.92 / 86.87 / 86.99 / 86.10 %, its ConvNet)."""
items[7] = f"""7. **Clipping (Section 5C).** The paper argues clipping stops a server from denoising a single
   client's update. At our scale the server gains nothing from compensating one client's update even
   *without* clipping, so the experiment neither confirms nor refutes the claim; clipping to
   $B\\le 10$ lowers DLG's PSNR to about 3 dB, partly because DLG matches a rescaled gradient. Its cost
   in training at 2000 rounds (Table III[E], GIA setting, $B = \\sigma\\sqrt P = 13.05$): {maybe(*clip)} with
   clipping against {maybe(*q[6])} without (paper 86.03 vs 86.87 %)."""
items[9] = f"""9. **Round time.** Timed inside each 2000-round run, Ours' hooks take {share:.1f} % of the undefended
   round (the paper: +8.45 ... 9.33 % ART) with the leakage risk refreshed in rounds 0, 1, 2, 4, ..., 128
   and then every 200, a schedule chosen from the measured drift of the slice boundaries (Chapter 8.5).
   Refreshing every round costs {art.loc['ours, risk every round, 8 probes', 'defense_share_percent']:.0f} % (the risk on 100 root images takes longer than the round);
   every 200 rounds from the start {art.loc['ours, risk every 200 rounds, 8 probes', 'defense_share_percent']:.1f} %. The floor, the clients' perturbation and the
   server's compensation, is about 1.5 % of a 0.1 s round, so +2 % is reached only by the stalest
   schedule. GC and DP cost under 1 %; PLD's exact score costs 2.2 s a round (20x the round), its
   16-probe estimate a fraction of that."""
items[12] = f"""12. **Which noise did the paper mean?** (Chapter 8.3, MNIST, the mean over 3 seeds.) With the stated variance on the
   shared update in gradient units (our default) DP-G / DP-L / Ours end at {pct(mn['dp-g'])} / {pct(mn['dp-l'])} / {pct(mn['ours'])} %; on the
   weight update (100 times the noise in gradient units) at {pct(r2['dp-g'])} / {pct(r2['dp-l'])} / {pct(r2['ours'])} %; on every local step's
   gradient DP-G / DP-L at {pct(r3['dp-g'])} / {pct(r3['dp-l'])} %. No reading takes DP to chance while Ours keeps its accuracy,
   so the paper's DP columns (10.37 / 10.21 %) do not follow from the variance it states."""
items[13] = f"""13. **Beyond the paper: per-layer compensation** (Chapter 10). Denoising each weight tensor as its own
   matrix with Gavish and Donoho's optimal shrinker lowers the aggregate's error on real rounds where
   the paper's global projection barely does (last measured round: perturbed {last['perturbed']:.3f},
   paper {last['paper (global, Q = 6)']:.3f}, per-layer hard {last['per-layer hard']:.3f}, per-layer shrink {last['per-layer shrink']:.3f}). In training:
   per-layer shrink {maybe(*shrink)}, per-layer hard {maybe(*hard)}, against {pct(mn['none'])} % undefended."""

path = str(ROOT) + "/notebooks/09_summary.ipynb"
nb = read_notebook(path)
src = "".join(nb["cells"][-1]["source"])
import re
def replace_item(src, k, text):
    start = src.index(f"{k}. **")
    nxt = re.search(rf"\n{k + 1}\. \*\*", src[start:])
    end = start + nxt.start() + 1 if nxt else len(src)
    return src[:start] + text + "\n" + src[end:].lstrip("\n") if nxt else src[:start] + text + "\n"
for k in (1, 2, 6, 7, 9):
    src = replace_item(src, k, items[k])
if "12. **" in src:
    src = src[:src.index("12. **")].rstrip("\n") + "\n"
src = src.rstrip("\n") + "\n\n" + items[12] + "\n\n" + items[13]
src = src.replace("The numbers quoted here are from the `default` profile (the scale printed at the top of each\nchapter)",
                  "The numbers quoted here are from the `default` profile (the scale printed at the top of each\nchapter; every accuracy and round time at the paper's 2000 rounds, Chapter 8)")
nb["cells"][-1]["source"] = src.splitlines(keepends=True)
write_notebook(nb, path)
print(src[:6000])
