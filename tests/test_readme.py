"""The README's status section against the committed tables: every number in it is recomputed here
(from ``results/tables/default``, the paper's numbers and the campaign's settings) and every verdict
it states is fedshield.claims' on the same tables. A number the test does not recompute fails it."""
from __future__ import annotations

import re

import pytest

from fedshield import claims
from fedshield.book import findings as F
from fedshield.book.frontier import frontier_points
from fedshield.experiments.scoring import N_CANDIDATES
from fedshield.report import load_table
from fedshield.reproduce import repo_root

README = repo_root() / "README.md"
START, END = "## Status of the reproduction", "The paper's Tables II and III are in"
D3, D2 = ("mnist", "fmnist", "cifar10"), ("mnist", "fmnist")
#: numbers that are names, not measurements
NAMES = re.compile(r"Chapters? \d+|Table (I{1,3}|II\[[AB]\])|CIFAR-10|width-\d+(?= ConvNet)|L-BFGS|[A-Z]-\w")


def status() -> str:
    text = README.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, "the README's status section is not where the test looks"
    return " ".join(text[text.index(START) + len(START):text.index(END)].split())


@pytest.fixture(scope="module")
def tables():
    return F.load_tables("default", names=F.TABLES)


@pytest.fixture(scope="module")
def verdicts():
    t = {n: load_table(n, "default", root=F.committed_results()) for n in claims.tables_needed()}
    return claims.evaluate(t).set_index("key").verdict


def facts(T) -> dict[str, str]:
    """Every number of the status section, as the README prints it, recomputed from the tables."""
    dlg = lambda d, r: F.med(T, "attacks_dlg", d, r)
    ig = lambda d, r: F.med(T, "attacks_ig", d, r)
    span = lambda v, fmt="{:.1f}": F.span(v, fmt)
    acc3 = lambda row: [F.fedavg(T, "table2a_acc", d, row)[0] for d in D2] + [F.fedavg(T, "table2a_cifar", "cifar10", row)[0]]
    pap = lambda table, d, row, metric: F.paper_value(table, F.NAME[d], row, metric)
    slashes = lambda v, fmt="{:.1f}": " / ".join(fmt.format(x) for x in v)
    steps, victims = F.dlg_scale()
    ig_steps, width = F.ig_scale()
    spec = T["compensation_spectrum"].set_index("variance")
    none, gc = acc3("none"), acc3("gc")
    art = F.art_ratio(T, "pld")
    return {
        "DLG scale": f"DLG ({steps} L-BFGS steps, medians over {victims} victims)",
        "DLG undefended": f"from {span([dlg(d, 'none') for d in D3])} dB undefended",
        "DLG Ours": f"to {span([dlg(d, 'Ours') for d in D3])} dB",
        "paper Ours PSNR": f"the paper: {span([pap('II[A]', d, 'Ours', 'PSNR') for d in D3])} dB",
        "IG scale": f"Inverting Gradients ({ig_steps} Adam steps, width-{width} ConvNet)",
        "IG": f"from {span([ig(d, 'none') for d in D3])} dB to {span([ig(d, 'Ours') for d in D3])} dB",
        "baselines DLG": f"reach {span([dlg(d, r) for d in D3 for r in ('GC', 'DP-G', 'DP-L', 'PLD')])} dB",
        "headline": f"more than {100 * claims.HEADLINE_REDUCTION:.0f} % lower than the baselines",
        "muted": f"recovers {span([dlg(d, 'Ours-muted') for d in D3])} dB with DLG and "
                 f"{span([ig(d, 'Ours-muted') for d in D3])} dB with Inverting Gradients",
        "rounds": f"the paper's {max(T['table2a_acc'].rounds)} rounds",
        "undefended ACC": f"undefended {slashes(100 * v for v in none)} %",
        "paper undefended ACC": f"paper: {slashes((pap('II[A]', d, 'none', 'ACC') for d in D3), '{:.2f}')} %",
        "Ours ACC": f"Ours {slashes(100 * v for v in acc3('ours'))} %",
        "DP-G ACC": f"states, {slashes(100 * v for v in acc3('dp-g'))} %",
        "paper DP-G ACC": f"the paper: {slashes((pap('II[A]', d, 'DP-G', 'ACC') for d in D3), '{:.2f}')} %",
        "GC loss": f"GC loses {span([100 * (a - b) for a, b in zip(none, gc)])} points",
        "paper GC loss": f"not the paper's {span([pap('II[A]', d, 'none', 'ACC') - pap('II[A]', d, 'GC', 'ACC') for d in D3])}",
        "compensation ours": f"({spec.err_perturbed.iloc[0]:.2f} -> {spec.loc['ours', 'err_compensated']:.2f})",
        "compensation paper": f"({spec.err_perturbed.iloc[0]:.2f} -> "
                              f"{spec[spec.index.str.startswith('paper')].err_compensated.iloc[0]:.2f})",
        "Ours share": f"take {100 * F.defense_share(T):.1f} % of an undefended round",
        "paper ART": f"the paper: +{span([pap('II[A]', d, 'Ours', 'ART') for d in D3])} %",
        "PLD ART": f"score {span(art[list(D3)], '{:.2f}')} times the round",
        **frontier_facts(),
    }


def frontier_facts() -> dict[str, str]:
    """The floor-relative frontier bullet (Chapter 10), from the committed attack and FedAvg tables."""
    fr = frontier_points("default", D3, root=F.committed_results())
    floors = " / ".join(f"{fr[fr.dataset == d].psnr_floor.median():.1f}" for d in D3)
    dpg = fr[(fr.dataset == "mnist") & (fr.setting == "DP-G")].iloc[0]
    n = int(dpg.victims)
    return {"floors": f"the update: {floors} dB on",
            "MAP DP-G": f"identifies {int(round(dpg.identified_MAP * n))} of {n} MNIST victims among "
                        f"{N_CANDIDATES} images of their class",
            "MAP gain": f"variance, {dpg.gain_MAP:.1f} dB above the floor",
            "DP-G 1": "(DP-G at variance 1) stops identification at the cost of a point of accuracy after 2000 rounds"}


def test_every_fact_is_in_the_status_section(tables):
    text = status()
    missing = {k: v for k, v in facts(tables).items() if v not in text}
    assert not missing, "the README's status section does not say what the tables say: " + "; ".join(
        f"{k}: expected '{v}'" for k, v in missing.items())


def unchecked(text: str, checked) -> list[str]:
    """The numbers of ``text`` outside the ``checked`` fragments and the names of :data:`NAMES`."""
    for v in checked:
        text = text.replace(v, " ")
    return re.findall(r"\d+(?:\.\d+)?", NAMES.sub(" ", text))


def test_no_number_in_the_status_section_goes_unchecked(tables):
    left = unchecked(status(), facts(tables).values())
    assert not left, f"numbers in the README's status section that no test recomputes: {left}"


def test_the_verdicts_it_states_are_the_claims(tables, verdicts):
    text = status()
    said = {"headline": ('"more than 60 % lower than the baselines" does not hold', "NOT supported"),
            "muted_dlg": ("An adaptive attacker defeats it", "NOT supported"),
            "protects_dlg": ("Against the plain attacker the defense works", "supported"),
            "ours_accuracy": ("it keeps accuracy", "supported"),
            "dp_chance": ("So does DP-G", "NOT supported"),
            "gc_loses": ("GC loses", "NOT supported"),
            "comp_error": ("lowers a single aggregate's error", "supported"),
            "paper_variance": ("makes the aggregate worse", "supported"),
            "frontier_identified": ("the paper's noise does not protect a client's image", "NOT supported")}
    for key, (words, verdict) in said.items():
        assert words in text, words
        assert verdicts[key] == verdict, f"the README says '{words}', claims say {key}: {verdicts[key]}"
    # "the paper's noise does not protect": no strength of the paper's defenses meets the floor-relative goal;
    # "a hundred times stronger ... stops identification ... a point ... still draws a little": DP-G at variance 1
    fr = frontier_points("default", D3, root=F.committed_results())
    goal = claims.frontier_goal_identified(fr)
    paper = {"DP-G", "GC", "Ours", "PLD"}
    assert not any(f["meets"].setting.isin(paper).any() for f in goal.values())
    p1 = fr[(fr.dataset == "mnist") & (fr.setting == "DP-G, variance 1")].iloc[0]
    assert p1.identified == 0 and p1.gain_max > 0
    none_acc = fr[(fr.dataset == "mnist") & (fr.setting == "none")].acc.iloc[0]
    dpg1 = fr[(fr.dataset == "mnist") & (fr.setting == "DP-G, variance 1")].acc.iloc[0]
    assert 0.005 <= none_acc - dpg1 < 0.015   # "a point"
    # "so does DP-G": it keeps accuracy by the same margin as Ours
    none = [F.fedavg(tables, "table2a_acc", d, "none")[0] for d in D2]
    dpg = [F.fedavg(tables, "table2a_acc", d, "dp-g")[0] for d in D2]
    assert all(a - b < claims.ACC_TOLERANCE for a, b in zip(none, dpg))


def test_the_check_catches_a_stale_number(tables):
    """A number that no longer matches its table is reported, not passed over."""
    f = facts(tables)
    text = status()
    stale = text.replace(f["Ours share"], f["Ours share"].replace("take ", "take 1"))
    assert f["Ours share"] not in stale and unchecked(stale, f.values())
    assert not unchecked(text, f.values())


def test_the_readme_keeps_its_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make book" in text and "make test" in text
    assert "tools/prose" not in text and "run_all.sh" not in text
