"""README status bullets 1-2 (attacks at the paper's scale) and a beyond-the-paper bullet (idempotent)."""
import pathlib
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
import sys
sys.path.insert(0, str(ROOT))
exec(open(str(HERE / "attack_prose.py")).read().split("# ---- end of the helpers s6_readme.py executes\n")[0])
R = str(ROOT) + "/README.md"
s = open(R).read()
a = s.index("- **Against the plain attacker the defense mostly works**")
b = s.index("- **Accuracy at the paper's scale**")
def rng(vals):
    v = [x for x in vals if x == x]
    return f"{min(v):.0f}-{max(v):.0f}" if v else "n/a"
DS4 = ("mnist", "fmnist", "cifar10", "cifar100")
_fp = load_table("frontier_points", D)
_fl = [] if _fp is None else [(r.dataset, r.psnr_median, r.acc - _fp[(_fp.dataset == r.dataset) & (_fp.family == "undefended")].acc.iloc[0],
                               getattr(r, "psnr_max", float("nan")))   # the worst victim: a median can hide one
                              for r in _fp[_fp.setting == "Ours + floor 0.03"].itertuples() if r.acc == r.acc and r.psnr_median == r.psnr_median]
_NM = {"mnist": "MNIST", "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
IG_DS = [d for d in ("mnist", "fmnist", "cifar10") if n(ig, PLAN_IG, d, "none") and n(ig, PLAN_IG, d, "Ours")]
floor_txt = (f"at {' / '.join(f'{p:.1f}' for _, p, _, _ in _fl)} dB on {' / '.join(_NM[d] for d, _, _, _ in _fl)}, within "
             f"{max(abs(x) for _, _, x, _ in _fl) * 100:.1f} points" if _fl else "at about 13 dB, within half a point")
_w = [w for *_, w in _fl if w == w]
worst_txt = ("" if not _fl or len(_w) < len(_fl) else
             f"; medians, the worst of the 8 victims {' / '.join(f'{w:.1f}' for w in _w)} dB"
             + (", so not every victim stays below 15 dB" if max(_w) >= 15 else ""))
from fedshield.claims import FRONTIER_MAX_LOSS, frontier_dominance
_dom = frontier_dominance(_fp, (FRONTIER_MAX_LOSS,)) if _fp is not None else None
_low = {} if _dom is None else {ds: g for ds, g in _dom[_dom.lowest].groupby("dataset", sort=False)}
_best = {", ".join(g.setting) for g in _low.values()}
dom_txt = ("" if not _low else
           f" At equal accuracy (within {100 * FRONTIER_MAX_LOSS:.0f} points of undefended) the most private point of the "
           "frontier is " + (f"{_best.pop()} at the paper's variance" if len(_best) == 1 and "DP-G" in _best else
                             "; ".join(f"{_NM[d]} {', '.join(g.setting)}" for d, g in _low.items()))
           + f" ({' / '.join(f'{g.psnr_median.iloc[0]:.1f}' for g in _low.values())} dB on {' / '.join(_NM[d] for d in _low)}):"
           " in the pseudo-gradient reading of the noise, plain noise on every entry is the configuration to beat.")
new = f"""- **Against the plain attacker the defense mostly works** (DLG, 500 L-BFGS steps, medians over 8
  victims, Tables I and II[A]): the reconstruction drops from {rng([med(dlg, PLAN_DLG, d, 'none') for d in DS4])} dB undefended to
  {rng([med(dlg, PLAN_DLG, d, 'Ours') for d in DS4])} dB (MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100; the paper: 9.4-9.7 dB), Inverting
  Gradients' (1000 Adam steps, width-64 ConvNet) from {rng([med(ig, PLAN_IG, d, 'none') for d in IG_DS])} dB to {rng([med(ig, PLAN_IG, d, 'Ours') for d in IG_DS])} dB ({', '.join(_NM[d] for d in IG_DS)}). A quarter of the
  DLG victims keep 12-14 dB on the greyscale datasets: when the two noised slices miss most of the
  risk, the rest of the gradient leaks.
- **An adaptive attacker defeats it at the paper's ratios**: one who locates the two noisy slices
  (of 10; ratio 0.2) and matches the rest recovers {rng([med(dlg, PLAN_DLG, d, 'Ours-muted') for d in ('mnist', 'fmnist')])} dB on MNIST / Fashion-MNIST (undefended
  {rng([med(dlg, PLAN_DLG, d, 'none') for d in ('mnist', 'fmnist')])} dB) and {f1(med(dlg, PLAN_DLG, 'cifar10', 'Ours-muted'))} dB on CIFAR-10 (undefended {f1(med(dlg, PLAN_DLG, 'cifar10', 'none'))}); against Inverting Gradients
  {f1(med(ig, PLAN_IG, 'cifar10', 'Ours-muted'))} dB on CIFAR-10 (undefended {f1(med(ig, PLAN_IG, 'cifar10', 'none'))}). Beyond the paper (Chapter 10): a noise floor of std 0.03 on every
  entry keeps this attacker {floor_txt} of undefended accuracy (seed 0, 2000 rounds{worst_txt}), but is worth
  what the floor alone is worth; randomising the slice boundaries per client does not hold against
  an attacker who knows the jitter's range.{dom_txt}
"""
s = s[:a] + new + s[b:]
old_row = "beyond the paper, per-layer `compensate_layers` (hard threshold or optimal shrinkage) |"
new_row = ("beyond the paper, per-layer `compensate_layers` (hard threshold or optimal shrinkage) and the hardened "
           "variants `PaperDefense(floor=...)` (noise on every entry) and `PaperDefense(jitter=...)` (per-client slice boundaries, `jitter_bounds`) |")
if old_row in s:
    s = s.replace(old_row, new_row)
assert new_row in s
open(R, "w").write(s)
print("readme ok")
