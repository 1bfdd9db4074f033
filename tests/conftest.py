import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
    res = os.environ.get("FEDSHIELD_RESULTS")
    stale = sorted({p.name for p in (Path(res) / "tables").rglob("*.json")}) if res else []
    why = (f"{', '.join(missing)} not selected" if missing else "FEDSHIELD_RESULTS is not set" if not res
           else f"{res} already holds tables ({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''})"
           if stale else None)
    if why:
        raise pytest.UsageError(
            "tests/notebooks/09_summary.ipynb checks which tables chapters 1-8 wrote before it in the same "
            f"run, into an empty results folder: {why}. Run all of tests/notebooks with FEDSHIELD_RESULTS "
            "pointing at an empty folder, as `make test-notebooks` does.")
