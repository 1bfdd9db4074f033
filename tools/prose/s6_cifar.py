"""The CIFAR-10 FedAvg cells' sentences in chapters 7 and 8, from table2a_cifar (idempotent)."""
import pathlib
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
import nbformat, re
from fedshield.report import load_table
cif = load_table("table2a_cifar", "default")
cn = cif[cif.row == "none"]
acc = 100 * float(cn.final_accuracy.mean()); n = len(cn)
from fedshield.report import paper_table
_pt = paper_table("II[A]").query("metric == 'ACC' and dataset == 'CIFAR-10'").set_index("row").value
LABEL = {"ours": "Ours", "gc": "GC", "dp-g": "DP-G", "dp-l": "DP-L", "pld": "PLD"}
_run = [(LABEL[d], 100 * float(cif[cif.row == d].final_accuracy.mean())) for d in LABEL if (cif.row == d).any()]
_left = [LABEL[d] for d in LABEL if not (cif.row == d).any()]
defended_txt = ("; ".join(f"{k} {v:.1f} % (paper {_pt[k]:.2f} %)" for k, v in _run)
                + (f"; {', '.join(_left)} {'has' if len(_left) == 1 else 'have'} not run and read NaN" if _left else "")
                ) if _run else "the defended cells have\nnot run and read NaN"
def edit(path, old_re, new):
    nb = nbformat.read(path, as_version=4)
    hit = 0
    for c in nb.cells:
        if c.cell_type == "markdown" and (re.search(old_re, c.source, flags=re.S) or new in c.source):
            c.source = re.sub(old_re, lambda _: new, c.source, flags=re.S); hit += 1
    assert hit == 1, (path, hit)
    nbformat.write(nb, path)
edit(str(ROOT) + "/notebooks/07_main_results.ipynb",
     r"CIFAR-10 at the paper's partition \(200 clients a round, about 1\.6 s a round\) is not in the campaign\nyet: its \[A\] cells read NaN\.|CIFAR-10 at the paper's partition \(1000 clients, 200 a round\): the undefended run.*?(?:read NaN|\(paper [0-9.]+ %\))\.",
     f"CIFAR-10 at the paper's partition (1000 clients, 200 a round): the undefended run ends at {acc:.1f} %\n"
     f"after 2000 rounds ({n} seed, paper 54.15 %, about 2 s a round on one core); {defended_txt}.")
edit(str(ROOT) + "/notebooks/08_paper_scale.ipynb",
     r"CIFAR-10 at the paper's partition \(200 clients a round\) costs about 1\.6 s a\nround here, an hour per 2000-round run; it is not in this page's tables yet \(8\.6\)\.|CIFAR-10 at the paper's partition \(1000 clients, 200 a round\) costs.*?\(8\.6\)\.",
     f"CIFAR-10 at the paper's partition (1000 clients, 200 a round) costs about 2 s a round\n"
     f"on one core, an hour per 2000-round run; undefended, it ends at {acc:.1f} % after 2000 rounds ({n} seed;\n"
     f"paper 54.15 %), {54.15 - acc:.0f} points below the paper (Fashion-MNIST: 13) (8.6).")
print("cifar ok", acc)
