"""Chapter 10 cells for randomised boundaries and the rewritten intro / 10.7 (idempotent)."""
import pathlib
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
import nbformat
NB = str(ROOT) + "/notebooks/10_beyond_paper.ipynb"
nb = nbformat.read(NB, as_version=4)
cells = nb.cells

def idx(prefix):
    hits = [i for i, c in enumerate(cells) if c.source.lstrip().startswith(prefix)]
    assert len(hits) <= 1, (prefix, hits)
    return hits[0] if hits else None

def put(after_prefix, own_prefix, source, kind="markdown"):
    i = idx(own_prefix)
    if i is not None:
        cells[i].source = source.strip("\n")
        return
    j = idx(after_prefix)
    assert j is not None, after_prefix
    c = nbformat.v4.new_markdown_cell(source.strip("\n")) if kind == "markdown" else nbformat.v4.new_code_cell(source.strip("\n"))
    cells.insert(j + 1, c)

MD_JIT = r"""
### Randomised slice boundaries

A second hardened variant targets the detector's other handle: the slice boundaries. The server
computes the equal-risk slices, so it knows where every client's noise can start and stop. With
`PaperDefense(jitter=0.5)` every client moves each interior boundary, per round, by a secret
uniform amount of up to a quarter of the slice it moves into (`fedshield.defense.jitter_bounds`).
Each entry is still noised with probability $k/s$, so the noise level, the compensation and the
accuracy are the paper's. Three attackers, DLG at 500 L-BFGS steps on the same 8 victims:

- the **plain** attack (no detection);
- the Chapter 7 detector on the **server's slices**: it still finds the noised slices (most of
  each lies inside its nominal range), drops them, and matches the rest, including the noised
  entries the moved edges pushed into neighbouring slices;
- the **widened** detector: the same detection, but each dropped slice is widened by the most a
  boundary can move, $\mathrm{jitter}/2$ of the neighbouring slice on each side
  (`fedshield.attacks.adaptive.expanded_slice_mask`). The jitter is part of the defense's public
  description, so this attacker is entitled to it; it drops a few clean entries at the edges and
  no noised one when the detection is right. This is the frontier's attacker for the variant.

`detect_precision` is the fraction of the flagged slices that were noised with the paper's common
boundaries, and the fraction of the *dropped entries* that were noised with randomised ones (the
widened attacker drops clean edges on purpose, so its precision is low by design).
"""

CODE_JIT = r"""
jit_cells = A.attack_plan("attacks_jitter", iterations=FR["iterations"], images=FR["images"],
                          datasets=[d for d in FR["datasets"] if d != "cifar10"])
jit, jit_missing = A.collect_attacks("attacks_jitter", jit_cells, profile=P.tables, run=P.run)
def attacker_row(ds, name, r):
    s = r["summary"] if r is not None else None
    return dict(dataset=ds, attacker=name, victims=0 if s is None else s["victims"],
                psnr_median=np.nan if s is None else s["psnr"]["median"], psnr_q1=np.nan if s is None else s["psnr"]["q1"],
                psnr_q3=np.nan if s is None else s["psnr"]["q3"], ssim_median=np.nan if s is None else s["ssim"]["median"],
                detect_precision=None if s is None else s["detect_precision"])
jt = []
for ds in dict.fromkeys(c.config.dataset for c in jit_cells):
    by_setting = {c.setting: att_fr.get(c.key()) for c in att_cells if c.config.dataset == ds}
    jt.append(attacker_row(ds, "Ours (paper), slice detector", by_setting.get("Ours")))
    for c in jit_cells:
        if c.config.dataset == ds:
            jt.append(attacker_row(ds, f"Ours + jitter 0.5, {c.setting}", jit.get(c.key())))
    jt.append(attacker_row(ds, "Ours + jitter 0.5, widened detector", by_setting.get("Ours + jitter 0.5")))
jt = pd.DataFrame(jt)
print(f"attack cells not complete: {[(c.config.dataset, c.setting) for c in jit_missing] or 'none'}")
display(jt.set_index(["dataset", "attacker"]).round(2))
"""

put("# the verdict, read off the points above", "### Randomised slice boundaries", MD_JIT)
i = idx("### Randomised slice boundaries")
# the code cell right after the markdown (identified by its first line)
j = next((k for k, c in enumerate(cells) if c.cell_type == "code" and c.source.startswith("jit_cells = ")), None)
if j is None:
    cells.insert(i + 1, nbformat.v4.new_code_cell(CODE_JIT.strip("\n")))
else:
    cells[j].source = CODE_JIT.strip("\n")

# the frontier's families: the jittered variant is its own curve
k = next(k for k, c in enumerate(cells) if c.cell_type == "code" and c.source.startswith("FR = P.frontier"))
cells[k].source = cells[k].source.replace(
    'return "Ours + floor" if "floor" in setting else setting.split(",")[0]',
    'return "Ours + floor" if "floor" in setting else "Ours + jitter" if "jitter" in setting else setting.split(",")[0]')
assert "Ours + jitter" in cells[k].source
nbformat.write(nb, NB)
print("ok")

# ---------------------------------------------------------------- intro, 10.5 strengths, 10.7
nb = nbformat.read(NB, as_version=4); cells = nb.cells
old_intro = """Two measured results make the paper's defense weaker than it claims. In the book's small regime
compensation *lowered* accuracy (Chapter 4), and an attacker who locates the noised slices recovers
nearly the undefended image (Chapter 7). This chapter takes up the first (10.1-10.3), then attacks the
model during training (10.4) and measures the adaptive attacker's frontier with a hardened variant (10.5)."""
new_intro = """Two measured results make the paper's defense weaker than it claims. Compensation does not help
training: at the paper's scale (MNIST, 2000 rounds, 3 seeds, Chapter 8) the paper's compensation
ends below no compensation at all, and in the book's earlier 60-round regime it cost 10 points
(Chapter 4). And an attacker who locates the noised slices recovers nearly the undefended image
(Chapter 7). This chapter takes up the first (10.1-10.3), then attacks the model during training
(10.4) and measures the adaptive attacker's frontier with two hardened variants (10.5)."""
if old_intro in cells[0].source:
    cells[0].source = cells[0].source.replace(old_intro, new_intro)
assert new_intro in cells[0].source
i = idx("## 10.5 The adaptive attacker's frontier")
old = """0.8 (the paper's), 0.95, 0.99, Ours' ratio 0.2 (the paper's), 0.5, 1.0, and a **hardened variant**:
Ours at the paper's setting plus a noise floor of std 0.01 or 0.03 on every entry
(`PaperDefense(floor=...)`, its variance in the compensation), so that the slices the paper leaves
exact carry noise the detector cannot remove. Goal (issue 14): the adaptive attacker below 15 dB
with accuracy within 2 points of undefended."""
new = """0.8 (the paper's), 0.95, 0.99, Ours' ratio 0.2 (the paper's), 0.5, 1.0, and two **hardened variants**:
Ours at the paper's setting plus a noise floor of std 0.01 or 0.03 on every entry
(`PaperDefense(floor=...)`, its variance in the compensation), so that the slices the paper leaves
exact carry noise the detector cannot remove; and Ours with each client's slice boundaries
randomised (`PaperDefense(jitter=0.5)`, below), so that the server cannot align them. Goal
(issue 14): the adaptive attacker below 15 dB with accuracy within 2 points of undefended."""
if old in cells[i].source:
    cells[i].source = cells[i].source.replace(old, new)
assert new in cells[i].source
nbformat.write(nb, NB)
print("intro ok")

# ---------------------------------------------------------------- data-driven verdicts (default tables)
import numpy as np, pandas as pd
from fedshield.report import load_table
from fedshield.experiments import attack_campaign as A
from fedshield.experiments import campaign as C
D = "default"
NAME = {"mnist": "MNIST", "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
fa = load_table("attacks_frontier", D); ja = load_table("attacks_jitter", D)
t2acc = load_table("table2a_acc", D); pldacc = load_table("table2a_pld", D); flf = load_table("frontier", D)
dlg = load_table("attacks_dlg", D); cif = C.at_paper_scale(load_table("table2a_cifar", D))   # no cell run at fewer rounds
FR_SETS = ("mnist", "fmnist", "cifar10")
PLAN_FR = A.attack_plan("attacks_frontier", datasets=FR_SETS)
PLAN_J = A.attack_plan("attacks_jitter")
def fr_acc(ds, setting):
    paper = {"DP-G": ("dp-g", t2acc), "GC": ("gc", t2acc), "Ours": ("ours", t2acc), "PLD": ("pld", pldacc), "none": ("none", t2acc)}
    if setting in paper:
        row, t = paper[setting]
        t = cif if ds == "cifar10" else t   # CIFAR-10's paper-setting cells: Table II[A]'s CIFAR-10 campaign
        if t is None:
            return float("nan")
        v = t[(t.dataset == ds) & (t.row == row) & (t.seed == 0)].final_accuracy
    else:
        v = pd.Series(dtype=float) if flf is None else flf[(flf.dataset == ds) & (flf.row == setting) & (flf.seed == 0)].final_accuracy
    return float(v.mean()) if len(v) else float("nan")
def cell_rows(tab, c):
    return pd.DataFrame() if tab is None else tab[tab.cell == c.key()]
def med(tab, c):
    r = cell_rows(tab, c)
    return float(np.median(r.psnr.clip(upper=100))) if len(r) == c.config.images else float("nan")
def prec(tab, c):
    r = cell_rows(tab, c)
    return float(r.detect_precision.dropna().mean()) if len(r) == c.config.images and r.detect_precision.notna().any() else float("nan")
# the goal read off the raw tables (the verdict itself is printed by chapter 10's own code cell, from
# frontier_points, with claims.frontier_goal): which points meet it by median and with every victim, for 10.7
from fedshield.claims import FRONTIER_MAX_LOSS, FRONTIER_MAX_PSNR
def c_of(setting, ds):
    return next(c for c in PLAN_FR if c.setting == setting and c.config.dataset == ds)
meets_all, strict_all, n_done, n_all = {}, {}, 0, 0
for ds in FR_SETS:
    base = fr_acc(ds, "none")
    pts = [(c.setting, fr_acc(ds, c.setting), med(fa, c)) for c in PLAN_FR if c.config.dataset == ds]
    done = [(s, a, p) for s, a, p in pts if a == a and p == p]
    n_done += len(done); n_all += len(pts)
    if done:
        meets_all[ds] = [s for s, a, p in done if p < FRONTIER_MAX_PSNR and a >= base - FRONTIER_MAX_LOSS]
        strict_all[ds] = [s for s in meets_all[ds] if float(cell_rows(fa, c_of(s, ds)).psnr.max()) < FRONTIER_MAX_PSNR]
cells_ = nbformat.read(NB, as_version=4)
nb = cells_; cells = nb.cells

# randomised boundaries: what they buy
jl, ratios = [], []
SV = "server's slices"
for ds in ("mnist", "fmnist"):
    cj = {c.setting: c for c in PLAN_J if c.config.dataset == ds}
    plain, naive, wide = med(ja, cj["plain attack"]), med(ja, cj["server's slices"]), med(fa, c_of("Ours + jitter 0.5", ds))
    paper_muted = med(fa, c_of("Ours", ds))
    if wide == wide and paper_muted == paper_muted:
        ratios.append(wide / paper_muted)
    acc, base = fr_acc(ds, "Ours + jitter 0.5"), fr_acc(ds, "none")
    if all(v != v for v in (plain, naive, wide)):
        jl.append(f"- {NAME[ds]}: not measured yet.")
        continue
    jl.append(f"- {NAME[ds]}: plain attack {plain:.1f} dB; detector on the server's slices {naive:.1f} dB "
              f"(precision {prec(ja, cj[SV]):.2f}); widened detector {wide:.1f} dB "
              f"(precision {prec(fa, c_of('Ours + jitter 0.5', ds)):.2f}), against {paper_muted:.1f} dB for the paper's "
              f"common boundaries; accuracy "
              + (f"{100 * acc:.1f} % (undefended {100 * base:.1f} %)" if acc == acc else "not run yet") + ".")
# CIFAR-10 has only the frontier's (widened) attacker: its median passes the goal, its victims do not all
_cj = cell_rows(fa, c_of("Ours + jitter 0.5", "cifar10")) if any(c.config.dataset == "cifar10" for c in PLAN_FR) else pd.DataFrame()
_hi = sorted(_cj.psnr[_cj.psnr >= FRONTIER_MAX_PSNR], reverse=True) if len(_cj) else []
cif_jit = ("" if not len(_cj) or not _hi else
           f" On CIFAR-10 (the widened detector only) the median is {med(fa, c_of('Ours + jitter 0.5', 'cifar10')):.1f} dB, "
           f"below the goal's bound, but {len(_hi)} of {len(_cj)} victims come back at {' and '.join(f'{x:.1f}' for x in _hi)} dB: "
           "the same split, which only the per-victim reading of the verdict shows.")
_fw = [cell_rows(fa, c_of("Ours + floor 0.03", ds)).psnr for ds in FR_SETS]
_fw = [float(x.max()) for x in _fw if len(x)]
floor_worst = (f" (its worst victim {max(_fw):.1f} dB on any dataset"
               + (", just above the bound" if FRONTIER_MAX_PSNR <= max(_fw) < FRONTIER_MAX_PSNR + 2 else "") + ")" if _fw else "")
jtext = ("""**What the boundaries buy** (medians over 8 victims, DLG 500 L-BFGS steps).
""" + "\n".join(jl) + """

Against the Chapter 7 detector the randomised boundaries work: it still finds the noised slices,
but the noise that the moved edges carry into the slices it keeps spoils the match. The attacker
who knows the jitter's range (it is part of the defense's description, which Kerckhoffs' principle
says to assume public) widens each dropped slice by that range and reconstructs """ + ", ".join(
    f"{int((cell_rows(fa, c_of('Ours + jitter 0.5', ds)).psnr > 30).sum())} of {len(cell_rows(fa, c_of('Ours + jitter 0.5', ds)))} {NAME[ds]} victims"
    for ds in ("mnist", "fmnist") if len(cell_rows(fa, c_of("Ours + jitter 0.5", ds)))) + """ above
30 dB (most of them above 55 dB); the rest stay at 5-14 dB. On MNIST those are the three victims whose
noised slices include the first one (the first convolution's weights, the shortest slice) and whose
detection picks a neighbour instead, so the noise on the first layer stays in the match (the same
victims fail on Fashion-MNIST, which shares the noise and jitter draws, plus one more). The median
falls between the two groups, so it says little; the count says the variant fails the goal by far.""" + cif_jit + """
Randomising the boundaries only hides *where* the noise is to within the jitter, and the attacker
can afford to drop that much more of the gradient. It is kept as an option
(`PaperDefense(jitter=...)`), not recommended; the noise floor is the variant that holds""" + floor_worst + """, at its
own price.""")
put("jit_cells = A.attack_plan", "**What the boundaries buy**", jtext)
nbformat.write(nb, NB)
print("verdicts ok", n_done, n_all)

# ---------------------------------------------------------------- 10.7
nb = nbformat.read(NB, as_version=4); cells = nb.cells
cr = load_table("compensation_rules", D); f2 = load_table("fig2_table3de", D)
def acc_mean(t, row, ds="mnist"):
    v = t[(t.dataset == ds) & (t.row == row)].final_accuracy
    return 100 * float(v.mean()) if len(v) else float("nan")
def paired(t_a, row_a, t_b, row_b, ds="mnist"):
    a = t_a[(t_a.dataset == ds) & (t_a.row == row_a)].set_index("seed").final_accuracy
    b = t_b[(t_b.dataset == ds) & (t_b.row == row_b)].set_index("seed").final_accuracy
    d = (a - b).dropna() * 100
    return d
unc = acc_mean(f2, "uncompensated"); und = acc_mean(t2acc, "none")
rules = {r: acc_mean(cr, r) for r in ("per-layer hard", "per-layer shrink")}
rules["paper (global, Q = 6)"] = acc_mean(t2acc, "ours")
diffs = {r: paired(cr, r, f2, "uncompensated") for r in ("per-layer hard", "per-layer shrink")}
diffs["paper (global, Q = 6)"] = paired(t2acc, "ours", f2, "uncompensated")
tr_done, tr_all = A.attack_status("attacks_training", A.attack_plan("attacks_training"), D)
fl_fr_cells = C.plan("frontier", (0,), datasets=("mnist", "fmnist"))
fl_done = C.campaign_status("frontier", fl_fr_cells, D) if hasattr(C, "campaign_status") else None
missing_pts = [f"{NAME[c.config.dataset]} {c.setting}" for c in PLAN_FR if c.config.dataset != "cifar10"
               and not (fr_acc(c.config.dataset, c.setting) == fr_acc(c.config.dataset, c.setting) and med(fa, c) == med(fa, c))]
cif_none = None if cif is None else cif[(cif.row == "none")].final_accuracy
cif_txt = (f"the undefended CIFAR-10 run ends at {100 * float(cif_none.mean()):.1f} % after 2000 rounds (seed 0, paper 54.15 %), "
           if cif_none is not None and len(cif_none) else "")
PLAN_FR10 = A.attack_plan("attacks_frontier", datasets=("cifar10",))
cif_both = [(c.setting, fr_acc("cifar10", c.setting), med(fa, c)) for c in PLAN_FR10]
cif_both = [(k, a, p) for k, a, p in cif_both if a == a and p == p]
cif_pts = [(c.setting, med(fa, c)) for c in PLAN_FR10 if fr_acc("cifar10", c.setting) != fr_acc("cifar10", c.setting)]
cif_pts = [(k, v) for k, v in cif_pts if v == v]
cif_base = fr_acc("cifar10", "none")
cifar_att = (("Where only the attack half is measured (DLG, 8 victims, the adaptive attacker's median): "
              + "; ".join(f"{k} {v:.1f} dB" for k, v in cif_pts)
              + f" (undefended {med(dlg, next(c for c in A.attack_plan('attacks_dlg', datasets=('cifar10',)) if c.row == 'none')):.1f} dB)."
              + (f" PLD's CIFAR-10 FedAvg cell runs {C.SHORT_CELLS[('cifar10', 'pld')]} rounds by design (2000 would be 4-5 hours "
                 "of one core), so PLD has no accuracy at 2000 rounds there." if any(k == "PLD" for k, _ in cif_pts) else ""))
             if cif_pts else "The attack side is cheap (DLG on LeNet, about a minute a victim) and can be measured before the accuracy.")
# the frontier's accuracy axis is seed 0; the seed check (10.5's verdict) reads the (F)MNIST cells at more seeds
_sc = {} if flf is None else {ds: sorted(r for r, g in flf[flf.dataset == ds].groupby("row") if set(g.seed) >= {0, 1, 2})
                              for ds in ("mnist", "fmnist")}
_n_rows = len(C.FRONTIER)
seed_txt = ("the frontier's accuracy axis is seed 0. The seed check of 10.5's verdict (the loss against undefended, "
            "paired by seed) has the paper-setting points at 3 seeds and, of the "
            f"{_n_rows} other strengths, {len(_sc.get('mnist', []))} on MNIST and {len(_sc.get('fmnist', []))} on Fashion-MNIST "
            "(`tools/campaign.py frontier --seeds 1 2 --datasets mnist fmnist`, 5-9 minutes a cell); "
            "CIFAR-10's frontier is seed 0 only (1-2 hours a cell), so its seed spread is not measured.")
text106 = f"""## 10.7 What is not measured yet, and what did not work

- **The compensation goal is not met.** At 2000 rounds (MNIST, 3 seeds) the uncompensated defended run
  ends at {unc:.2f} % against {und:.2f} % undefended: the paper's noise, averaged over 10 clients and 2000
  rounds, costs nothing to remove. Every compensation ends below the uncompensated run:
  {'; '.join(f"{r} {v:.2f} % (paired by seed: {', '.join(f'{x:+.2f}' for x in diffs[r])} points)" for r, v in rules.items())}.
  Per-layer hard thresholding is within 1 point of undefended; none is at least as accurate as no
  compensation. The gaps are within the seed spread, but all of them point the same way: the
  per-layer rules cut the aggregate's error per round (10.2) yet train no better, because SGD
  averages unbiased noise away over rounds while a projection or shrinkage removes part of the
  true update every round (a bias that does not average out).
- **The frontier** {"is complete on MNIST and Fashion-MNIST." if not missing_pts else f"misses {len(missing_pts)} points: {', '.join(missing_pts)}."}
- **CIFAR-10** {"is not on the frontier" if not cif_both else f"has {len(cif_both)} of {len(PLAN_FR10)} points with both halves"}: a CIFAR-10 FedAvg cell at the paper's partition costs
  1-2 h of one core (2-3.5 s a round), {cif_txt}{"so the goal's third dataset is open. " if not cif_both else "points measured (seed 0 accuracy / median PSNR): " + "; ".join(f"{k} {100 * a:.1f} % / {p:.1f} dB" for k, a, p in cif_both) + f"; meeting the goal: {', '.join(meets_all.get('cifar10', [])) or 'none'}" + (f", with every victim below {FRONTIER_MAX_PSNR:g} dB too: {', '.join(strict_all.get('cifar10', [])) or 'none'}" if meets_all.get('cifar10') else "") + ". "}{cifar_att}
- **Seeds**: {seed_txt}
- **Attacks during training**: {tr_done} of {tr_all} victims attacked (`tools/attack_campaign.py attacks_training`).
- **Randomised boundaries** (10.5) do not hold against the attacker that knows their range: they are
  kept as an option (`PaperDefense(jitter=...)`) for the record, not recommended."""
i = idx("## 10.7")
cells[i].source = text106
nbformat.write(nb, NB)
print("10.7 ok")

# ---------------------------------------------------------------- 10.4 text, both datasets
nb = nbformat.read(NB, as_version=4); cells = nb.cells
tr = load_table("attacks_training", D)
PLAN_TR = A.attack_plan("attacks_training")
def trow(ds, r, row):
    c = next(c for c in PLAN_TR if c.config.dataset == ds and c.config.trained_round == r and c.row == row)
    x = pd.DataFrame() if tr is None else tr[tr.cell == c.key()]
    return x if len(x) == c.config.images else pd.DataFrame(columns=["psnr"])
def tmed(ds, r, row):
    x = trow(ds, r, row)
    return float(np.median(x.psnr.clip(upper=100))) if len(x) else float("nan")
def f1(x): return "n/a" if x != x else f"{x:.1f}"
lines, leak = [], []
for ds in ("mnist", "fmnist"):
    parts = [f"round {r}: " + " / ".join(f1(tmed(ds, r, row)) for row in ("none", "Ours", "Ours-muted"))
             for r in A.TRAINING_ROUNDS if any(tmed(ds, r, row) == tmed(ds, r, row) for row in ("none", "Ours", "Ours-muted"))]
    lines.append(f"- {NAME[ds]}: " + ("; ".join(parts) if parts else "not run yet") + ".")
    for r in (1000, 2000):
        x = trow(ds, r, "none")
        if len(x):
            leak.append((ds, r, int((x.psnr > 20).sum()), len(x)))
missing = [(ds, r) for ds in ("mnist", "fmnist") for r in A.TRAINING_ROUNDS
           if any(tmed(ds, r, row) != tmed(ds, r, row) for row in ("none", "Ours", "Ours-muted"))]
leak_txt = "; ".join(f"{NAME[ds]} round {r}: {k} of {n}" for ds, r, k, n in leak)
def above(ds, r, row):
    x = trow(ds, r, row)
    return int((x.psnr > 20).sum()), len(x)
muted_txt = "; ".join(
    f"{NAME[ds]} round {r}: {above(ds, r, 'Ours-muted')[0]} of {above(ds, r, 'Ours-muted')[1]} victims above 20 dB "
    f"(undefended {above(ds, r, 'none')[0]}, Ours {above(ds, r, 'Ours')[0]})"
    for ds in ("mnist", "fmnist") for r in A.TRAINING_ROUNDS
    if r > 0 and len(trow(ds, r, "Ours-muted")) and tmed(ds, r, "none") > 20)
t104 = f"""**What the rounds show** (medians over 8 victims, undefended / Ours / Ours-muted, dB).
""" + "\n".join(lines) + f"""

Undefended victims DLG still reconstructs above 20 dB on the trained model: {leak_txt or 'not run yet'}.
On MNIST the trained model stops DLG itself, so the defended rows there measure the attack's
failure, not the defense. Where the undefended attack still works after training, the muted
attacker against Ours: {muted_txt or 'not run yet'}.""" + (f"""

Not attacked yet: {', '.join(f'{NAME[d]} round {r}' for d, r in missing)} (`tools/attack_campaign.py attacks_training`).""" if missing else "")
i = idx("**What the rounds show**")
cells[i].source = t104
nbformat.write(nb, NB)
print("10.4 ok", leak)
