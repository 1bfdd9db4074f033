"""Run the book's notebooks with papermill under a profile, then build the book.

Profiles (the parameter ``profile`` of every notebook; scales in :mod:`fedshield.profiles`):

- ``smoke``   tiny; what CI executes; the executed copies go to ``tests/notebooks/`` for nbval.
- ``default`` the scale of the book's numbers; executed copies go to ``book/``.
- ``paper``   the paper's scale (GPU recommended); executed copies go to ``book/``.

Experiments inside the notebooks go through the package's result cache, so re-running reuses
finished work and an interrupted run resumes.

``notebooks/`` is the only hand-edited copy of a chapter. The executed copies in ``book/`` and
``tests/notebooks/`` are produced from it by :func:`run_notebooks` and nothing else:
:func:`normalize_executed` strips what changes from one execution to the next without the results
changing (papermill's timestamps and durations, the kernel's version string, the random id papermill
gives its injected-parameters cell), so re-running a chapter whose results are cached leaves no
diff; :func:`source_drift` lists the cells in which an executed copy no longer matches its source
(a test runs it on every copy).
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import FedshieldError

NOTEBOOKS = [
    "01_threat_model",
    "02_leakage_risk",
    "03_slicing_perturbation",
    "04_compensation",
    "05_clipping",
    "06_convergence",
    "07_main_results",
    "08_paper_scale",
    "09_summary",
    "09a_appendix_tables",
    "10_beyond_paper",
]
PROFILES = ("smoke", "default", "paper")
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def repo_root() -> Path:
    here = Path(__file__).resolve().parents[1]
    if not (here / "notebooks").is_dir():
        raise FedshieldError(f"notebooks/ not found next to the package ({here}); run from a source checkout")
    return here


def output_dir(profile: str, root: Path | None = None) -> Path:
    root = root or repo_root()
    return root / ("tests/notebooks" if profile == "smoke" else "book")


def run_notebooks(profile: str = "default", only: list[str] | None = None, *, build: bool = True,
                  progress: bool = True, kernel: str = "python3") -> list[Path]:
    """Execute ``notebooks/*.ipynb`` with ``profile`` into the profile's output folder."""
    import papermill as pm

    if profile not in PROFILES:
        raise FedshieldError(f"unknown profile {profile!r}; choose from {list(PROFILES)}")
    root = repo_root()
    names = NOTEBOOKS
    if only:
        unknown = [n for n in only if not any(k == n or k.split("_", 1)[1] == n or k.startswith(n) for k in NOTEBOOKS)]
        if unknown:
            raise FedshieldError(f"unknown notebook(s) {unknown}; choose from {NOTEBOOKS}")
        names = [k for k in NOTEBOOKS if any(k == n or k.split("_", 1)[1] == n or k.startswith(n) for n in only)]
    out = output_dir(profile, root)
    out.mkdir(parents=True, exist_ok=True)
    env_backup = os.environ.get("MPLBACKEND")
    # the kernels inherit this: Jupyter's inline backend stores every figure in the notebook (and
    # needs no display). With MPLBACKEND=Agg, ipykernel >= 7 honours Agg and no figure is kept.
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # kernels inherit it: no busy-waiting OpenMP threads
    done = []
    try:
        for i, name in enumerate(names, 1):
            src = root / "notebooks" / f"{name}.ipynb"
            if not src.exists():
                raise FedshieldError(f"missing notebook {src}")
            dst = out / f"{name}.ipynb"
            t0 = time.time()
            print(f"[{i}/{len(names)}] {name} (profile={profile}) -> {dst.relative_to(root)}", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / dst.name
                try:
                    pm.execute_notebook(str(src), str(raw), parameters={"profile": profile}, kernel_name=kernel,
                                        cwd=str(root / "notebooks"), progress_bar=progress)
                except Exception:
                    # keep the stored copy as it was; the failed execution goes where it can be read
                    failed = root / "results" / "failed" / dst.name
                    failed.parent.mkdir(parents=True, exist_ok=True)
                    if raw.exists():
                        raw.replace(failed)
                        print(f"      FAILED: the partial execution is in {failed.relative_to(root)}", flush=True)
                    raise
                write_notebook(normalize_executed(read_notebook(raw), read_notebook(src)), dst)
            print(f"      done in {time.time() - t0:.0f} s", flush=True)
            done.append(dst)
    finally:
        if env_backup is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backup
    if build and profile != "smoke":
        build_book(root)
    return done


def build_book(root: Path | None = None) -> None:
    root = root or repo_root()
    exe = Path(sys.executable).with_name("jupyter-book")
    # as `make book`: every page re-read, warnings are errors (the executed copies are already
    # written and the results cached, so a failed build loses nothing)
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root / "book"), "--all", "-W", "--keep-going"]
    print("building the book:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


# --- executed copies: deterministic files, checked against their source ---------------------------

#: tags of the cells that hold a notebook's parameters (papermill's cell and the one it injects):
#: the only code cells in which an executed copy may differ from its source
PARAMETER_TAGS = frozenset({"parameters", "injected-parameters"})
INJECTED_ID = "injected-parameters"


def read_notebook(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_notebook(nb: dict, path: str | os.PathLike) -> None:
    """Write ``nb`` as Jupyter does (1-space indent, sorted keys, trailing newline), atomically."""
    path = Path(path)
    text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ipynb.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes it private; a notebook is an ordinary file
    os.replace(tmp, path)


def _cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: dict) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


def normalize_executed(executed: dict, source: dict) -> dict:
    """``executed`` (a papermill output of ``source``) without what varies between two executions
    with the same results: per-cell execution timestamps and papermill timings, the notebook-level
    papermill record (its parameters are kept), the kernel's ``language_info`` (the source's is
    kept), and the random id of the injected-parameters cell, which gets a fixed id and the
    ``remove-cell`` tag (the book shows the chapter, not papermill's plumbing)."""
    nb = copy.deepcopy(executed)
    params = nb.get("metadata", {}).get("papermill", {}).get("parameters")
    meta = {k: v for k, v in nb.get("metadata", {}).items() if k not in ("papermill", "language_info")}
    if "language_info" in source.get("metadata", {}):
        meta["language_info"] = copy.deepcopy(source["metadata"]["language_info"])
    if params is not None:
        meta["papermill"] = {"parameters": params}
    nb["metadata"] = meta
    for cell in nb.get("cells", []):
        md = cell.setdefault("metadata", {})
        md.pop("papermill", None)
        md.pop("execution", None)
        if "injected-parameters" in md.get("tags", []):
            cell["id"] = INJECTED_ID
            if "remove-cell" not in md["tags"]:
                md["tags"] = list(md["tags"]) + ["remove-cell"]
        if not md.get("tags"):
            md.pop("tags", None)
    return nb


def _comparable(nb: dict) -> list[tuple[str, str, tuple]]:
    return [(c["cell_type"], _cell_source(c).strip(), tuple(t for t in _tags(c) if t != "remove-cell"))
            for c in nb.get("cells", []) if not PARAMETER_TAGS & set(_tags(c))]


def source_drift(source: str | os.PathLike | dict, executed: str | os.PathLike | dict) -> list[str]:
    """Where an executed copy no longer matches its source: one line per differing cell (type,
    source text or tags), parameter cells aside. Empty when the copy is in step."""
    src = read_notebook(source) if not isinstance(source, dict) else source
    exe = read_notebook(executed) if not isinstance(executed, dict) else executed
    a, b = _comparable(src), _comparable(exe)
    out = []
    for i in range(max(len(a), len(b))):
        if i >= len(a):
            out.append(f"cell {i}: extra {b[i][0]} cell in the executed copy")
        elif i >= len(b):
            out.append(f"cell {i}: {a[i][0]} cell missing from the executed copy")
        elif a[i] != b[i]:
            what = ("type" if a[i][0] != b[i][0] else "source" if a[i][1] != b[i][1] else "tags")
            first = (a[i][1].splitlines() or [""])[0][:60]
            out.append(f"cell {i}: {what} differs ({a[i][0]} starting {first!r})")
    return out


def executed_copies(root: Path | None = None) -> list[tuple[Path, Path]]:
    """Every (source, executed copy) pair of the checkout."""
    root = root or repo_root()
    pairs = []
    for name in NOTEBOOKS:
        for profile in ("smoke", "default"):
            dst = output_dir(profile, root) / f"{name}.ipynb"
            if dst.exists():
                pairs.append((root / "notebooks" / f"{name}.ipynb", dst))
    return pairs
