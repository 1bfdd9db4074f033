import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]


def _session_environment() -> tuple[str | None, list[str]]:
    """What `make test` sets, for a plain ``pytest`` run (an IDE, ``python -m pytest tests``): a fresh
    result cache and table folder (``FEDSHIELD_CACHE``, ``FEDSHIELD_RESULTS``) in one temporary folder,
    so that nothing stale is reused and no committed table is rewritten, and ``FEDSHIELD_DATA`` as the
    Makefile chooses it (``../shared/data`` next to the repository when it exists, else ``data``).
    Variables already set are kept, so `make test` runs as before. Set here, at import, because the
    notebooks' kernels inherit the environment and chapter 9's check below reads it at collection.
    Returns the temporary folder (or None) and the names set, both undone at the end of the session."""
    made, names = None, []
    for name, sub in (("FEDSHIELD_RESULTS", "results"), ("FEDSHIELD_CACHE", "cache")):
        if not os.environ.get(name):
            made = made or tempfile.mkdtemp(prefix="fedshield-tests-")
            os.environ[name] = str(Path(made) / sub)
            names.append(name)
    if not os.environ.get("FEDSHIELD_DATA"):
        shared = REPO.parent / "shared" / "data"
        os.environ["FEDSHIELD_DATA"] = str(shared.resolve() if shared.is_dir() else REPO / "data")
        names.append("FEDSHIELD_DATA")
    return made, names


_MADE, _SET = _session_environment()


def pytest_report_header(config):
    if _MADE:
        return f"fedshield: {', '.join(n for n in _SET if n != 'FEDSHIELD_DATA')} in {_MADE} (removed at the end)"


def pytest_unconfigure(config):
    for name in _SET:
        os.environ.pop(name, None)
    if _MADE:
        shutil.rmtree(_MADE, ignore_errors=True)


def _data_root() -> Path | None:
    for cand in (os.environ.get("FEDSHIELD_DATA"), Path(__file__).resolve().parents[1] / "../shared/data",
                 Path(__file__).resolve().parents[1] / "data"):
        if cand and (Path(cand) / "mnist").is_dir():
            return Path(cand).resolve()
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        pytest.skip("real datasets not found (set FEDSHIELD_DATA)")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Each test writes results into its own cache directory."""
    monkeypatch.setenv("FEDSHIELD_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def one_thread():
    """Small problems: one thread is as fast as two and immune to CPU contention (oversubscribed
    runners slow two-thread tiny ops down by 10x or more). Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_finish(session):
    """The summary notebook's checked output counts the tables chapters 1-8 wrote earlier in the same
    run (into an empty results folder), so its nbval check only means something after theirs. Asked
    for on its own, it would fail with an opaque diff; say why instead."""
    nbs = {Path(str(item.fspath)).name for item in session.items if str(item.fspath).endswith(".ipynb")}
    if "09_summary.ipynb" not in nbs:
        return
    earlier = sorted(p.name for p in (Path(__file__).parent / "notebooks").glob("0[1-8]_*.ipynb"))
    missing = [n for n in earlier if n not in nbs]
    res = os.environ["FEDSHIELD_RESULTS"]   # set above when it was not
    stale = sorted({p.name for p in (Path(res) / "tables").rglob("*.json")})
    why = (f"{', '.join(missing)} not selected" if missing
           else f"{res} already holds tables ({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''})"
           if stale else None)
    if why:
        raise pytest.UsageError(
            "tests/notebooks/09_summary.ipynb checks which tables chapters 1-8 wrote before it in the same "
            f"run, into an empty results folder: {why}. Run all of tests/notebooks with FEDSHIELD_RESULTS "
            "pointing at an empty folder, as `make test-notebooks` does, or unset (a fresh one is made).")
