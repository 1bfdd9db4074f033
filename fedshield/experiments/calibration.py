"""Calibrating the undefended FedAvg run against the paper's accuracy (Table II[A]: 91.69 % MNIST,
91.80 % Fashion-MNIST, 54.15 % CIFAR-10 after 2000 rounds).

The paper states SGD at 1e-2, 2 local epochs, its non-IID partition, 2000 rounds and a "local batch
size" of 1-20 ((F)MNIST) or 1-40 (CIFAR-10): the range of a client's data size under its partition
(2 classes x 1-10 or 1-20 images), which reads as full-batch local SGD. It is silent on the
initialisation (PyTorch's default, or DLG's U(-0.5, 0.5) used by the attack) and its LeNet has 4
convolutions where DLG's and the authors' code have 3. Each :class:`Reading` is one answer to those
questions; :func:`run_calibration` trains each undefended for ``rounds`` rounds (cached, resumable)
and returns the accuracy every ``eval_every`` rounds and the time per round.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pandas as pd

from ..errors import FedshieldError
from ..fl import FLConfig, run_fedavg

#: the paper's undefended accuracy after 2000 rounds (Table II[A], percent)
PAPER_UNDEFENDED = {"mnist": 91.69, "fmnist": 91.80, "cifar10": 54.15}
#: the paper's partition per dataset: (clients, per round)
PAPER_PARTITION = {"mnist": (100, 10), "fmnist": (100, 10), "cifar10": (1000, 200)}


@dataclass(frozen=True)
class Reading:
    """One reading of the paper's local training where its text is silent."""
    name: str
    init: str = "default"             # "default" (PyTorch) or "dlg" (U(-0.5, 0.5), DLG's)
    n_conv: int = 4                   # the paper's 4 convolutions, or DLG's / the authors' 3
    batch_size: Optional[int] = None  # None: full local batch (one step per epoch)
    local_lr: float = 1e-2
    local_epochs: int = 2

    def model_kwargs(self) -> tuple:
        kw = []
        if self.init == "dlg":
            kw.append(("dlg_init", True))
        elif self.init != "default":
            raise FedshieldError(f"init must be 'default' or 'dlg', got {self.init!r}")
        if self.n_conv != 4:
            kw.append(("n_conv", self.n_conv))
        return tuple(kw)


READINGS: tuple[Reading, ...] = (
    Reading("literal: default init, 4 conv, full batch"),
    Reading("DLG init, 4 conv, full batch", init="dlg"),
    Reading("DLG init, 3 conv, full batch", init="dlg", n_conv=3),
    Reading("default init, 3 conv, full batch", n_conv=3),
    Reading("DLG init, 4 conv, batch 5", init="dlg", batch_size=5),
    Reading("DLG init, 3 conv, batch 5", init="dlg", n_conv=3, batch_size=5),
    Reading("DLG init, 4 conv, batch 10", init="dlg", batch_size=10),
    Reading("DLG init, 4 conv, batch 2", init="dlg", batch_size=2),
    Reading("DLG init, 4 conv, batch 1", init="dlg", batch_size=1),
)


def calibration_config(dataset: str, reading: Reading, *, rounds: int = 2000, seed: int = 0,
                       eval_every: int = 250) -> FLConfig:
    """The undefended FedAvg config of ``reading`` on ``dataset`` at the paper's partition."""
    if dataset not in PAPER_PARTITION:
        raise FedshieldError(f"no paper partition for {dataset!r}; choose from {sorted(PAPER_PARTITION)}")
    n, m = PAPER_PARTITION[dataset]
    return FLConfig(dataset=dataset, model="lenet", rounds=rounds, n_clients=n, per_round=m,
                    local_epochs=reading.local_epochs, local_lr=reading.local_lr,
                    local_batch_size=reading.batch_size, seed=seed, eval_every=eval_every,
                    model_kwargs=reading.model_kwargs())


def run_calibration(datasets: Sequence[str] = ("mnist",), readings: Sequence[Reading] = READINGS, *,
                    rounds: int = 2000, seed: int = 0, eval_every: int = 250, progress: bool = True) -> pd.DataFrame:
    """Train every reading undefended on every dataset (through the result cache); one row per
    (dataset, reading, evaluation round): accuracy, the paper's, and the mean round time."""
    rows = []
    for ds in datasets:
        for r in readings:
            cfg = calibration_config(ds, r, rounds=rounds, seed=seed, eval_every=eval_every)
            res = run_fedavg(cfg, None, progress=progress)
            for t, acc in zip(res["eval_rounds"], res["accuracy"]):
                rows.append(dict(dataset=ds, reading=r.name, init=r.init, n_conv=r.n_conv,
                                 batch_size="full" if r.batch_size is None else r.batch_size, round=t,
                                 accuracy=acc, paper=PAPER_UNDEFENDED[ds] / 100, seconds_per_round=res["mean_round_time"]))
    return pd.DataFrame(rows)
