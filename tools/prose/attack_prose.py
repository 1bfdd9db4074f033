"""Data-driven attack prose (issue 13) for chapters 1, 7 and 9 from the committed attack tables."""
import pathlib
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
import sys, re
sys.path.insert(0, str(ROOT))
import numpy as np, pandas as pd
from fedshield.reproduce import read_notebook, write_notebook
from fedshield.report import load_table
from fedshield.stats import paired_comparison
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
    ra, rb = rows(t, plan, ds, a), rows(t, plan, ds, b)
    j = ra[["victim", "psnr"]].merge(rb[["victim", "psnr"]], on="victim", suffixes=("_a", "_b"))
    if not len(j): return None
    return paired_comparison(j.psnr_a.clip(upper=100).tolist(), j.psnr_b.clip(upper=100).tolist(), alternative=alt)

def f1(x): return "n/a" if x != x else f"{x:.1f}"
def f2(x): return "n/a" if x != x else f"{x:.2f}"
def dsets(t, plan, row="none", want=("mnist", "fmnist", "cifar10")):
    return [d for d in want if n(t, plan, d, row)]

ROWS8 = [r for r, _, _ in A.TABLE2_ROWS]
A_DS = [d for d in ("mnist", "fmnist", "cifar10") if all(n(dlg, PLAN_DLG, d, r) for r in ROWS8)]
def per_ds(fn, ds_list, sep=", "):
    return sep.join(f"{NAME[d]} {fn(d)}" for d in ds_list)

def det(t, plan, ds, row="Ours-muted"):
    r = rows(t, plan, ds, row)
    return float(r.detect_precision.dropna().mean()) if len(r) and r.detect_precision.notna().any() else float("nan")

def pstr(c): return "n/a" if c is None else f"{c['wins']}/{c['n']} victims, p = {c['p']:.3g}"

import torch
from fedshield.data import load_dataset
from fedshield.metrics import psnr as _psnr
LEVELS = {}
for d in ("mnist", "fmnist", "cifar10"):
    r = rows(dlg, PLAN_DLG, d, "none")
    if not len(r):
        continue
    xte, _ = load_dataset(d, "test", progress=False)
    xt = xte[torch.as_tensor([int(i) for i in r["index"]])]
    lv = lambda img: float(_psnr(img.expand_as(xt), xt).median())
    LEVELS[d] = {"gray": lv(torch.full_like(xt[:1], 0.5)), "black": lv(torch.zeros_like(xt[:1])),
                 "mean": lv(xte.mean(0, keepdim=True)),
                 "noise": float(_psnr(torch.rand(xt.shape, generator=torch.Generator().manual_seed(0)), xt).median())}

# ------------------------------------------------------------------ chapter 7
def ch7_text():
    none = {d: med(dlg, PLAN_DLG, d, "none") for d in A_DS}
    ours = {d: med(dlg, PLAN_DLG, d, "Ours") for d in A_DS}
    ours_q3 = {d: float(np.percentile(rows(dlg, PLAN_DLG, d, "Ours").psnr, 75)) for d in A_DS}
    ours_max = {d: float(rows(dlg, PLAN_DLG, d, "Ours").psnr.max()) for d in A_DS}
    ours_ssim = {d: med(dlg, PLAN_DLG, d, "Ours", "ssim") for d in A_DS}
    muted = {d: med(dlg, PLAN_DLG, d, "Ours-muted") for d in A_DS}
    pldm = {d: med(dlg, PLAN_DLG, d, "PLD-muted") for d in A_DS}
    base = {r: {d: med(dlg, PLAN_DLG, d, r) for d in A_DS} for r in ("GC", "DP-G", "DP-L", "PLD")}
    p_on = {d: paired(dlg, PLAN_DLG, d, "Ours", "none", "less") for d in A_DS}
    p_mu = {d: paired(dlg, PLAN_DLG, d, "Ours-muted", "Ours", "greater") for d in A_DS}
    p_gc = {d: paired(dlg, PLAN_DLG, d, "GC", "Ours", "less") for d in A_DS}
    ig_done, ig_total = A.attack_status("attacks_ig", PLAN_IG, D)
    ig_ds = dsets(ig, PLAN_IG, want=("cifar10", "mnist", "fmnist"))
    ig_txt = ("none has run yet" if not ig_ds else
              per_ds(lambda d: f"undefended {f1(med(ig, PLAN_IG, d, 'none'))} dB (SSIM {f2(med(ig, PLAN_IG, d, 'none', 'ssim'))}, "
                                f"{n(ig, PLAN_IG, d, 'none')} victims), Ours {f1(med(ig, PLAN_IG, d, 'Ours'))} dB "
                                f"({n(ig, PLAN_IG, d, 'Ours')}), Ours-muted {f1(med(ig, PLAN_IG, d, 'Ours-muted'))} dB "
                                f"({n(ig, PLAN_IG, d, 'Ours-muted')})", ig_ds, "; "))
    return f"""**How to read the numbers.** [A] is at the paper's scale: DLG with 500 L-BFGS steps, 8 victims
for the rows that decide the verdicts and 4 for the others (`attacks_dlg`, datasets run so far:
{', '.join(NAME[d] for d in A_DS)}). A PSNR is the median over victims with its inter-quartile range;
two rows compare victim by victim (the paired table). [B] is the paper's GIA: Inverting Gradients
with 1000 Adam steps on the width-64 ConvNet (`attacks_ig`, {ig_done} of {ig_total} planned victims
attacked so far, each 3 (MNIST) to 7 (CIFAR-10) minutes of one core; cells not yet attacked read NaN): {ig_txt}. At
this scale the undefended attack reconstructs on both: DLG almost exactly on every victim, and
Inverting Gradients a recognisable image (the grid above), where the 50-step, width-16 runs of earlier
versions of this book stayed at 13-14 dB. [A]'s FedAvg runs are at the paper's 2000 rounds
(Chapter 8, three seeds); [B]'s are 30 ConvNet rounds with one seed, so [B]'s ACC compares the
defenses' *early* training, not their final accuracy.

**What agrees with the paper's claims.**
- Against the plain attacker the paper's defense lowers DLG's reconstruction far below the
  undefended one, on every victim: median {per_ds(lambda d: f'{f1(ours[d])} dB against {f1(none[d])} dB', A_DS, '; ')}
  (paired, Ours below no defense: {per_ds(lambda d: pstr(p_on[d]), A_DS, '; ')}).
- PLD prunes only FC-weight columns, so PLD-muted, which ignores the FC layer and matches the
  convolutional gradients, recovers the undefended quality ({per_ds(lambda d: f'{f1(pldm[d])} dB', A_DS)}):
  pruning one layer does not protect the others. This is the weakness the paper's muted columns expose.

**Where our measurements differ from the paper's claim.**
- *Ours-muted is not harmless.* The paper argues that an attacker cannot know which slices are
  noisy. With the paper's variance $10^{{-2}}$ (noise std 0.1 in gradient units) the noise is far
  larger than most clean gradient entries, and a likelihood-ratio test against the clean gradient
  scale (which anyone with public data can estimate) finds the noisy slices (detection precision
  {per_ds(lambda d: f2(det(dlg, PLAN_DLG, d)), A_DS)}). The attacker drops them, matches the other 80 % of the
  gradient, and DLG recovers the image: median {per_ds(lambda d: f'{f1(muted[d])} dB (undefended {f1(none[d])})', A_DS, '; ')}
  (paired, Ours-muted above Ours: {per_ds(lambda d: pstr(p_mu[d]), A_DS, '; ')}).
- *Ours protects less than the baselines, and not every victim.* Against the plain attacker the
  noise and pruning baselines leave less than Ours: median GC {per_ds(lambda d: f1(base['GC'][d]), A_DS)} dB,
  DP-G {per_ds(lambda d: f1(base['DP-G'][d]), A_DS)} dB, PLD {per_ds(lambda d: f1(base['PLD'][d]), A_DS)} dB, against Ours'
  {per_ds(lambda d: f1(ours[d]), A_DS)} dB (GC below Ours on {per_ds(lambda d: pstr(p_gc[d]), A_DS, '; ')}; 4 victims
  cannot reach p < 0.05). A quarter of Ours' victims keep more than {per_ds(lambda d: f1(ours_q3[d]), A_DS)} dB
  (the best {per_ds(lambda d: f1(ours_max[d]), A_DS)} dB), and the median SSIM is {per_ds(lambda d: f2(ours_ssim[d]), A_DS)}
  (the paper: 0.046 on MNIST): when a victim's two noised slices miss most of the risk, DLG recovers
  a blurred image. The paper's defended columns all sit at 9.4-10.8 dB, within the range of
  reconstructions that carry no information (the reference table above: {per_ds(lambda d: f"{f1(LEVELS[d]['noise'])}-{f1(LEVELS[d]['mean'])} dB", A_DS)}
  from uniform noise to the mean image); DLG against DP or PLD here diverges to saturated pixels and
  lands at the bottom of that range, which is no more and no less private than the paper's 9.4 dB.
"""

sys.path.insert(0, str(HERE))
from _common import set_between

NB = str(ROOT) + "/notebooks/"
set_between(NB + "07_main_results.ipynb", "**How to read the numbers.**", "- *The sweep", ch7_text())

# ------------------------------------------------------------------ chapter 1
T1 = ("mnist", "fmnist", "cifar10", "cifar100")
t1 = [d for d in T1 if all(n(dlg, PLAN_DLG, d, r) for r in ("none", "Ours", "Ours-muted"))]
def fails_text():
    bad = [d for d in t1 if det(dlg, PLAN_DLG, d) < 0.8]
    if not bad:
        return ""
    return (" Where the detector fails (" + ", ".join(NAME[d] for d in bad) + ", whose LeNet has a ten times larger"
            " FC layer for its 100 classes; why detection fails there we have not established) the muted attacker"
            " gets nothing back: the attack is only as good as the detector.")


def ch1_text():
    return f"""## Discussion

*(The numbers discussed here are the paper-scale campaign's, the `default` profile's: DLG with 500
L-BFGS steps, 8 victims on MNIST, Fashion-MNIST and CIFAR-10 and 4 on CIFAR-100, datasets run so
far: {', '.join(NAME[d] for d in t1)}. The smoke profile runs a few steps on one victim: its table
only checks that the pipeline runs.)*

- **Unperturbed gradient.** DLG on the DLG-initialised LeNet with a known label recovers the image
  almost exactly: median {per_ds(lambda d: f"{f1(med(dlg, PLAN_DLG, d, 'none'))} dB (SSIM {f2(med(dlg, PLAN_DLG, d, 'none', 'ssim'))})", t1, '; ')}, as in the
  paper's Table I and the original DLG paper: the attack works.
- **Perturbed gradient (ours).** Noise of standard deviation 0.1 on 2 of 10 equal-risk slices
  destroys most reconstructions: median {per_ds(lambda d: f"{f1(med(dlg, PLAN_DLG, d, 'Ours'))} dB", t1)}. Not every one: the
  upper quartile is {per_ds(lambda d: f"{f1(float(np.percentile(rows(dlg, PLAN_DLG, d, 'Ours').psnr, 75)))} dB", t1)}. Each victim's two noised slices are a
  random draw, and when the draw misses most of the risk DLG recovers a blurred image (per-victim
  table `table1_victims`).
- **Muted attacker.** The defense's security rests on the attacker not knowing *which* slices are
  noisy. With the DLG-initialised LeNet the noise ($\\sigma = 0.1$) is much larger than most clean
  gradient entries, so the likelihood-ratio detector finds the perturbed slices (precision
  {per_ds(lambda d: f2(det(dlg, PLAN_DLG, d)), t1)}), and where it does, matching the other 80 % of the gradient is enough for
  DLG: the muted attacker recovers {per_ds(lambda d: f"{f1(med(dlg, PLAN_DLG, d, 'Ours-muted'))} dB", t1)} (medians).{fails_text()} This is a weakness of the
  defense as specified (noise on few slices, slice count public) that the paper does not discuss in
  this form; the paper's Table I shows its muted reconstructions as images only, without numbers.

The paper's Table I holds images only (raw, unperturbed, perturbed and muted reconstructions by
DLG), no PSNR or SSIM, so this page compares with it by eye; its numbers are in Tables II and III
(Chapters 2-5 and 7 set them beside ours).
"""
set_between(NB + "01_threat_model.ipynb", "## Discussion", None, ch1_text())
print(ch7_text()[:3000])

# ------------------------------------------------------------------ README
from pathlib import Path
readme = Path(str(ROOT) + "/README.md"); s = readme.read_text()
old_sent = """The paper's Tables II and III are in `fedshield/paper_numbers.json` (each value with its table and
cell); the chapters set them beside ours. The attacks of the `default` profile still run tens of
optimiser steps instead of the paper's 500 / 1000 (issue 13).
"""
ig_ds = dsets(ig, PLAN_IG, want=("cifar10", "mnist", "fmnist"))
ig_sent = ("" if not ig_ds else " Inverting Gradients at 1000 Adam steps on the width-64 ConvNet reconstructs "
           + per_ds(lambda d: f"at {f1(med(ig, PLAN_IG, d, 'none'))} dB (SSIM {f2(med(ig, PLAN_IG, d, 'none', 'ssim'))}) undefended", ig_ds, "; ")
           + " (first victims of Table II[B], which is still running).")
new_block = f"""- **Attacks at the paper's scale** (DLG 500 L-BFGS steps, 8 victims, medians; Chapter 7): undefended
  {per_ds(lambda d: f1(med(dlg, PLAN_DLG, d, 'none')) + ' dB', A_DS)}; Ours {per_ds(lambda d: f1(med(dlg, PLAN_DLG, d, 'Ours')) + ' dB', A_DS)} on every victim below
  undefended ({per_ds(lambda d: pstr(paired(dlg, PLAN_DLG, d, 'Ours', 'none', 'less')), A_DS, '; ')}). But the attacker who locates the noised slices, which the paper's
  noise makes easy, recovers {per_ds(lambda d: f1(med(dlg, PLAN_DLG, d, 'Ours-muted')) + ' dB', A_DS)}: the defense as specified does not
  hold against an adaptive server.{ig_sent}

The paper's Tables II and III are in `fedshield/paper_numbers.json` (each value with its table and
cell); the chapters set them beside ours.
"""
if old_sent in s:
    s = s.replace("\n\n" + old_sent, "\n" + new_block)
else:
    a = s.index("- **Attacks at the paper's scale**")
    b = s.index("cell); the chapters set them beside ours.\n", a) + len("cell); the chapters set them beside ours.\n")
    s = s[:a] + new_block + s[b:]
readme.write_text(s)
print("readme ok")

# ------------------------------------------------------------------ chapter 9 items 1 and 14
path9 = NB + "09_summary.ipynb"
nb = read_notebook(path9)
src = "".join(nb["cells"][-1]["source"])
item1 = f"""1. **Scale.** Accuracy and round time are at the paper's scale: 2000 FedAvg rounds at its partition
   and local training ({{doc}}`08_paper_scale`). So are the DLG attacks of Tables I and II[A]: 500 L-BFGS
   steps, 8 victims for the rows that decide the verdicts ({', '.join(NAME[d] for d in A_DS)} complete so far), with
   verdicts paired over the victims. Inverting Gradients runs at the paper's 1000 Adam steps on the
   width-64 ConvNet ({A.attack_status('attacks_ig', PLAN_IG, D)[0]} of {A.attack_status('attacks_ig', PLAN_IG, D)[1]} planned victims so far; 3 to 7 minutes of one core each), and the
   Table III attacks of Chapters 2, 3 and 5 still run at a small scale (each chapter prints it)."""
def muted_line():
    return per_ds(lambda d: f"{f1(med(dlg, PLAN_DLG, d, 'Ours-muted'))} dB (Ours {f1(med(dlg, PLAN_DLG, d, 'Ours'))}, undefended {f1(med(dlg, PLAN_DLG, d, 'none'))})", A_DS, "; ")
item14 = f"""14. **The attacks at the paper's scale** (Chapter 7, DLG, 500 L-BFGS steps, medians over 8 victims).
   The undefended attack reconstructs every victim almost exactly. Against the plain attacker Ours
   lowers the PSNR on every victim ({per_ds(lambda d: pstr(paired(dlg, PLAN_DLG, d, 'Ours', 'none', 'less')), A_DS, '; ')}), but less than GC, DP and PLD
   do, and a quarter of its victims keep a blurred image. The attacker who locates the noised slices
   gets the image back: {muted_line()}. The paper's argument that an attacker cannot tell which
   slices are noisy does not hold at its own noise level; Chapter 10 measures which configurations do hold."""
def replace_item(src, k, text):
    start = src.index(f"{k}. **")
    nxt = re.search(rf"\n{k + 1}\. \*\*", src[start:])
    end = start + nxt.start() + 1 if nxt else len(src)
    return src[:start] + text + "\n" + src[end:].lstrip("\n") if nxt else src[:start] + text + "\n"
src = replace_item(src, 1, item1)
if "14. **" in src:
    src = replace_item(src, 14, item14)
else:
    src = src.rstrip("\n") + "\n\n" + item14 + "\n"
nb["cells"][-1]["source"] = src.splitlines(keepends=True)
write_notebook(nb, path9)
print("ch9 ok")

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

# frontier verdict
t2acc = load_table("table2a_acc", D); pldacc = load_table("table2a_pld", D); flf = load_table("frontier", D)
def fr_acc(setting):
    paper = {"DP-G": ("dp-g", t2acc), "GC": ("gc", t2acc), "Ours": ("ours", t2acc), "PLD": ("pld", pldacc), "none": ("none", t2acc)}
    if setting in paper:
        row, t = paper[setting]
        v = t[(t.dataset == "mnist") & (t.row == row) & (t.seed == 0)].final_accuracy
    else:
        v = pd.Series(dtype=float) if flf is None else flf[(flf.dataset == "mnist") & (flf.row == setting)].final_accuracy
    return float(v.mean()) if len(v) else float("nan")
def fr_psnr(setting):
    if fa is None: return float("nan")
    c = next(c for c in PLAN_FR if c.setting == setting)
    r = fa[fa.cell == c.key()]
    return float(np.median(r.psnr.clip(upper=100))) if len(r) == c.config.images else float("nan")
none_acc = fr_acc("none")
pts = [(c.setting, fr_acc(c.setting), fr_psnr(c.setting)) for c in PLAN_FR]
done = [(s, a, p) for s, a, p in pts if a == a and p == p]
meets = [s for s, a, p in done if p < 15 and a >= none_acc - 0.02]
blind = load_table("attacks_frontier_blind_detector", D)
def blind_line():
    if blind is None or not len(blind): return ""
    g = blind.groupby("setting").agg(psnr=("psnr", "median"), det=("detect_precision", "mean"))
    return ("A detector that ignores the floor (the first version of this attacker, its rows kept in "
            "`attacks_frontier_blind_detector`) finds few of the noised slices and gets little: "
            + "; ".join(f"{k}: {v.psnr:.1f} dB at detection precision {v.det:.2f}" for k, v in g.iterrows())
            + ". The floor is public, so the attacker models it; the rows above are that informed attacker.")
def informed_vs_dp():
    parts = []
    for fl, dp in (("Ours + floor 0.01", "DP-G, variance 1e-4"), ("Ours + floor 0.03", "DP-G, variance 1e-3")):
        a, b = fr_psnr(fl), fr_psnr(dp)
        if a == a and b == b:
            parts.append(f"{fl} {a:.1f} dB against {dp} (noise of the floor's std on every entry, no slices) {b:.1f} dB")
    return ("; ".join(parts) + ". Against the informed attacker the hardened variant is worth about what its floor alone is worth: "
            "the paper's noised slices add a dB or two, because the attacker drops them and matches the rest.") if parts else ""
fr_text = f"""**Verdict** (MNIST, seed 0 accuracy, medians over 8 victims). {len(done)} of {len(pts)} strengths measured
so far{'' if len(done) == len(pts) else ' (the rest: `tools/campaign.py frontier`, `tools/attack_campaign.py attacks_frontier`)'}.
""" + "".join(f"- {s}: accuracy {100 * a:.1f} % (undefended {100 * none_acc:.1f} %), adaptive attacker {p:.1f} dB\n" for s, a, p in done) + (
f"""
Meeting the goal (below 15 dB, within 2 points of undefended): {', '.join(meets) if meets else 'none of those measured'}.

{blind_line()}

{informed_vs_dp()}
""" if done else "")
# the frontier's verdict is printed by its own code cell in chapter 10 (from frontier_points) since session 7
print("frontier text ok", len(done))
