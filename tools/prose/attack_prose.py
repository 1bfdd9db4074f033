"""Data-driven attack prose (issue 13) for chapter 10.4 and the README from the committed attack
tables (chapters 1, 7 and 9's discussions and chapter 10's frontier verdict are code cells of their chapters)."""
import pathlib
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
import sys, re
sys.path.insert(0, str(ROOT))
import numpy as np, pandas as pd
from fedshield.reproduce import read_notebook, write_notebook
from fedshield.report import load_table
from fedshield.stats import paired_victims, wins_text
from fedshield.experiments import attack_campaign as A

D = "default"
dlg = load_table("attacks_dlg", D)
ig = load_table("attacks_ig", D)
NAME = {"mnist": "MNIST", "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
PLAN_DLG = A.attack_plan("attacks_dlg")
PLAN_IG = A.attack_plan("attacks_ig")

def rows(t, plan, ds, row):
    if t is None: return pd.DataFrame(columns=["victim", "psnr", "ssim"])
    c = next((c for c in plan if c.config.dataset == ds and c.row == row), None)
    if c is None: return pd.DataFrame(columns=["victim", "psnr", "ssim"])
    r = t[t.cell == c.key()]
    return r[r.victim < c.config.images].sort_values("victim")

def med(t, plan, ds, row, m="psnr"):
    r = rows(t, plan, ds, row)
    return float(np.median(r[m])) if len(r) else float("nan")

def n(t, plan, ds, row): return len(rows(t, plan, ds, row))

def paired(t, plan, ds, a, b, alt):
    return paired_victims(rows(t, plan, ds, a), rows(t, plan, ds, b), alternative=alt)

def f1(x): return "n/a" if x != x else f"{x:.1f}"
def f2(x): return "n/a" if x != x else f"{x:.2f}"
def dsets(t, plan, row="none", want=("mnist", "fmnist", "cifar10")):
    return [d for d in want if n(t, plan, d, row)]

ROWS8 = [r for r, _, _ in A.TABLE2_ROWS]
A_DS = [d for d in ("mnist", "fmnist", "cifar10") if all(n(dlg, PLAN_DLG, d, r) for r in ROWS8)]
def per_ds(fn, ds_list, sep=", "):
    return sep.join(f"{NAME[d]} {fn(d)}" for d in ds_list)

pstr = wins_text

# ---- end of the helpers s6_readme.py executes

# chapter 7's discussion is printed by its own code cell from the chapter's tables (session 8)

NB = str(ROOT) + "/notebooks/"

# chapter 1's discussion is printed by its own code cell (fedshield.summary.threat_model_discussion, session 10)

# ------------------------------------------------------------------ README
from pathlib import Path
readme = Path(str(ROOT) + "/README.md"); s = readme.read_text()
ig_ds = dsets(ig, PLAN_IG, want=("cifar10", "mnist", "fmnist"))
ig_sent = ("" if not ig_ds else " Inverting Gradients at 1000 Adam steps on the width-64 ConvNet reconstructs "
           + per_ds(lambda d: f"at {f1(med(ig, PLAN_IG, d, 'none'))} dB (SSIM {f2(med(ig, PLAN_IG, d, 'none', 'ssim'))}) undefended", ig_ds, "; ")
           + (" (Table II[B], {} of {} planned victims attacked).".format(*A.attack_status("attacks_ig", PLAN_IG, D))))
new_block = f"""- **Attacks at the paper's scale** (DLG 500 L-BFGS steps, 8 victims, medians; Chapter 7): undefended
  {per_ds(lambda d: f1(med(dlg, PLAN_DLG, d, 'none')) + ' dB', A_DS)}; Ours {per_ds(lambda d: f1(med(dlg, PLAN_DLG, d, 'Ours')) + ' dB', A_DS)} on every victim below
  undefended ({per_ds(lambda d: pstr(paired(dlg, PLAN_DLG, d, 'Ours', 'none', 'less')), A_DS, '; ')}). But the attacker who locates the noised slices, which the paper's
  noise makes easy, recovers {per_ds(lambda d: f1(med(dlg, PLAN_DLG, d, 'Ours-muted')) + ' dB', A_DS)}: the defense as specified does not
  hold against an adaptive server.{ig_sent}

The paper's Tables II and III are in `fedshield/paper_numbers.json` (each value with its table and
cell); the chapters set them beside ours.
"""
# the bullet and the sentence after it are this script's (found once, or the script fails: README edited by hand)
assert s.count("- **Attacks at the paper's scale**") == 1, "README: the attack bullet is missing or doubled"
a = s.index("- **Attacks at the paper's scale**")
b = s.index("cell); the chapters set them beside ours.\n", a) + len("cell); the chapters set them beside ours.\n")
s = s[:a] + new_block + s[b:]
readme.write_text(s)
print("readme ok")

# chapter 9's discussion is printed by its own code cell from the committed tables (fedshield.summary, session 9)

# ------------------------------------------------------------------ chapter 10: training, frontier
import nbformat
from fedshield.experiments import campaign as C
path10 = NB + "10_beyond_paper.ipynb"
tr = load_table("attacks_training", D)
PLAN_TR = A.attack_plan("attacks_training")
def trow(ds, r, row):
    if tr is None: return pd.DataFrame(columns=["psnr", "ssim"])
    c = next(c for c in PLAN_TR if c.config.dataset == ds and c.config.trained_round == r and c.row == row)
    return tr[tr.cell == c.key()]
def tmed(ds, r, row):
    x = trow(ds, r, row)
    return float(np.median(x.psnr)) if len(x) else float("nan")
tr_ds = [d for d in ("mnist", "fmnist") if any(len(trow(d, r, "none")) for r in A.TRAINING_ROUNDS)]
def round_line(ds):
    parts = []
    for r in A.TRAINING_ROUNDS:
        vals = [tmed(ds, r, row) for row in ("none", "Ours", "Ours-muted")]
        if all(v != v for v in vals):
            continue
        parts.append(f"round {r}: " + " / ".join(f1(v) for v in vals))
    return "; ".join(parts) if parts else "not run yet"
text104 = f"""**What the rounds show** (medians over 8 victims, undefended / Ours / Ours-muted, dB).
{chr(10).join(f'- {NAME[d]}: {round_line(d)}.' for d in ("mnist", "fmnist"))}

""" + (f"""On the trained model DLG itself fails: undefended, it reconstructs {int((trow('mnist', 1000, 'none').psnr > 20).sum())} of 8 MNIST victims at round
1000 and {int((trow('mnist', 2000, 'none').psnr > 20).sum())} at round 2000 (the model of round 100 still leaks as at initialisation), so
the defended rows there measure the attack's failure, not the defense. The paper's evaluation at the
initial model is where the attack works and where the defenses separate; Ours' weakness against the
muted attacker holds at every round where the undefended attack succeeds.

""" if tmed("mnist", 2000, "none") == tmed("mnist", 2000, "none") and tmed("mnist", 2000, "none") < 15 else "") + ("""Rounds not listed have not been attacked yet (`tools/attack_campaign.py attacks_training`)."""
       if any(any(tmed(d, r, "none") != tmed(d, r, "none") for r in A.TRAINING_ROUNDS) for d in ("mnist", "fmnist")) else "")

fa = load_table("attacks_frontier", D)
PLAN_FR = A.attack_plan("attacks_frontier")
fl_fr = load_table("frontier", D)   # the chapter's own summary table (written when the chapter ran)

nb = read_notebook(path10)
cells = nb["cells"]
def idx(prefix):
    hits = [i for i, c in enumerate(cells) if "".join(c["source"]).lstrip().startswith(prefix)]
    assert len(hits) <= 1, (prefix, hits)
    return hits[0] if hits else None
def put_after(anchor_prefix, marker, text):
    i = idx(marker)
    if i is not None:
        cells[i]["source"] = text.strip("\n").splitlines(keepends=True)
        return
    j = idx(anchor_prefix)
    c = nbformat.v4.new_markdown_cell(text.strip("\n")); c["source"] = c["source"].splitlines(keepends=True)
    cells.insert(j + 1, c)
put_after("if len(tt):\n    dsets", "**What the rounds show**", text104)
i0 = 0
s0 = "".join(cells[i0]["source"])
s0 = s0.replace("This chapter takes up the first; the adaptive attacker's\nfrontier, a hardened variant and attacks during training are not measured yet (10.4).",
                "This chapter takes up the first (10.1-10.3), then attacks the\nmodel during training (10.4) and measures the adaptive attacker's frontier with a hardened variant (10.5).")
cells[i0]["source"] = s0.splitlines(keepends=True)
write_notebook(nb, path10)
print("ch10 ok", tr_ds)
