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
