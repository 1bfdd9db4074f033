"""One source per chapter: ``notebooks/`` is hand-edited, ``book/`` and ``tests/notebooks/`` are
papermill executions of it (``fedshield reproduce``) and must stay in step with it; executed copies
are deterministic files (no timestamps, no fresh ids); the sources follow the book's conventions."""
import copy
import json
import re

import pytest

from fedshield.reproduce import (INJECTED_ID, NOTEBOOKS, executed_copies, normalize_executed, read_notebook,
                                 repo_root, source_drift, write_notebook)

ROOT = repo_root()
PAIRS = executed_copies(ROOT)


def _code_sources(nb):
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_every_chapter_has_both_executed_copies():
    names = {(d.parent.name, d.stem) for _, d in PAIRS}
    for name in NOTEBOOKS:
        assert ("book", name) in names and ("notebooks", name) in names, f"{name}: an executed copy is missing"


@pytest.mark.parametrize("source,executed", PAIRS, ids=[f"{d.parent.name}/{d.stem}" for _, d in PAIRS])
def test_executed_copy_matches_its_source(source, executed):
    drift = source_drift(source, executed)
    assert not drift, (f"{executed.relative_to(ROOT)} is not an execution of {source.relative_to(ROOT)}: "
                       + "; ".join(drift) + ". Re-run `fedshield reproduce --profile ... --only NAME`.")


@pytest.mark.parametrize("source,executed", PAIRS, ids=[f"{d.parent.name}/{d.stem}" for _, d in PAIRS])
def test_executed_copy_has_no_execution_noise(source, executed):
    nb = read_notebook(executed)
    assert normalize_executed(nb, read_notebook(source)) == nb, f"{executed.name} is not normalised"
    text = executed.read_text(encoding="utf-8")
    assert '"start_time"' not in text and '"iopub.execute_input"' not in text


@pytest.mark.parametrize("source,executed", PAIRS, ids=[f"{d.parent.name}/{d.stem}" for _, d in PAIRS])
def test_every_figure_is_stored_in_the_executed_copy(source, executed):
    """A cell that shows a figure carries it: a kernel on a non-inline matplotlib backend (say
    MPLBACKEND=Agg inherited from the shell) runs the cell and silently keeps no image."""
    nb = read_notebook(executed)
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] == "code" and "plt.show()" in "".join(c["source"]):
            kinds = {k for o in c.get("outputs", []) for k in o.get("data", {})}
            assert "image/png" in kinds, f"{executed.name}, cell {i}: shows a figure but stores none"


def _executed_like(src, stamp):
    """What papermill makes of ``src``: an injected-parameters cell with a random id, timestamps."""
    nb = copy.deepcopy(src)
    i = next(i for i, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", []))
    inj = {"cell_type": "code", "execution_count": 2, "id": f"rand{stamp}",
           "metadata": {"tags": ["injected-parameters"], "papermill": {"start_time": f"2026-01-0{stamp}"}},
           "outputs": [], "source": ["# Parameters\n", 'profile = "smoke"\n']}
    nb["cells"].insert(i + 1, inj)
    for c in nb["cells"]:
        c["metadata"]["execution"] = {"iopub.status.busy": f"2026-01-0{stamp}T00:00:00Z"}
    nb["metadata"]["papermill"] = {"start_time": f"2026-01-0{stamp}", "duration": stamp,
                                   "parameters": {"profile": "smoke"}, "version": "2.7.0"}
    nb["metadata"]["language_info"] = {"name": "python", "version": f"3.11.{stamp}"}
    return nb


def test_two_executions_with_the_same_results_write_the_same_bytes(tmp_path):
    src = read_notebook(ROOT / "notebooks" / "06_convergence.ipynb")
    a, b = (normalize_executed(_executed_like(src, s), src) for s in (1, 2))
    write_notebook(a, tmp_path / "a.ipynb")
    write_notebook(b, tmp_path / "b.ipynb")
    assert (tmp_path / "a.ipynb").read_bytes() == (tmp_path / "b.ipynb").read_bytes()
    inj = [c for c in a["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert [c["id"] for c in inj] == [INJECTED_ID] and "remove-cell" in inj[0]["metadata"]["tags"]
    assert a["metadata"]["papermill"] == {"parameters": {"profile": "smoke"}}
    assert source_drift(src, a) == []


def test_drift_is_detected_in_code_markdown_tags_and_cell_count():
    src = read_notebook(ROOT / "notebooks" / "06_convergence.ipynb")
    good = normalize_executed(_executed_like(src, 1), src)
    assert source_drift(src, good) == []
    code_i = next(i for i, c in enumerate(good["cells"]) if c["cell_type"] == "code"
                  and not {"parameters", "injected-parameters"} & set(c["metadata"].get("tags", [])))
    for mutate, what in [
        (lambda nb: nb["cells"][code_i]["source"].append("\nprint('drifted')"), "source differs"),
        (lambda nb: nb["cells"][0]["source"].append("\nA sentence only the copy has."), "source differs"),
        (lambda nb: nb["cells"][code_i]["metadata"].setdefault("tags", []).append("nbval-check-output"), "tags differ"),
        (lambda nb: nb["cells"].pop(), "missing"),
    ]:
        drifted = copy.deepcopy(good)
        mutate(drifted)
        report = source_drift(src, drifted)
        assert report and what in " ".join(report), (what, report)
    # the parameter cells may differ: that is what papermill changes
    params = copy.deepcopy(good)
    for c in params["cells"]:
        if "injected-parameters" in c["metadata"].get("tags", []):
            c["source"] = ['profile = "default"\n']
    assert source_drift(src, params) == []


SOURCES = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_source_conventions(path):
    nb = read_notebook(path)
    assert all(c.get("outputs", []) == [] for c in nb["cells"] if c["cell_type"] == "code"), \
        f"{path.name}: the source notebook stores outputs (only executed copies do)"
    code = "\n".join(_code_sources(nb))
    assert not re.search(r"filterwarnings\(\s*[\"']ignore[\"']\s*\)", code), f"{path.name}: blanket warning filter"
    assert not re.search(r"except\s+Exception", code), f"{path.name}: catches every exception"
    params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1 and "remove-cell" in params[0]["metadata"]["tags"], \
        f"{path.name}: one parameters cell, hidden from the book"
    checked = [c for c in nb["cells"] if "nbval-check-output" in c["metadata"].get("tags", [])]
    for c in checked:
        assert "".join(c["source"]).strip(), f"{path.name}: an empty checked cell"


def test_source_files_are_written_as_jupyter_writes_them():
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False) + "\n", path.name
