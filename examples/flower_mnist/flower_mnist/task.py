"""Model, data and local training shared by the ClientApp and the ServerApp.

Setting (the paper's Section 6A): MNIST, the non-IID partition of 100 clients (each holds 2
random classes with U{1..10} images of each), 10 clients per round, LeNet (the DLG / authors'
three-convolution LeNet with DLG's uniform(-0.5, 0.5) initialisation), a public root set of 100
training images that no client holds.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from fedshield.data import load_dataset, partition_noniid, root_set
from fedshield.models import build_model

# Defaults of every setting; `flwr run` takes them from pyproject.toml ([tool.flwr.app.config]),
# run_simulation.py from here, both accept overrides.
DEFAULTS: dict[str, Any] = {
    "num-server-rounds": 30,
    "num-partitions": 100,     # clients in the federation (simulation); SuperNodes set their own
    "fraction-train": 0.1,     # 10 of 100 clients per round
    "local-epochs": 10,
    "batch-size": 16,
    "lr": 0.1,
    "defense": True,
    "ratio": 0.2,              # fraction of slices each client perturbs
    "sigma": 0.1,              # noise std on perturbed entries of the pseudo-gradient (w_global - w_local) / lr
                               # (0.01 on the weights at lr 0.1; pseudo-gradient rms per entry ~0.08)
    "n-slices": 10,
    "clip-bound": 0.0,         # L2 bound of the shared update; 0 = no clipping
    "q": 6.0,                  # aspect ratio of the compensation matrix
    "root-size": 100,
    "seed": 0,
    "data-dir": "",            # "" = $FEDSHIELD_DATA, else ./data
    "eval-size": 10000,        # test images for the server's central evaluation
}


def settings(run_config: dict | None = None, overrides: dict | None = None) -> dict[str, Any]:
    """DEFAULTS updated by the run config (``flwr run``) and explicit overrides, typed like DEFAULTS."""
    out = dict(DEFAULTS)
    for src in (run_config or {}), (overrides or {}):
        for k, v in src.items():
            if k in DEFAULTS:
                out[k] = type(DEFAULTS[k])(v) if not isinstance(DEFAULTS[k], bool) else _as_bool(v)
    return out


def _as_bool(v) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("1", "true", "yes", "on")


def make_model(seed: int = 0) -> torch.nn.Module:
    model = build_model("lenet", "mnist", n_conv=3)
    return model.dlg_init_(torch.Generator().manual_seed(seed))


@lru_cache(maxsize=4)
def _train_split(data_dir: str):
    return load_dataset("mnist", "train", data_dir or None, progress=False)


@lru_cache(maxsize=4)
def _split(data_dir: str, num_partitions: int, seed: int, root_size: int):
    """The federation's partition and the server's root set (outside every client's data).
    Deterministic in ``seed``, so every process derives the same split."""
    _, y = _train_split(data_dir)
    parts = partition_noniid(y, num_partitions, classes_per_client=2, max_per_class=10, seed=seed)
    root = root_set(y, root_size, exclude=parts, seed=seed)
    return parts, root


def client_data(cfg: dict, partition_id: int, num_partitions: int):
    x, y = _train_split(cfg["data-dir"])
    parts, _ = _split(cfg["data-dir"], num_partitions, cfg["seed"], cfg["root-size"])
    idx = parts[partition_id]
    return x[idx], y[idx]


def server_data(cfg: dict):
    """(root images, root labels), (test images, test labels)."""
    x, y = _train_split(cfg["data-dir"])
    _, root = _split(cfg["data-dir"], cfg["num-partitions"], cfg["seed"], cfg["root-size"])
    xt, yt = load_dataset("mnist", "test", cfg["data-dir"] or None, progress=False)
    n = min(cfg["eval-size"], len(yt))
    return (x[root], y[root]), (xt[:n], yt[:n])


def train(model: torch.nn.Module, x, y, *, epochs: int, batch_size: int, lr: float, seed: int) -> float:
    """Local SGD; returns the mean training loss of the last epoch."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    last = 0.0
    for _ in range(epochs):
        perm, tot = torch.randperm(len(y), generator=g), 0.0
        for i in range(0, len(y), batch_size):
            b = perm[i:i + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[b]), y[b])
            loss.backward()
            opt.step()
            tot += float(loss) * len(b)
        last = tot / max(1, len(y))
    return last


@torch.no_grad()
def evaluate(model: torch.nn.Module, x, y, batch_size: int = 2000) -> tuple[float, float]:
    """(mean cross-entropy, accuracy)."""
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        out = model(x[i:i + batch_size])
        loss += float(F.cross_entropy(out, y[i:i + batch_size], reduction="sum"))
        correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
    return loss / len(y), correct / len(y)
