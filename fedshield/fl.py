"""Batched FedAvg simulator with the client / server defense hooks (the paper's FL setting).

One round of FedAvg (McMahan et al.) as the paper runs it (Section 6A):

1. the server samples ``m = per_round`` of the ``n = n_clients`` clients uniformly without
   replacement (an explicit ``torch.Generator`` seeded by ``cfg.seed``);
2. ``defense.on_round_start(global_model, r)``;
3. every sampled client ``i`` starts from the global weights ``w`` and runs ``local_epochs``
   epochs of plain SGD (learning rate ``local_lr``, no momentum, no weight decay) on its
   ``n_i`` samples with mini-batches of ``local_batch_size`` (``None``: the full local batch;
   with mini-batches the samples are reshuffled every epoch and the last batch of an epoch is
   the smaller remainder), minimising the mean cross-entropy of the batch; it shares the
   update ``u_i = w - w_i`` (flattened in ``model.parameters()`` order), divided by
   ``local_lr`` when ``share="gradient"`` (the default): the pseudo-gradient, i.e. the sum of the
   local gradients along the trajectory, equal to the loss gradient after one full-batch step.
   The defenses' noise and clipping bounds are then in gradient units, as in the paper;
4. ``U = defense.client(U, ctx)`` on the stacked ``[m, P]`` updates (a defense with
   ``on_local_steps`` also transforms every local step's gradients, :meth:`Defense.local_step`:
   noise per local step, one reading of the paper's DP baselines);
5. ``a = sum_i p_i u_i`` with ``p_i = n_i / sum_j n_j``; ``a = defense.server(a, ctx)``;
6. ``w <- w - server_lr * a`` (times ``local_lr`` when ``share="gradient"``).

The wall time of steps 1-6 is the round time (the paper's ART, defense included); the test
accuracy of the new global model is measured afterwards and timed separately.

Fast path (``batched=True``)
---------------------------
The round's clients are trained together: their parameters are stacked ``[g, ...]``, the forward
pass is one :func:`torch.func.vmap` over :func:`torch.func.functional_call`, and one autograd pass
through the sum of the clients' losses gives all per-client gradients of a step at once (no
client's loss depends on another's parameters). Clients
have different sample counts, so the per-client batches are padded to the largest one with
valid samples of the same client and a 0/1 mask; client ``i``'s loss at a step is
``sum_j mask_ij * CE_ij / max(1, sum_j mask_ij)``, the mean over its real samples. A client that
has no batch left at a step (fewer samples than the others) gets a zero gradient, which for
plain SGD is exactly "no step". Every client therefore performs exactly the SGD steps of the
plain per-client loop (``batched=False``), with the same shuffles, and the two give the same
numbers up to floating-point summation order (tested).

The clients are sorted by sample count and trained in near-equal groups of about ``group_size``
(default: 32 on CPU, all of them on CUDA); sorting keeps the padding small, full-batch widths are
rounded up to a multiple of 4 so that few distinct shapes occur (oneDNN / cuDNN kernels stay
cached), and on CPU the grouped convolutions that ``vmap`` produces are much faster with a few
dozen groups than with hundreds.

Speed: on a GPU the per-client loop is kernel-launch bound and batching pays off in full. On a
small CPU a round of a small model is compute bound: for CIFAR-10 LeNet with 200 clients per round
the plain loop already runs close to the *compute floor* (one shared-model pass over the round's
samples), and vmap's grouped convolutions are not more efficient than plain ones, so the batched
path is roughly on par with the loop on an idle CPU and ahead of it mainly when the cores are
contended (many tiny multi-threaded kernels in the loop). ``benchmarks/bench_simulator.py`` prints
both and the floor.

BatchNorm: a padded batch would corrupt batch statistics and in-place running-stat updates cannot
be vmapped, so models with batch-norm layers (``ConvNet(norm="batch")``, the default) are trained
with the per-client loop (a warning says so); use ``norm="group"`` or ``"none"`` for the batched
path. With the loop, each client updates its own running statistics and the server sets the global
ones to their sample-weighted average (integer counters: the maximum). Running statistics are not
part of the shared update and are not seen by the defense hooks.

Results, caching, resume
------------------------
:func:`run_fedavg` builds data and model from an :class:`FLConfig`, runs, and returns a JSON-able
dict; with ``cache=True`` the result is stored in :class:`fedshield.cache.ResultCache` under a key
of the config and the defense's ``repr``, and a checkpoint (global weights, results so far, all
generator states) is written every ``checkpoint_every`` rounds, so an interrupted run resumes where
it stopped (a defense's own internal state is not checkpointed).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import data as D
from .cache import ResultCache, config_dict, config_key
from .errors import FedshieldError
from .hooks import Defense, RoundContext
from .metrics import accuracy as _accuracy
from .models import DATASET_SHAPES, build_model
from .params import named_trainable, trainable, unflatten
from .utils import make_generator

__all__ = ["FLConfig", "Simulator", "run_fedavg", "fedavg_key", "snapshot_path", "PARTITIONS"]

PARTITIONS = ("noniid", "iid")
MODELS = ("lenet", "convnet")
_DEFAULT_MAX_PER_CLASS = 10  # datasets without a paper partition (CIFAR-100)


@dataclass(frozen=True)
class FLConfig:
    """One FedAvg experiment (hashable; its fields are the result-cache key).

    Attributes
    ----------
    dataset : ``'mnist'``, ``'fmnist'``, ``'cifar10'`` or ``'cifar100'`` (aliases such as
        ``'fashion-mnist'`` are normalised).
    model : ``'lenet'`` or ``'convnet'`` (:func:`fedshield.models.build_model`).
    rounds : number of FedAvg rounds ``T``.
    n_clients : number of clients ``n`` (paper: 100 for (F)MNIST, 1,000 for CIFAR-10).
    per_round : clients sampled per round ``m <= n``.
    local_epochs : local SGD epochs ``E`` (paper: 2).
    local_lr : local SGD learning rate (paper: 1e-2).
    local_batch_size : local mini-batch size ``B``; ``None`` = the full local data (one step per
        epoch).
    server_lr : server learning rate ``eta``: ``w <- w - eta * aggregate`` (1 = plain FedAvg).
    partition : ``'noniid'`` (the paper's: 2 random classes per client, ``U{1..k}`` samples each)
        or ``'iid'`` (``k + 1`` random samples per client, the non-IID partition's mean size).
    max_per_class : ``k``; ``None`` = the paper's value (10 for (F)MNIST, 20 for CIFAR-10,
        10 for CIFAR-100).
    seed : seeds the model initialisation, the partition, client sampling, local shuffling and
        the generator handed to the defense; ``None`` = OS entropy (not reproducible).
    eval_every : test accuracy after every ``eval_every``-th round (and always after the last).
    test_samples : evaluate on this many test images (a fixed random subset, the same for every
        seed and defense); ``None`` = the whole test split.
    model_kwargs : extra ``build_model`` keyword arguments as a tuple of pairs, e.g.
        ``(("dlg_init", True),)`` or ``(("norm", "group"),)``.
    share : what the hooks see and the server averages: ``"gradient"`` (default) the
        pseudo-gradient ``(w - w_i) / local_lr``, so that a defense's noise variance (the paper's
        1e-2) and clipping bound are in gradient units whatever the learning rate; ``"update"``
        the raw weight difference ``w - w_i``. Without a defense both give the same model.
    """

    dataset: str = "mnist"
    model: str = "lenet"
    rounds: int = 50
    n_clients: int = 100
    per_round: int = 10
    local_epochs: int = 2
    local_lr: float = 1e-2
    local_batch_size: int | None = None
    server_lr: float = 1.0
    partition: str = "noniid"
    max_per_class: int | None = None
    seed: int | None = 0
    eval_every: int = 1
    test_samples: int | None = None
    model_kwargs: tuple = ()
    share: str = "gradient"

    def __post_init__(self):
        ds = D.canonical_name(str(self.dataset).strip().lower())
        if ds not in DATASET_SHAPES:
            raise FedshieldError(f"unknown dataset {self.dataset!r}; choose from {sorted(DATASET_SHAPES)}")
        object.__setattr__(self, "dataset", ds)
        if str(self.model).lower() not in MODELS:
            raise FedshieldError(f"unknown model {self.model!r}; choose from {list(MODELS)}")
        object.__setattr__(self, "model", str(self.model).lower())
        if self.partition not in PARTITIONS:
            raise FedshieldError(f"unknown partition {self.partition!r}; choose from {list(PARTITIONS)}")
        for name in ("rounds", "n_clients", "per_round", "local_epochs", "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise FedshieldError(f"{name} must be a positive integer, got {v!r}")
        if self.per_round > self.n_clients:
            raise FedshieldError(f"per_round (m={self.per_round}) cannot exceed n_clients (n={self.n_clients})")
        for name in ("local_batch_size", "max_per_class", "test_samples"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise FedshieldError(f"{name} must be a positive integer or None, got {v!r}")
        for name in ("local_lr", "server_lr"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise FedshieldError(f"{name} must be a positive number, got {v!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise FedshieldError(f"seed must be an integer or None, got {self.seed!r}")
        if self.share not in ("gradient", "update"):
            raise FedshieldError(f"share must be 'gradient' or 'update', got {self.share!r}")
        mk = self.model_kwargs
        if isinstance(mk, dict):
            mk = tuple(sorted(mk.items()))
        try:
            mk = tuple((str(k), v) for k, v in mk)
            hash(mk)
        except (TypeError, ValueError):
            raise FedshieldError(f"model_kwargs must be a tuple of (name, hashable value) pairs, got {self.model_kwargs!r}")
        object.__setattr__(self, "model_kwargs", mk)

    def replace(self, **changes) -> "FLConfig":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
_PAD = 4  # full-batch widths are padded to a multiple of this


def _round_up(n: int, q: int) -> int:
    return -(-n // q) * q


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._NormBase) for m in model.modules())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _derive_seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2 ** 62, (1,), generator=g).item())


class _ClientData(Sequence):
    """Lazy ``[(x_i, y_i)]`` of a round's clients (gathered on access, nothing copied up front)."""

    def __init__(self, sim: "Simulator", ids: list[int]):
        self._sim, self._ids = sim, ids

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        idx = self._sim._index[self._ids[k]]
        return self._sim._x[idx], self._sim._y[idx]


# --------------------------------------------------------------------------------------------
# simulator
# --------------------------------------------------------------------------------------------
class Simulator:
    """FedAvg over given client tensors (see the module docstring for the exact algorithm).

    Parameters
    ----------
    model : the global model; it is trained in place (copy it first to keep the original). Its
        device is the simulation's device.
    client_data : ``n`` pairs ``(x_i [n_i, ...], y_i [n_i])``, one per client (``n_i >= 1``).
    test_data : ``(x, y)`` for the global test accuracy, or ``None``.
    cfg : the :class:`FLConfig`; used here: ``n_clients`` (must equal ``len(client_data)``),
        ``per_round``, ``local_*``, ``server_lr``, ``seed``, ``eval_every``, ``rounds``.
    defense : a :class:`fedshield.hooks.Defense` (``None``: no defense).
    batched : train the round's clients together with ``vmap`` (models without batch norm) or
        one after the other (``False``); same numbers either way.
    generator : the client-sampling generator (default ``make_generator(cfg.seed)``); the
        local-shuffling and defense generators are seeded from it at construction.
    group_size : clients per vmapped group (default 32 on CPU, all on CUDA).
    """

    def __init__(self, model: nn.Module, client_data: Sequence[tuple[Tensor, Tensor]],
                 test_data: tuple[Tensor, Tensor] | None, cfg: FLConfig, defense: Defense | None = None,
                 *, batched: bool = True, generator: torch.Generator | None = None,
                 group_size: int | None = None):
        if not client_data:
            raise FedshieldError("client_data is empty")
        xs, ys = [], []
        for i, pair in enumerate(client_data):
            if len(pair) != 2 or len(pair[0]) != len(pair[1]) or len(pair[0]) == 0:
                raise FedshieldError(f"client {i}: expected (x, y) with the same number (>= 1) of samples")
            xs.append(pair[0])
            ys.append(pair[1])
        sizes = torch.tensor([len(y) for y in ys], dtype=torch.long)
        offsets = torch.cumsum(sizes, 0) - sizes
        index = [torch.arange(o, o + s) for o, s in zip(offsets.tolist(), sizes.tolist())]
        self._setup(model, torch.cat(xs), torch.cat(ys), index, test_data, cfg, defense, batched,
                    generator, group_size)

    @classmethod
    def from_partition(cls, model: nn.Module, x: Tensor, y: Tensor, parts: Sequence[Tensor],
                       test_data: tuple[Tensor, Tensor] | None, cfg: FLConfig, defense: Defense | None = None,
                       *, batched: bool = True, generator: torch.Generator | None = None,
                       group_size: int | None = None) -> "Simulator":
        """Like the constructor, with client ``i`` holding ``(x[parts[i]], y[parts[i]])``; the
        dataset is not copied per client."""
        self = cls.__new__(cls)
        index = [torch.as_tensor(p, dtype=torch.long).reshape(-1) for p in parts]
        if not index:
            raise FedshieldError("parts is empty")
        if any(len(p) == 0 for p in index):
            raise FedshieldError("every client needs at least one sample")
        allidx = torch.cat(index)
        if int(allidx.min()) < 0 or int(allidx.max()) >= len(x):
            raise FedshieldError(f"partition indices must lie in [0, {len(x)})")
        self._setup(model, x, y, index, test_data, cfg, defense, batched, generator, group_size)
        return self

    def _setup(self, model, x, y, index, test_data, cfg, defense, batched, generator, group_size):
        if not isinstance(cfg, FLConfig):
            raise FedshieldError(f"cfg must be an FLConfig, got {type(cfg).__name__}")
        if len(index) != cfg.n_clients:
            raise FedshieldError(f"cfg.n_clients={cfg.n_clients} but {len(index)} clients were given")
        if len(x) != len(y):
            raise FedshieldError(f"x has {len(x)} samples but y has {len(y)}")
        self.cfg = cfg
        self.model = model
        self.defense = defense if defense is not None else Defense()
        self.device = next(model.parameters()).device
        self._x = x.to(self.device)
        self._y = y.to(self.device, torch.long)
        self._index = [i.to(self.device) for i in index]
        self._sizes = torch.tensor([len(i) for i in index], dtype=torch.long)
        self.test_data = None if test_data is None else (test_data[0].to(self.device),
                                                         test_data[1].to(self.device, torch.long))
        self._names = [n for n, _ in named_trainable(model)]
        self._params = trainable(model)
        self.n_params = sum(p.numel() for p in self._params)
        self._work = copy.deepcopy(model).train()  # the clients' model (loop) / the functional template
        self.batched = bool(batched)
        if self.batched and _has_batchnorm(model):
            warnings.warn("the model has BatchNorm layers: batched (vmap) training would mix padded "
                          "samples into the batch statistics; using the per-client loop instead "
                          "(use norm='group' or 'none' for the batched path)", stacklevel=3)
            self.batched = False
        if group_size is not None and group_size < 1:
            raise FedshieldError(f"group_size must be >= 1, got {group_size}")
        self.group_size = group_size or (cfg.per_round if self.device.type == "cuda" else 32)
        self.gen_sample = generator if generator is not None else make_generator(cfg.seed, self.device.type)
        self.gen_train = make_generator(_derive_seed(self.gen_sample))
        self.gen_defense = make_generator(_derive_seed(self.gen_sample))
        self.rounds_done = 0
        self.history: list[dict] = []
        self._vgrad = None

    # ---------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Everything needed to resume: global model state, rounds done, history, generator states."""
        return {"rounds_done": self.rounds_done,
                "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "history": copy.deepcopy(self.history),
                "generators": {k: getattr(self, f"gen_{k}").get_state()
                               for k in ("sample", "train", "defense")}}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.rounds_done = int(state["rounds_done"])
        self.history = copy.deepcopy(list(state["history"]))
        for k, s in state["generators"].items():
            getattr(self, f"gen_{k}").set_state(s)

    # ---------------------------------------------------------------------------- local SGD
    def _schedule(self, sizes: Tensor) -> list[Tensor] | None:
        """Per epoch an ``[m, max n_i]`` matrix whose row ``i`` starts with a uniformly random
        permutation of ``0..n_i-1`` (the client's sample order that epoch); ``None`` for full-batch
        training (order irrelevant, no randomness used)."""
        if self.cfg.local_batch_size is None:
            return None
        m, nmax = len(sizes), int(sizes.max())
        pad = torch.arange(nmax)[None, :] >= sizes[:, None]
        out = []
        for _ in range(self.cfg.local_epochs):
            keys = torch.rand(m, nmax, generator=self.gen_train).masked_fill_(pad, 2.0)
            out.append(keys.argsort(dim=1, stable=True).to(self.device))
        return out

    def _batch_size(self, n: int) -> int:
        b = self.cfg.local_batch_size
        return n if b is None else b

    def _loop(self, ids: list[int], sizes: Tensor, perms) -> tuple[Tensor, list[dict] | None]:
        """The plain per-client loop: ``torch.optim.SGD`` on a copy of the global model."""
        cfg, work = self.cfg, self._work
        gparams = [p.detach() for p in self._params]
        wparams = trainable(work)
        gbuf = {k: v.detach() for k, v in self.model.named_buffers()}
        has_buf = bool(gbuf)
        updates = torch.empty(len(ids), self.n_params, device=self.device, dtype=gparams[0].dtype)
        bufs = [] if has_buf else None
        for j, cid in enumerate(ids):
            with torch.no_grad():
                for wp, gp in zip(wparams, gparams):
                    wp.copy_(gp)
                for k, v in work.named_buffers():
                    v.copy_(gbuf[k])
            opt = torch.optim.SGD(wparams, lr=cfg.local_lr)
            n = int(sizes[j])
            B = self._batch_size(n)
            idx_c = self._index[cid]
            for e in range(cfg.local_epochs):
                order = idx_c if perms is None else idx_c[perms[e][j, :n]]
                for s in range(0, n, B):
                    b = order[s:s + B]
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(work(self._x[b]), self._y[b]).backward()
                    if self.defense.on_local_steps:
                        self._local_step_loop(work)
                    opt.step()
            with torch.no_grad():
                updates[j] = torch.cat([(gp - wp).reshape(-1) for gp, wp in zip(gparams, wparams)])
            if has_buf:
                bufs.append({k: v.detach().clone() for k, v in work.named_buffers()})
        return updates, bufs

    def _local_step_loop(self, work: nn.Module) -> None:
        """The defense's :meth:`~fedshield.hooks.Defense.local_step` on one client's gradients (``.grad``)."""
        named = [(n, p) for n, p in work.named_parameters() if p.requires_grad]
        out = self.defense.local_step({n: p.grad.unsqueeze(0) for n, p in named},
                                      torch.ones(1, dtype=torch.bool, device=self.device))
        for n, p in named:
            p.grad = out[n][0]

    def _make_vgrad(self):
        """``vgrad(params, x, y, w) -> {name: [g, ...] gradients}``: the per-client gradients of the
        masked mean losses. The forward pass is vmapped over the clients; the backward pass is one
        ordinary autograd pass through the *sum* of the clients' losses, which gives every client's
        gradient at once because no client's loss depends on another's parameters (the same numbers
        as ``vmap(grad(loss))``, faster for the small models of the paper on a CPU:
        ``benchmarks/bench_client_grad.py`` prints both side by side)."""
        work = self._work
        fwd = torch.vmap(lambda params, x: torch.func.functional_call(work, params, (x,)))

        def vgrad(params, x, y, w):
            with torch.enable_grad():
                ps = {k: v.detach().requires_grad_(True) for k, v in params.items()}
                out = fwd(ps, x)                                             # [g, B, classes]
                ce = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(w.shape)
                loss = ((ce * w).sum(1) / w.sum(1).clamp_min(1.0)).sum()
                return dict(zip(ps, torch.autograd.grad(loss, list(ps.values()))))

        return vgrad

    def _batched(self, ids: list[int], sizes: Tensor, perms) -> Tensor:
        """All clients' local SGD with stacked parameters (see the module docstring)."""
        cfg = self.cfg
        if self._vgrad is None:
            self._vgrad = self._make_vgrad()
        m = len(ids)
        gparams = [p.detach() for p in self._params]
        updates = torch.empty(m, self.n_params, device=self.device, dtype=gparams[0].dtype)
        # row j = client ids[j]'s sample indices, padded (clients need not be contiguous: from_partition)
        nmax = int(sizes.max())
        sizes_d = sizes.to(self.device)
        col = torch.arange(nmax, device=self.device)
        rows = torch.zeros(m, nmax, dtype=torch.long, device=self.device)
        rows[col[None, :] < sizes_d[:, None]] = torch.cat([self._index[c] for c in ids])
        order = torch.argsort(sizes, stable=True)
        n_groups = -(-m // self.group_size)
        for grp in torch.tensor_split(order, n_groups):  # near-equal groups of similar sizes
            grp_d = grp.to(self.device)
            n_g = sizes_d[grp_d]
            ng_max = int(sizes[grp].max())
            g = len(grp)
            # every step has the same padded width (few distinct shapes -> kernels stay cached)
            B = _round_up(ng_max, _PAD) if cfg.local_batch_size is None else cfg.local_batch_size
            width = _round_up(ng_max, B)
            params = {k: p.unsqueeze(0).expand(g, *p.shape) for k, p in zip(self._names, gparams)}
            rows_g = F.pad(rows[grp_d, :min(width, nmax)], (0, max(0, width - nmax)))
            col = torch.arange(width, device=self.device)
            for e in range(cfg.local_epochs):
                pos = (col.expand(g, width) if perms is None
                       else F.pad(perms[e][grp_d, :min(width, nmax)], (0, max(0, width - nmax))))
                for s in range(0, ng_max, B):
                    cols = col[s:s + B]
                    valid = cols[None, :] < n_g[:, None]                       # [g, B]
                    p = torch.where(valid, pos[:, cols], 0)                    # padding -> the client's first sample
                    gidx = torch.gather(rows_g, 1, p)
                    grads = self._vgrad(params, self._x[gidx], self._y[gidx], valid.to(gparams[0].dtype))
                    if self.defense.on_local_steps:
                        grads = self.defense.local_step(grads, valid.any(1))
                    params = {k: params[k] - cfg.local_lr * grads[k] for k in self._names}
            updates[grp_d] = torch.cat([(gp.unsqueeze(0) - params[k]).reshape(g, -1)
                                        for k, gp in zip(self._names, gparams)], dim=1)
        return updates

    # -------------------------------------------------------------------------------- rounds
    def evaluate(self) -> float | None:
        """Test accuracy of the global model (``None`` without test data)."""
        if self.test_data is None:
            return None
        return _accuracy(self.model, *self.test_data)

    def round(self, evaluate: bool | None = None) -> dict:
        """Run one FedAvg round and return its record.

        Returns
        -------
        dict with ``round`` (0-based index), ``accuracy`` (test accuracy after the round, or
        ``None`` when not evaluated), ``round_time`` (seconds, sampling to weight update, defense
        included), ``eval_time``, ``defense_time`` (seconds inside the defense's
        ``on_round_start`` / ``client`` / ``server`` hooks), ``clients`` (sampled ids),
        ``samples`` (their total sample count), ``update_norm`` (norm of the applied aggregate).
        """
        cfg, r = self.cfg, self.rounds_done
        _sync(self.device)
        t0 = time.perf_counter()
        ids = torch.randperm(cfg.n_clients, generator=self.gen_sample, device=self.gen_sample.device)
        ids = sorted(ids[:cfg.per_round].tolist())
        sizes = self._sizes[ids]
        t_start = time.perf_counter()
        self.defense.on_round_start(self.model, r)
        _sync(self.device)
        t_start = time.perf_counter() - t_start
        perms = self._schedule(sizes)
        bufs = None
        if self.batched:
            updates = self._batched(ids, sizes, perms)
        else:
            updates, bufs = self._loop(ids, sizes, perms)
        weights = (sizes.to(updates.dtype) / sizes.sum()).to(self.device)
        scale = cfg.local_lr if cfg.share == "gradient" else 1.0
        if scale != 1.0:
            updates = updates / scale
        ctx = RoundContext(round=r, model=self.model, weights=weights, client_ids=ids,
                           client_data=_ClientData(self, ids), generator=self.gen_defense)
        t_client = time.perf_counter()
        updates = self.defense.client(updates, ctx)
        _sync(self.device)
        t_client = time.perf_counter() - t_client
        if tuple(updates.shape) != (len(ids), self.n_params):
            raise FedshieldError(f"defense.client returned shape {tuple(updates.shape)}, "
                                 f"expected {(len(ids), self.n_params)}")
        agg = weights @ updates
        t_server = time.perf_counter()
        agg = self.defense.server(agg, ctx)
        _sync(self.device)
        t_server = time.perf_counter() - t_server
        if tuple(agg.shape) != (self.n_params,):
            raise FedshieldError(f"defense.server returned shape {tuple(agg.shape)}, expected {(self.n_params,)}")
        with torch.no_grad():
            for p, a in zip(self._params, unflatten(agg, self._params)):
                p.sub_((cfg.server_lr * scale) * a)
            if bufs:
                self._average_buffers(bufs, weights)
        _sync(self.device)
        round_time = time.perf_counter() - t0
        if evaluate is None:
            evaluate = (r + 1) % cfg.eval_every == 0 or r + 1 == cfg.rounds
        acc, eval_time = None, None
        if evaluate and self.test_data is not None:
            t1 = time.perf_counter()
            acc = self.evaluate()
            eval_time = time.perf_counter() - t1
        rec = {"round": r, "accuracy": acc, "round_time": round_time, "eval_time": eval_time,
               "defense_time": {"round_start": t_start, "client": t_client, "server": t_server},
               "clients": ids, "samples": int(sizes.sum()), "update_norm": float(agg.norm())}
        self.history.append(rec)
        self.rounds_done += 1
        return rec

    def _average_buffers(self, bufs: list[dict], weights: Tensor) -> None:
        for k, v in self.model.named_buffers():
            stack = torch.stack([b[k] for b in bufs])
            if v.is_floating_point():
                v.copy_(torch.tensordot(weights.to(v.dtype), stack, dims=1))
            else:
                v.copy_(stack.max(0).values)

    def run(self, rounds: int | None = None, progress: bool = True,
            callback: Callable[["Simulator", dict], None] | None = None) -> dict:
        """Run ``rounds`` more rounds (default: up to ``cfg.rounds`` in total) and return
        :meth:`results`. The last round is always evaluated. ``callback(sim, record)`` runs after
        every round (e.g. checkpointing)."""
        todo = self.cfg.rounds - self.rounds_done if rounds is None else int(rounds)
        if todo < 0:
            raise FedshieldError(f"rounds must be >= 0, got {todo}")
        bar = tqdm(range(todo), disable=not progress, desc=f"FedAvg {self.cfg.dataset}/{self.cfg.model}",
                   initial=0, unit="round", leave=False)
        for k in bar:
            rec = self.round(evaluate=True if k == todo - 1 else None)
            if rec["accuracy"] is not None:
                bar.set_postfix(acc=f"{rec['accuracy']:.3f}", t=f"{rec['round_time']:.2f}s")
            if callback is not None:
                callback(self, rec)
        bar.close()
        return self.results()

    def results(self) -> dict:
        """JSON-able summary of the rounds so far: ``accuracy`` (per evaluated round),
        ``eval_rounds`` (rounds completed at each evaluation, 1-based), ``round_time`` (every
        round), ``mean_round_time`` (mean without the first, warm-up round when there are
        several), ``mean_defense_time`` (the same mean of the time inside the defense's hooks, split
        into ``round_start`` (the server's per-round work, e.g. the leakage risk and slicing),
        ``client`` (the clients' clipping and perturbation, all clients of the round) and ``server``
        (the compensation); part of ``round_time``), ``final_accuracy`` (last evaluation),
        ``clients`` (ids per round)."""
        h = self.history
        ev = [x for x in h if x["accuracy"] is not None]
        rt = [x["round_time"] for x in h]
        dt = [x.get("defense_time") for x in h[1:] or h if x.get("defense_time")]
        parts = {k: sum(d[k] for d in dt) / len(dt) for k in ("round_start", "client", "server")} if dt else None
        return {"accuracy": [x["accuracy"] for x in ev],
                "eval_rounds": [x["round"] + 1 for x in ev],
                "round_time": rt,
                "mean_round_time": (sum(rt[1:]) / (len(rt) - 1) if len(rt) > 1 else (rt[0] if rt else None)),
                "mean_defense_time": parts,
                "final_accuracy": ev[-1]["accuracy"] if ev else None,
                "clients": [x["clients"] for x in h],
                "batched": self.batched}


# --------------------------------------------------------------------------------------------
# config -> data -> model -> results
# --------------------------------------------------------------------------------------------
def fedavg_key(cfg: FLConfig, defense: Defense | None = None, batched: bool = True,
               key_extra: dict | None = None) -> str:
    """Result-cache key of a run: the config, the defense's ``repr``, the training path and
    ``key_extra`` (whatever else determines the result, e.g. the defense's root-set size)."""
    d = {"fl": config_dict(cfg), "defense": repr(defense if defense is not None else Defense()),
         "batched": bool(batched)}
    if key_extra:
        d["extra"] = key_extra
    return config_key(d, prefix="fedavg")


def build_federation(cfg: FLConfig, data_dir=None, progress: bool = True):
    """Load the data of ``cfg`` and partition it: ``(x, y, parts, (x_test, y_test))``."""
    x, y = D.load_dataset(cfg.dataset, "train", data_dir, progress=progress)
    xt, yt = D.load_dataset(cfg.dataset, "test", data_dir, progress=progress)
    k = cfg.max_per_class or D.PAPER_PARTITION.get(cfg.dataset, {}).get("max_per_class", _DEFAULT_MAX_PER_CLASS)
    if cfg.partition == "noniid":
        parts = D.partition_noniid(y, cfg.n_clients, classes_per_client=2, max_per_class=k, seed=cfg.seed)
    else:
        parts = D.partition_iid(y, cfg.n_clients, samples_per_client=k + 1, seed=cfg.seed)
    if cfg.test_samples is not None and cfg.test_samples < len(yt):
        sel = torch.randperm(len(yt), generator=make_generator(0))[:cfg.test_samples]
        xt, yt = xt[sel], yt[sel]
    return x, y, parts, (xt, yt)


def build_global_model(cfg: FLConfig) -> nn.Module:
    """``build_model(cfg.model, cfg.dataset, **cfg.model_kwargs)`` initialised from ``cfg.seed``
    (the global RNG state is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed if cfg.seed is not None else torch.seed())
        return build_model(cfg.model, cfg.dataset, **dict(cfg.model_kwargs))


def snapshot_path(key: str, round_: int, cache_dir=None):
    """Where :func:`run_fedavg` keeps the global model's state after ``round_`` rounds of run ``key``."""
    return ResultCache(cache_dir).dir / f"{key}.snapshots" / f"r{int(round_):05d}.pt"


def run_fedavg(cfg: FLConfig, defense: Defense | None = None, *, data_dir=None, progress: bool = True,
               cache: bool = True, batched: bool = True, device: str | torch.device | None = None,
               checkpoint_every: int = 5, cache_dir=None, key_extra: dict | None = None,
               snapshots: Sequence[int] = ()) -> dict:
    """Build data and model from ``cfg``, run FedAvg and return JSON-able results.

    Parameters
    ----------
    cfg : the experiment.
    defense : hooks applied every round (``None``: no defense).
    data_dir : data directory (default ``$FEDSHIELD_DATA``, else ``./data``).
    progress : tqdm progress bar over rounds.
    cache : reuse a finished result from the :class:`~fedshield.cache.ResultCache` and
        checkpoint every ``checkpoint_every`` rounds so an interrupted run resumes.
    batched : the vmapped simulator (``True``) or the plain per-client loop.
    device : ``'cpu'`` (default) or e.g. ``'cuda'``.
    cache_dir : cache directory (default: :func:`fedshield.cache.cache_dir`).
    key_extra : JSON-able settings that change the result but are not in ``cfg`` or
        ``repr(defense)`` (added to the cache key).
    snapshots : rounds after which the global model's state is saved in the cache
        (:func:`snapshot_path`; 0 = the initial model), e.g. to attack the model in training. A
        cached result whose snapshots are missing is run again (same result, same key).

    Returns
    -------
    dict with ``config`` (the config as a dict), ``defense`` (its repr), ``accuracy``,
    ``eval_rounds``, ``round_time``, ``mean_round_time``, ``final_accuracy`` (see
    :meth:`Simulator.results`), ``clients``, ``batched``, ``n_params``, ``client_sizes``.
    """
    if not isinstance(cfg, FLConfig):
        raise FedshieldError(f"cfg must be an FLConfig, got {type(cfg).__name__}")
    if checkpoint_every < 1:
        raise FedshieldError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    snaps = sorted({int(r) for r in snapshots})
    if any(not 0 <= r <= cfg.rounds for r in snaps):
        raise FedshieldError(f"snapshots must be rounds in [0, {cfg.rounds}], got {list(snapshots)}")
    if snaps and not cache:
        raise FedshieldError("snapshots are saved in the result cache: they need cache=True")
    defense = defense if defense is not None else Defense()
    key = fedavg_key(cfg, defense, batched, key_extra)
    store = ResultCache(cache_dir) if cache else None
    snap = {r: snapshot_path(key, r, cache_dir) for r in snaps}
    if store is not None:
        hit = store.get(key)
        if hit is not None and all(p.exists() for p in snap.values()):
            return hit["result"]
    x, y, parts, test = build_federation(cfg, data_dir, progress)
    model = build_global_model(cfg).to(device or "cpu")
    sim = Simulator.from_partition(model, x, y, parts, test, cfg, defense, batched=batched)
    ckpt = store.dir / f"{key}.ckpt.pt" if store is not None else None
    if ckpt is not None and ckpt.exists():
        try:
            state = torch.load(ckpt, weights_only=True)
            # a snapshot the checkpoint has gone past cannot be taken any more: start over
            if not any(r < int(state["rounds_done"]) and not p.exists() for r, p in snap.items()):
                sim.load_state_dict(state)
        except Exception as e:  # unreadable / incompatible checkpoint: start over
            warnings.warn(f"ignoring the checkpoint {ckpt} ({type(e).__name__}: {e}); starting from round 0")

    def keep(s: Simulator) -> None:
        p = snap.get(s.rounds_done)
        if p is not None and not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().cpu().clone() for k, v in s.model.state_dict().items()}, p.with_suffix(".tmp"))
            p.with_suffix(".tmp").replace(p)

    def save(s: Simulator, rec: dict) -> None:
        keep(s)
        if ckpt is not None and s.rounds_done % checkpoint_every == 0 and s.rounds_done < cfg.rounds:
            tmp = ckpt.with_suffix(".tmp")
            torch.save(s.state_dict(), tmp)
            tmp.replace(ckpt)

    keep(sim)   # round 0 (or the resumed round)
    res = sim.run(progress=progress, callback=save)
    out = {"config": config_dict(cfg), "defense": repr(defense), **res, "n_params": sim.n_params,
           "client_sizes": [len(p) for p in parts]}
    if store is not None:
        store.put(key, {"config": config_dict(cfg), "defense": repr(defense), "result": out})
        if ckpt.exists():
            ckpt.unlink()
    return out
