"""``fedshield reproduce``: run the notebooks with papermill, then build the book."""
from __future__ import annotations

from ..reproduce import run_notebooks


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reproduce", help="re-run the book's experiments (papermill) and build the book",
        description="Execute notebooks/*.ipynb with papermill under a profile and build the Jupyter Book. "
                    "Finished experiments are cached on disk (FEDSHIELD_CACHE, default results/cache), so an "
                    "interrupted run resumes.")
    p.add_argument("--profile", default="default", choices=["smoke", "default", "paper"],
                   help="smoke: tiny, what CI runs (output to tests/notebooks/); default: the book's scale; "
                        "paper: the paper's scale, GPU recommended (default: %(default)s)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="run only these notebooks (e.g. 04_compensation or compensation)")
    p.add_argument("--no-build", action="store_true", help="do not build the book afterwards")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args) -> int:
    run_notebooks(args.profile, args.only, build=not args.no_build, progress=not args.no_progress)
    return 0
