"""The three scales of every notebook: ``smoke`` (CI: about a minute a notebook on 2 CPU cores),
``default`` (the book's numbers, 2 CPU cores) and ``paper`` (the paper's scale, GPU recommended).

Each notebook has one module here, ``fedshield/profiles/<notebook>.py``, defining
``PROFILES = {"smoke": {...}, "default": {...}, "paper": {...}}``.
``get_profile(notebook, profile)`` returns a :class:`types.SimpleNamespace` of that notebook's
parameters; ``describe(ns)`` prints them as one line for the top of a page.
"""
from __future__ import annotations

import importlib
from types import SimpleNamespace

from ..errors import FedshieldError

PROFILES = ("smoke", "default", "paper")


def get_profile(notebook: str, profile: str) -> SimpleNamespace:
    if profile not in PROFILES:
        raise FedshieldError(f"unknown profile {profile!r}; choose from {list(PROFILES)}")
    try:
        mod = importlib.import_module(f"fedshield.profiles.{notebook}")
    except ModuleNotFoundError as e:
        raise FedshieldError(f"no profiles for notebook {notebook!r}") from e
    return SimpleNamespace(profile=profile, **mod.PROFILES[profile])


def describe(ns: SimpleNamespace) -> str:
    d = {k: v for k, v in vars(ns).items() if k != "profile"}
    return f"profile={ns.profile}: " + ", ".join(f"{k}={v}" for k, v in d.items())
