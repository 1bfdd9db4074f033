"""Session 6: chapter 1's label-aware muted attacker section (idempotent)."""
import pathlib
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
import nbformat
NB = str(ROOT) + "/notebooks/01_threat_model.ipynb"
nb = nbformat.read(NB, as_version=4); cells = nb.cells
def idx(prefix):
    hits = [i for i, c in enumerate(cells) if c.source.lstrip().startswith(prefix)]
    assert len(hits) <= 1, (prefix, hits)
    return hits[0] if hits else None
MD = r"""## Why the detector fails on CIFAR-100: the root set misses the victim's class

The muted attacker's clean reference is the mean square of the root set's per-sample gradients.
A softmax layer's row $c$ gets $(p_c - 1)\,h$ from an image of class $c$ and only $p_c\,h$ from the
others, so the reference of a row is large only if the root set holds that class. 100 root images
hold every class of a 10-class dataset, but not of CIFAR-100: a victim whose class is missing has
its own output row far above the reference, the detector takes that row for noise and flags the
output layer's slices instead of the noised ones. The attacker who knows the victim's label (the
paper's threat model: known labels) relabels the root images to it
(`fedshield.attacks.adaptive.label_reference`; `AttackConfig(reference="label")`, plan
`attacks_label_aware`), on the same victims:"""
CODE = r"""from fedshield.experiments.attack import attack_root_set
la_cells = A.attack_plan("attacks_label_aware", iterations=AC["iterations"], images=AC["images"],
                         datasets=[d for d in ("cifar100", "cifar10") if d in P.datasets])
la, la_missing = A.collect_attacks("attacks_label_aware", la_cells, profile=AC["tables"], run=AC["run"])
la_rows = []
for c in la_cells:
    ds = c.config.dataset
    _, ry = attack_root_set(c.config)
    classes = set(ry.tolist())
    for name, r in (("root set's labels", res.get((ds, "ours, muted attacker"))), ("label-aware", la.get(c.key()))):
        if r is None:
            continue
        s = r["summary"]
        la_rows.append(dict(dataset=ds, reference=name, victims=s["victims"], psnr=s["psnr"]["median"],
                            psnr_q1=s["psnr"]["q1"], psnr_q3=s["psnr"]["q3"], ssim=s["ssim"]["median"],
                            detect=s["detect_precision"], root_classes=len(classes),
                            victims_class_in_root=int(r["rows"]["label"].isin(classes).sum())))
la_df = pd.DataFrame(la_rows)
print(f"cells not complete: {[(c.config.dataset, c.row) for c in la_missing] or 'none'}")
display(la_df.set_index(["dataset", "reference"]).round(2))"""
CHECK = r"""# Checks the test suite compares: the root set's classes and which victims' classes it holds are
# fixed by the seeds (no optimisation involved)
print({(r.dataset, r.reference): (r.root_classes, r.victims_class_in_root, r.victims) for r in la_df.itertuples()})"""
i = idx("## Why the detector fails on CIFAR-100")
if i is None:
    j = idx("_ = save_table(\"table1_threat_model\"")
    cells.insert(j + 1, nbformat.v4.new_markdown_cell(MD))
    cells.insert(j + 2, nbformat.v4.new_code_cell(CODE))
    cells.insert(j + 3, nbformat.v4.new_code_cell(CHECK))
else:
    cells[i].source = MD; cells[i + 1].source = CODE; cells[i + 2].source = CHECK
nbformat.write(nb, NB)
print("ch1 ok")

# the discussion's muted-attacker sentence (written by attack_prose.py) from the label-aware table
import numpy as np
from fedshield.report import load_table
from fedshield.experiments import attack_campaign as A
la = load_table("attacks_label_aware", "default")
def la_med(ds):
    if la is None: return None
    c = next(c for c in A.attack_plan("attacks_label_aware") if c.config.dataset == ds)
    r = la[la.cell == c.key()]
    return (float(np.median(r.psnr.clip(upper=100))), float(r.detect_precision.mean()), len(r)) if len(r) == c.config.images else None
nb = nbformat.read(NB, as_version=4); cells = nb.cells
i = idx("## Discussion")
old = ("Where the detector fails (CIFAR-100, whose LeNet has a ten times larger FC layer for its 100 classes; why detection "
       "fails there we have not established) the muted attacker gets nothing back: the attack is only as good as the detector.")
m100, m10 = la_med("cifar100"), la_med("cifar10")
new = ("Where the detector fails (CIFAR-100: the root set misses the victims' classes, see above) the muted attacker "
       "gets nothing back" + (f"; with the label-aware reference it finds every noised slice (precision {m100[1]:.2f}) and "
                             f"recovers {m100[0]:.1f} dB on CIFAR-100" + (f" ({m10[0]:.1f} dB on CIFAR-10 at precision {m10[1]:.2f})" if m10 else "")
                             if m100 else "") + ". The attack is only as good as the detector, and the detector's weak point was the attacker's, not the defense's.")
src = cells[i].source
if old in src:
    src = src.replace(old, new)
else:
    import re
    src = re.sub(r"Where the detector fails \(CIFAR-100: the root set misses.*?not the defense's\.", lambda _: new, src, flags=re.S)
assert new in src
cells[i].source = src
nbformat.write(nb, NB)
print("ch1 discussion ok", m100, m10)
