"""Experiment configs and the on-disk result cache.

Every experiment is one frozen dataclass config. Its results are stored as JSON under the cache
directory, keyed by a hash of the config, so re-running reuses finished work and an interrupted run
resumes: long runs store partial results (per victim, per round chunk) under sub-keys.

Cache directory: explicit argument > ``FEDSHIELD_CACHE`` > ``results/cache`` of the source checkout.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def default_cache_dir() -> Path:
    """``<source checkout>/results/cache`` when the package runs from a checkout (so notebooks,
    tests and the CLI share one cache whatever their working directory), else ``./results/cache``."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").exists() and (root / "fedshield").is_dir():
        return root / "results" / "cache"
    return Path("results/cache")


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    p = Path(path or os.environ.get("FEDSHIELD_CACHE") or default_cache_dir())
    p.mkdir(parents=True, exist_ok=True)
    return p


def config_dict(cfg: Any) -> dict:
    if dataclasses.is_dataclass(cfg):
        d = dataclasses.asdict(cfg)
    elif isinstance(cfg, dict):
        d = dict(cfg)
    else:
        raise TypeError(f"config must be a dataclass or dict, got {type(cfg).__name__}")
    return d


def config_key(cfg: Any, prefix: str | None = None) -> str:
    """Stable short key: ``<prefix>-<sha256 of the sorted JSON of the config>[:16]``."""
    d = config_dict(cfg)
    h = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
    prefix = prefix or (type(cfg).__name__.lower() if dataclasses.is_dataclass(cfg) else "cfg")
    return f"{prefix}-{h}"


class ResultCache:
    """JSON results keyed by config (and optional sub-keys), written atomically."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.dir = cache_dir(directory)

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key: str) -> Any | None:
        p = self.path(key)
        if not p.exists():
            return None
        with open(p) as f:
            return json.load(f)

    def put(self, key: str, value: Any) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, default=float)
        os.replace(tmp, p)

    def cached(self, cfg: Any, fn: Callable[[Any], Any], prefix: str | None = None) -> Any:
        """Return the cached result for ``cfg`` or compute ``fn(cfg)``, store and return it."""
        key = config_key(cfg, prefix)
        hit = self.get(key)
        if hit is not None:
            return hit["result"]
        result = fn(cfg)
        self.put(key, {"config": config_dict(cfg), "result": result})
        return result
