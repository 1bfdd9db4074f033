"""``pytest`` run directly (an IDE, ``python -m pytest tests``), without `make test`'s environment:
the session makes its own empty results folder and cache, and removes them at the end."""
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIABLES = ("FEDSHIELD_RESULTS", "FEDSHIELD_CACHE", "FEDSHIELD_DATA")


def _pytest(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env["TMPDIR"] = str(tmp_path)   # where the session's temporary folder goes
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_pytest_without_the_makefile_environment_collects_and_cleans_up(tmp_path):
    out = _pytest(tmp_path, "--collect-only", "tests/test_stats.py")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    n = re.search(r"collected (\d+) items?", text)
    assert n and int(n.group(1)) > 0, text
    made = re.search(r"fedshield: FEDSHIELD_RESULTS, FEDSHIELD_CACHE in (\S+) \(removed at the end\)", text)
    assert made, text
    assert Path(made.group(1)).parent == tmp_path and not Path(made.group(1)).exists()
    assert not list(tmp_path.iterdir())


def test_the_notebooks_collect_into_the_session_folder(tmp_path):
    """Chapter 9's check (tests/conftest.py) wants an empty results folder: the session's own one is."""
    out = _pytest(tmp_path, "-q", "--nbval-lax", "--collect-only", "tests/notebooks")
    assert out.returncode == 0 and "tests collected" in out.stdout, out.stdout + out.stderr
