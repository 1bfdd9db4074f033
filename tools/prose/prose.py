"""Data-driven prose for chapters 4, 5, 7, 8 (the paragraphs that quote accuracy or round time), the
intro and the README status, from the committed default tables."""
import pathlib
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
import sys, re
sys.path.insert(0, str(ROOT))
import numpy as np
from pathlib import Path
from fedshield.reproduce import read_notebook, write_notebook
from fedshield.report import load_table

D = "default"
t2, pld, f2, nr, cr = (load_table(n, D) for n in ("table2a_acc", "table2a_pld", "fig2_table3de", "noise_readings", "compensation_rules"))
def m(t, ds, row):
    if t is None: return float("nan"), 0
    v = t[(t.dataset == ds) & (t.row == row)].final_accuracy
    return (v.mean(), len(v)) if len(v) else (float("nan"), 0)
def sd(t, ds, row):
    v = t[(t.dataset == ds) & (t.row == row)].final_accuracy
    return (v.max() - v.min()) if len(v) > 1 else float("nan")
P = lambda x: f"{100 * x:.1f}"
def mx(v, n): return "not run yet" if n == 0 else f"{P(v)} % ({n} seed{'s' if n > 1 else ''})"
mn = {r: m(t2, "mnist", r) for r in ("none", "ours", "gc", "dp-g", "dp-l")}
fm = {r: m(t2, "fmnist", r) for r in ("none", "ours", "gc", "dp-g", "dp-l")}
unc, pvar, clip = m(f2, "mnist", "uncompensated"), m(f2, "mnist", "paper variance"), m(f2, "mnist", "clipping")
q = {k: m(f2, "mnist", f"Q={k}") for k in (1, 6, 12, 20)}
none_t = t2[t2.defense == "none"].set_index(["dataset", "seed"]).mean_round_time
def share(defense):
    o = t2[t2.defense == defense]
    v = [(r.defense_round_start + r.defense_client + r.defense_server) / none_t[(r.dataset, r.seed)]
         for r in o.itertuples() if (r.dataset, r.seed) in none_t.index]
    return 100 * float(np.mean(v)) if v else float("nan")
spread_mn = max(sd(t2, "mnist", r) for r in ("none", "ours", "gc", "dp-g", "dp-l"))

sys.path.insert(0, str(HERE))
from _common import set_between


def set_md(path, start, end, text):
    set_between(path, start, end, text, end_in_cell=False)

NB = str(ROOT) + "/notebooks/"
# chapter 7's ACC and ART bullets are printed by the chapter's discussion cell
# ---- chapter 4
set_md(NB + "04_compensation.ipynb", "table. Our accuracies", "*What we measure*", """table. Our accuracies are at the paper's 2000 rounds on the LeNet in the calibrated setting
(Chapter 8); the paper's Table III[D] is its ConvNet, so Δ compares models as well as defenses.

""")
set_md(NB + "04_compensation.ipynb", "- **Fig. 2", "- $Q$: larger", f"""- **Fig. 2 at 2000 rounds** (MNIST, calibrated setting): undefended {mx(*mn['none'])}, perturbed without
  compensation {mx(*unc)}, compensated {mx(*mn['ours'])}, compensated with the paper's variance
  {mx(*pvar)}. At the paper's scale the zero-mean perturbation and the projection's bias both
  cost little: the differences are within the spread between seeds. The 60-round regime of earlier
  versions of this chapter, where compensation cost 0.1 accuracy, measured early training. The
  per-round aggregate error of (a) goes down with compensation; Chapter 10 shows a per-layer
  compensation that lowers it much further.
- **Table III[D] at 2000 rounds** (GIA setting): Q = 1 / 6 / 12 / 20 give
  {' / '.join('-' if q[k][1] == 0 else P(q[k][0]) for k in (1, 6, 12, 20))} %.
""")
# ---- chapter 5
set_md(NB + "05_clipping.ipynb", "*What we find* (numbers above;", "- The attacker's compensation", """*What we find* (numbers above; the attacks at a small scale: `images` victims, `iterations` L-BFGS
steps; the accuracy at the paper's 2000 rounds, Chapter 8):

""")
set_md(NB + "05_clipping.ipynb", "- **Accuracy", "- Small $B$ also changes", f"""- **Accuracy at 2000 rounds.** With clipping at $B = \\sigma\\sqrt P = 13.05$: {mx(*clip)}; without:
  {mx(*q[6])} (the paper: 86.03 vs 86.87 %, its ConvNet).
""")
# ---- chapter 8
set_md(NB + "08_paper_scale.ipynb", "**Reading the table.**", None, f"""**Reading the table.** Ours keeps accuracy, as the paper says: {P(mn['ours'][0])} % against {P(mn['none'][0])} % undefended on MNIST,
{P(fm['ours'][0])} % against {P(fm['none'][0])} % on Fashion-MNIST. The paper's other columns do not reproduce: in this reading
of the noise (the paper's variance 1e-2 added to the shared update in gradient units, our default)
DP-G and DP-L cost about as little as Ours, where the paper has them at chance, and GC's 80 % pruning
costs a few points, not the paper's 55. 8.3 asks whether another reading of the noise gives the
paper's pattern.""")
print("ok")

def replace_text(path, old, new):
    nb = read_notebook(path)
    hit = 0
    for c in nb["cells"]:
        s = "".join(c["source"])
        if old in s:
            c["source"] = s.replace(old, new).splitlines(keepends=True); hit += 1
    if hit:
        write_notebook(nb, path)
    return hit

replace_text(NB + "04_compensation.ipynb", """*What we measure* (numbers above; the default profile is a short run, `rounds` rounds instead of 2,000):""",
             """*What we measure* (numbers above; (a) and the spectra of (c) are one captured round of a short
small-regime run, `rounds` rounds; the accuracies of (b) and (c) are 2000-round runs):""")
print("static ok")

ce = load_table("compensation_rules_error", D)
last = ce[ce["round"] == ce["round"].max()].groupby("method").error.mean()
intro = Path(str(ROOT) + "/book/intro.md"); s = intro.read_text()
a = s.index("than not compensating at all; Chapter 4 measures it")
b = s.index("## How to read the tables")
s = s[:a] + f"""than not compensating at all; Chapter 4 measures it on a real round (relative error of the aggregate
0.80 with the paper's variance, 0.51 uncompensated, 0.48 with ours). In training at the paper's scale
(2000 rounds, Chapter 8) the defense with our variance keeps the undefended accuracy within about a
point (MNIST {P(mn['none'][0])} % undefended, {P(mn['ours'][0])} % defended); so does DP at the variance the paper states,
which the paper reports at chance. Chapter 10 replaces the paper's one global projection by a
per-layer optimal shrinkage that lowers the aggregate's error much further (last measured round:
{last['perturbed']:.2f} perturbed, {last['paper (global, Q = 6)']:.2f} with the paper's projection, {last['per-layer shrink']:.2f} per layer).

""" + s[b:]
intro.write_text(s)

readme = Path(str(ROOT) + "/README.md"); s = readme.read_text()
a = s.index("- **Accuracy at the paper's scale**") if "- **Accuracy at the paper's scale**" in s else s.index("- **Compensation**: with the variance we derive")
# the attack bullet after "Cost" and the sentence on the paper's numbers are attack_prose.py's: kept as they
# are, so that this script alone leaves the README whole (a README without the bullet fails here)
assert s.count("- **Attacks at the paper's scale**") == 1, "README: the attack bullet is missing or doubled"
b = s.index("- **Attacks at the paper's scale**")
s = s[:a] + f"""- **Accuracy at the paper's scale** (2000 FedAvg rounds, its partition and local training, the
  calibrated reading of what it leaves open; Chapter 8): undefended {P(mn['none'][0])} % on MNIST (paper 91.69 %)
  and {P(fm['none'][0])} % on Fashion-MNIST (paper 91.80 %, a gap no reading of the paper closes). Ours
  {P(mn['ours'][0])} / {P(fm['ours'][0])} %: it keeps accuracy, as the paper claims. But so does DP at the variance the paper
  states (DP-G {P(mn['dp-g'][0])} / {P(fm['dp-g'][0])} %; the paper: 10.37 / 10.10 %), in every reading of that noise we
  tried, and GC loses a few points, not 55.
- **Compensation**: with the variance we derive, compensation lowers a single aggregate's error
  (0.51 -> 0.48); with the paper's formula (the variance of a sum, $m^2$ too large) it makes the
  aggregate worse (0.51 -> 0.80). In training at 2000 rounds it changes accuracy by less than the
  seed spread. Beyond the paper, a per-layer optimal shrinkage lowers the aggregate's error much
  further ({last['perturbed']:.2f} -> {last['per-layer shrink']:.2f} on a late round, the paper's projection {last['paper (global, Q = 6)']:.2f}; Chapter 10).
- **Cost**: Ours' hooks take {share('ours'):.1f} % of a 2000-round run's undefended round (the paper: +8.5-9.3 %),
  with the leakage risk refreshed 18 times instead of every round (every round: 1.5x the round).
""" + s[b:]
s = s.replace("Measured on 2 CPU cores at the book's `default` scale (details, and every claim with a verdict, in\nthe book's summary chapter):",
              "Measured on 2 CPU cores (details, and every claim with a verdict, in the book's summary chapter):")
readme.write_text(s)
print("intro/readme ok")

ppc = load_table("paper_profile_cost", D).set_index("dataset")
from fedshield.experiments.campaign import SHORT_CELLS
SHORT = SHORT_CELLS[("cifar10", "pld")]
_cif = load_table("table2a_cifar", D)
_pr = None if _cif is None else _cif[(_cif.defense == "pld") & (_cif.rounds == SHORT)]
PLD_RUN = ("" if _pr is None or not len(_pr) else
           f" (measured: {float(_pr.mean_round_time.mean()):.1f} s a round, of which {float(_pr.defense_client.mean()):.1f} s "
           f"the feature score, with two jobs on the two cores)")
set_md(NB + "08_paper_scale.ipynb", "## 8.6 What is not measured yet", None, f"""## 8.6 What is not measured yet

The cells still missing from the tables above are listed here by plan; `tools/campaign.py PLAN`
runs them (resumable, one table row per finished cell). What only a GPU affords stays in the `paper`
profile: the ConvNet-64 FedAvg of Table II[B] takes {ppc.loc['mnist', 'seconds_per_round']:.0f} s a round on MNIST and
{ppc.loc['cifar10', 'seconds_per_round']:.0f} s on CIFAR-10 (200 clients a round) on one thread of this CPU
(`tools/paper_profile_cost.py`), {ppc.loc['mnist', 'hours_for_2000']:.0f} and {ppc.loc['cifar10', 'hours_for_2000']:.0f} hours for 2000 rounds; its config is smoke-tested
for a round on the CPU (`tests/test_campaign.py`).

Table II[A] on CIFAR-10 at the paper's partition (1000 clients, 200 a round) is plan `table2a_cifar`:
about 2 s a round on one idle core (3.5-4.5 s with three jobs on the two cores), one to two hours a
2000-round cell, six cells (`OMP_NUM_THREADS=1 tools/campaign.py table2a_cifar --seeds 0 --defenses D`,
one cell per worker, resumed from its checkpoint when a piece is cut at 55 minutes); the cell below
lists the cells that have run, and the CIFAR-10 columns of Table II[A] (Chapter 7) read NaN where a cell is missing. PLD is
the expensive one: its feature score (16 probes for each of a round's ~4,000 local images) made a
CIFAR-10 round 12.7 s against the undefended 4.4 s, the two measured one after the other for 3 rounds
under the same load (three jobs on the two cores, session 9), so a 2000-round PLD cell is several hours
of one core, more than a session.
It is the one cell of Table II[A] over the budget and runs **{SHORT} rounds** (`campaign.SHORT_CELLS`):
its row is marked with its rounds, its accuracy is put beside the undefended run's at that round (not
beside the paper's ACC), and its round time is the per-round cost the issue asks for{PLD_RUN}. Its stored round times were measured on a shared machine and are not ART
figures; ART is measured side by side on MNIST (8.5).""")
