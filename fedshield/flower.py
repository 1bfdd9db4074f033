"""The paper's defense inside Flower: a client *mod* and a server *strategy wrapper*, thin
adapters over :class:`fedshield.defense.PaperDefense` and the functions of :mod:`fedshield.defense`.

Install with ``pip install 'fedshield[flower]'`` (pins ``flwr[simulation]==1.41.0``).

Units: the same as the simulator
--------------------------------
The defense works on the *pseudo-gradient* ``g = (w_global - w_local) / local_lr``, as
:mod:`fedshield.fl` does with ``share="gradient"`` (its default): the noise ``sigma``, the clipping
bound and the compensation's noise variance are in gradient units, so one ``sigma`` is one noise
level whatever the learning rate, and a setting means the same in a Flower deployment and in the
simulator. The server knows the clients' local learning rate (``DefendedStrategy(...,
local_lr=...)``, the step size of the clients' SGD, i.e. ``FLConfig.local_lr``) and sends it to
the clients with the slices; on the wire the arrays stay weights, ``w_global - local_lr * g~``.

How a defended round runs
-------------------------
1. **Server, once per round** (:class:`DefendedStrategy`): load the global arrays into the model
   and let the :class:`~fedshield.defense.PaperDefense` compute the slices
   (:meth:`~fedshield.defense.PaperDefense.update_slices`: equal leakage risk on the server's
   public root set, or equal size). The boundaries, the trainable array keys (in
   ``model.parameters()`` order), ``ratio``, ``sigma``, the clipping bound and ``local_lr`` travel
   in the round's ``ConfigRecord`` under ``fedshield.*`` keys. Clients never recompute the slicing.
2. **Client** (:class:`DefenseMod`, placed in ``ClientApp(mods=[...])``): the ClientApp trains as
   usual; on the way out the mod forms ``g = (w_global - w_local) / local_lr`` over the trainable
   arrays and applies :func:`fedshield.defense.clip_and_perturb` (the function
   ``PaperDefense.client`` applies in the simulator): ``g <- g / max(1, ||g||_2 / B)``, then
   ``N(0, sigma^2)`` on every entry of ``max(1, floor(s * ratio))`` random slices. It replies with
   ``w_local - local_lr * (g~ - g)`` (= ``w_global - local_lr * g~``; entries outside the perturbed
   slices are the trained ones, bit for bit, when there is no clipping and no floor). Beyond the
   paper (Chapter 10), when the defense has them: a noise ``floor`` (``N(0, floor^2)`` on every entry)
   and ``jitter`` (the client moves the server's slice boundaries by its own secret amounts,
   :func:`fedshield.defense.jitter_bounds`, before drawing the noised slices), exactly as
   ``PaperDefense.client`` does in the simulator. Buffers (e.g. batch-norm
   statistics) pass unchanged. The noise generator is seeded from OS entropy unless a seed is given,
   so the server cannot predict it; which slices were perturbed never leaves the client (it is kept
   in ``context.state`` for the client's own audit).
3. **Server, aggregation**: with weights ``p_i = n_i / sum_j n_j`` (the ``num-examples`` metric)
   the noisy weighted-average pseudo-gradient is ``G = sum_i p_i (w_global - w_i) / local_lr``;
   ``PaperDefense.server`` compensates it (noise variance
   :func:`fedshield.defense.aggregate_noise_var` ``(p, ratio, sigma)``, Marchenko-Pastur
   :func:`fedshield.defense.compensate`) into ``G_c``. The correction
   ``d = local_lr * (G_c - G)`` is subtracted from every client's arrays before the wrapped strategy
   aggregates (``w_i <- w_i - d``). For FedAvg the result is exactly ``w_global - local_lr * G_c``,
   the simulator's step with ``server_lr = 1``; because the shift is common to all replies,
   strategies that post-process a weighted mean (FedAvgM, FedAdam, ...) or are
   translation-equivariant (median, trimmed mean, Krum) see a compensated input too. The variance
   formula assumes the weighted-average aggregation.

Bad configuration (no root set, ``ratio`` outside ``(0, 1]``, ``sigma < 0``, too many slices,
initial arrays that do not match the model) raises :class:`~fedshield.errors.FedshieldError` when
the defense or the strategy is built or started, before any round is sent. A client without the
mod is detected at the first aggregation (its reply lacks the ``fedshield.defended`` metric) and
stops the run with one clear message; a client whose mod finds no ``fedshield.*`` entries in the
config replies with an error instead of an undefended update.

Telemetry: importing this module sets ``FLWR_TELEMETRY_ENABLED=0``, ``FLWR_DISABLE_UPDATE_CHECK=1``
and ``RAY_USAGE_STATS_ENABLED=0`` unless they are already set.

Example
-------
::

    from flwr.clientapp import ClientApp
    from flwr.serverapp.strategy import FedAvg
    from fedshield.defense import PaperDefense
    from fedshield.flower import DefenseMod, DefendedStrategy

    client_app = ClientApp(mods=[DefenseMod()])                          # client side
    defense = PaperDefense(x_root, y_root, ratio=0.2, sigma=0.1, seed=0)  # server side
    strategy = DefendedStrategy(FedAvg(fraction_train=0.1), model, defense, local_lr=0.01)
    strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                   num_rounds=30, timeout=600)
"""
from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterable, Sequence
from logging import INFO, WARNING
from typing import Any

for _k, _v in (("FLWR_TELEMETRY_ENABLED", "0"), ("FLWR_DISABLE_UPDATE_CHECK", "1"),
               ("RAY_USAGE_STATS_ENABLED", "0")):
    os.environ.setdefault(_k, _v)

import numpy as np
import torch
from torch import Tensor, nn

try:
    from flwr.app import (Array, ArrayRecord, ConfigRecord, Context, Error, Message, MessageType,
                          MetricRecord)
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import Result, Strategy
    from flwr.supercore import log
except ModuleNotFoundError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("fedshield.flower needs Flower: pip install 'fedshield[flower]' "
                      "(flwr[simulation]==1.41.0)") from e

from .defense import PaperDefense, clip_and_perturb
from .errors import FedshieldError
from .hooks import RoundContext
from .params import check_bounds, named_trainable
from .utils import check_jitter, check_nonneg, check_ratio, make_generator

__all__ = [
    "DefenseMod", "DefendedStrategy", "trainable_keys", "arrays_to_flat", "flat_to_arrays",
    "KEY_BOUNDS", "KEY_KEYS", "KEY_RATIO", "KEY_SIGMA", "KEY_CLIP", "KEY_LR", "KEY_FLOOR", "KEY_JITTER",
    "METRIC_DEFENDED",
    "METRIC_DROPPED",
]

# ConfigRecord entries the strategy sends and the mod reads.
KEY_BOUNDS = "fedshield.bounds"   # list[int], s + 1 slice boundaries into the flat update
KEY_KEYS = "fedshield.keys"       # list[str], trainable array keys in model.parameters() order
KEY_RATIO = "fedshield.ratio"     # float in (0, 1], fraction of slices perturbed
KEY_SIGMA = "fedshield.sigma"     # float >= 0, noise std (gradient units)
KEY_CLIP = "fedshield.clip"       # float > 0, L2 clipping bound B, gradient units (absent: no clipping)
KEY_LR = "fedshield.lr"           # float > 0, the clients' local learning rate: g = (w_global - w_local) / lr
KEY_FLOOR = "fedshield.floor"     # float >= 0, noise floor std on every entry (absent: 0)
KEY_JITTER = "fedshield.jitter"   # float in [0, 1), per-client boundary randomisation (absent: 0)
# MetricRecord entries.
METRIC_DEFENDED = "fedshield.defended"  # set to 1 by the mod on every defended reply
METRIC_DROPPED = "fedshield.dropped"    # eigen-directions removed by the compensation

_ERR_MOD = 6  # flwr.common.constant.ErrorCode.MOD_FAILED_PRECONDITION


# --------------------------------------------------------------------------- array helpers
def trainable_keys(model: nn.Module) -> list[str]:
    """``state_dict`` keys of the trainable parameters, in ``model.parameters()`` order
    (the order of every flat vector in fedshield)."""
    return [name for name, _ in named_trainable(model)]


def arrays_to_flat(record: ArrayRecord, keys: Sequence[str]) -> Tensor:
    """Concatenate ``record[k]`` for ``k`` in ``keys`` into one flat tensor (a copy)."""
    missing = [k for k in keys if k not in record]
    if missing:
        raise FedshieldError(f"the ArrayRecord lacks the trainable arrays {missing[:5]}"
                             f"{' ...' if len(missing) > 5 else ''}")
    return torch.cat([torch.from_numpy(np.asarray(record[k].numpy())).reshape(-1) for k in keys])


def flat_to_arrays(flat: Tensor, like: ArrayRecord, keys: Sequence[str]) -> ArrayRecord:
    """A new ArrayRecord equal to ``like`` with the arrays named in ``keys`` replaced by
    consecutive pieces of ``flat`` (shapes and dtypes from ``like``; key order kept)."""
    keyset = set(keys)
    out, i = {}, 0
    pieces = {}
    for k in keys:
        a = like[k]
        n = int(np.prod(a.shape)) if len(a.shape) else 1
        pieces[k] = (i, n, tuple(a.shape), a.dtype)
        i += n
    if i != flat.numel():
        raise FedshieldError(f"flat vector has {flat.numel()} entries, the arrays need {i}")
    flat_np = flat.detach().cpu().numpy()
    for k in like.keys():
        if k in keyset:
            s, n, shape, dtype = pieces[k]
            out[k] = Array(np.ascontiguousarray(flat_np[s:s + n].reshape(shape).astype(dtype, copy=False)))
        else:
            out[k] = like[k]
    return ArrayRecord(out)


def _single(records: dict, what: str) -> tuple[str, Any]:
    if len(records) != 1:
        raise FedshieldError(f"expected exactly one {what} in the message, found {len(records)}")
    return next(iter(records.items()))


# --------------------------------------------------------------------------- client side
def _parse_config(cfg: ConfigRecord) -> dict:
    """Validate the ``fedshield.*`` entries of a round's config (the client trusts nothing)."""
    try:
        bounds = cfg[KEY_BOUNDS]
        keys = [str(k) for k in cfg[KEY_KEYS]]
        ratio = float(cfg[KEY_RATIO])
        sigma = float(cfg[KEY_SIGMA])
        lr = float(cfg[KEY_LR])
        clip_b = float(cfg[KEY_CLIP]) if KEY_CLIP in cfg else None
        floor = float(cfg[KEY_FLOOR]) if KEY_FLOOR in cfg else 0.0
        jitter = float(cfg[KEY_JITTER]) if KEY_JITTER in cfg else 0.0
    except (KeyError, TypeError, ValueError) as e:
        raise FedshieldError(f"malformed fedshield config entry: {e}") from e
    check_ratio(ratio)
    check_nonneg(sigma, "sigma")
    check_nonneg(floor, "floor")
    check_jitter(jitter)
    if not lr > 0:
        raise FedshieldError(f"the local learning rate {KEY_LR} must be > 0, got {lr}")
    if clip_b is not None and not clip_b > 0:
        raise FedshieldError(f"clipping bound must be > 0, got {clip_b}")
    if not keys:
        raise FedshieldError("the config names no trainable arrays")
    return {"bounds": check_bounds(list(bounds)), "keys": keys, "ratio": ratio, "sigma": sigma, "lr": lr,
            "clip": clip_b, "floor": floor, "jitter": jitter}


def _find_defense_config(msg: Message) -> ConfigRecord | None:
    for rec in msg.content.config_records.values():
        if KEY_BOUNDS in rec:
            return rec
    return None


def _error_reply(msg: Message, reason: str) -> Message:
    log(WARNING, "fedshield DefenseMod: %s", reason)
    return Message(Error(code=_ERR_MOD, reason=f"fedshield DefenseMod: {reason}"), reply_to=msg)


class DefenseMod:
    """Client-side defense as a Flower mod: clip, then perturb risk-balanced slices.

    ``Mod = Callable[[Message, Context, ClientAppCallable], Message]``; use it as
    ``ClientApp(mods=[DefenseMod()])`` (put it last among mods that change the arrays). It acts on
    ``train`` messages only; every other message passes through untouched.

    With ``w`` the received global arrays, ``w'`` the locally trained ones (trainable arrays only,
    flattened in ``model.parameters()`` order) and ``lr`` the local learning rate the server sent,
    it sends ``w' - lr (g~ - g)`` where ``g = (w - w') / lr`` and ``g~`` is
    :func:`fedshield.defense.clip_and_perturb` of ``g`` with the server's slices, ``ratio``,
    ``sigma`` and clipping bound (:meth:`shared_update`).

    Parameters
    ----------
    seed : ``None`` (default): fresh OS entropy for every message, so nobody can predict the
        noise. An int: reproducible noise, derived from ``(seed, client, server-round)`` where the
        client is the node config's ``partition-id`` when set (stable across runs), else the
        node id.
    strict : when the round's config has no ``fedshield.*`` entries (the server is not running
        :class:`DefendedStrategy`), reply with an error (default) instead of the undefended
        update; ``strict=False`` passes the update through unchanged.
    """

    def __init__(self, seed: int | None = None, *, strict: bool = True):
        self.seed = None if seed is None else int(seed)
        self.strict = bool(strict)

    def __repr__(self) -> str:
        return f"DefenseMod(seed={self.seed}, strict={self.strict})"

    def _generator(self, ctx: Context, server_round: int) -> torch.Generator:
        if self.seed is None:
            return make_generator(None)
        client = ctx.node_config.get("partition-id", ctx.node_id) if ctx.node_config else ctx.node_id
        try:
            client = int(client)
        except (TypeError, ValueError):
            client = int(ctx.node_id)
        ss = np.random.SeedSequence([self.seed, client & (2**64 - 1), max(server_round, 0)])
        return make_generator(int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))

    @staticmethod
    def shared_update(w_global: Tensor, w_local: Tensor, config: dict,
                      generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """``(sent weights, shared pseudo-gradient g~ [P], chosen slice ids)`` for one client:
        ``g = (w_global - w_local) / lr``, ``g~ = clip_and_perturb(g)`` (as a round of one client,
        exactly what ``PaperDefense.client`` computes for that row, boundary jitter included),
        ``sent = w_local - lr (g~ - g)``. ``config``: the parsed ``fedshield.*`` entries."""
        lr = config["lr"]
        g = (w_global - w_local) / lr
        shared, chosen = clip_and_perturb(g.unsqueeze(0), config["bounds"], ratio=config["ratio"],
                                          sigma=config["sigma"], clip_bound=config["clip"],
                                          floor=config.get("floor", 0.0), jitter=config.get("jitter", 0.0),
                                          generator=generator)
        return w_local - lr * (shared[0] - g), shared[0], chosen[0]

    def __call__(self, msg: Message, ctx: Context, call_next: Callable[[Message, Context], Message]) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN or not msg.has_content():
            return call_next(msg, ctx)
        cfg = _find_defense_config(msg)
        if cfg is None:
            if self.strict:
                return _error_reply(msg, "the round's config carries no fedshield.* entries; run "
                                         "the server with fedshield.flower.DefendedStrategy (or "
                                         "use DefenseMod(strict=False) to send undefended updates)")
            return call_next(msg, ctx)
        try:
            c = _parse_config(cfg)
            _, global_rec = _single(msg.content.array_records, "ArrayRecord")
            w_global = arrays_to_flat(global_rec, c["keys"])
            check_bounds(c["bounds"], w_global.numel())
        except FedshieldError as e:
            return _error_reply(msg, str(e))
        server_round = int(cfg.get("server-round", 0))

        out = call_next(msg, ctx)
        if out.has_error():
            return out
        try:
            rec_key, local_rec = _single(out.content.array_records, "ArrayRecord")
            w_local = arrays_to_flat(local_rec, c["keys"])
            if w_local.shape != w_global.shape:
                raise FedshieldError("the trained arrays do not match the received ones in size")
            sent, _, chosen = self.shared_update(w_global, w_local, c, self._generator(ctx, server_round))
            out.content.array_records[rec_key] = flat_to_arrays(sent, local_rec, c["keys"])
        except FedshieldError as e:
            return _error_reply(msg, str(e))
        metrics = out.content.metric_records
        if len(metrics) == 1:
            next(iter(metrics.values()))[METRIC_DEFENDED] = 1
        else:
            return _error_reply(msg, f"expected one MetricRecord in the ClientApp's reply, found {len(metrics)}")
        # Local audit trail: which slices this client perturbed (never sent to the server).
        ctx.state["fedshield"] = ConfigRecord({"server-round": server_round,
                                               "chosen": [int(i) for i in chosen.tolist()]})
        return out


# --------------------------------------------------------------------------- server side
class DefendedStrategy(Strategy):
    """Wrap any Flower strategy with the paper's server side: per-round slicing and
    Marchenko-Pastur compensation of the aggregate, both by a
    :class:`~fedshield.defense.PaperDefense`. Pair it with :class:`DefenseMod` on clients.

    Parameters
    ----------
    strategy : the Flower strategy to wrap (e.g. ``FedAvg``); it samples clients and aggregates.
    model : a model of the federated architecture (copied; used to compute the leakage risk and
        to name the trainable arrays). The initial arrays must be its ``state_dict``.
    defense : the settings and the server's state: root set, ``n_slices``, ``ratio``, ``sigma``,
        ``clip_bound``, ``q``, ``compensate``, ``slicing``, ``probes``, ``seed`` (of the risk
        probes), e.g. ``PaperDefense(x_root, y_root, ratio=0.2, sigma=0.1)`` or
        :func:`fedshield.experiments.build_defense`. ``sigma`` and ``clip_bound`` are in gradient
        units (module docstring).
    local_lr : the clients' local SGD learning rate (> 0): the pseudo-gradient is
        ``(w_global - w_local) / local_lr``, as in the simulator (``FLConfig.local_lr``).
    weighted_by_key : MetricRecord key with each client's weight ``n_i``; default: the wrapped
        strategy's ``weighted_by_key`` or ``'num-examples'``.
    require_mod : stop with an error when a reply lacks the mod's ``fedshield.defended`` metric.

    Attributes
    ----------
    history : one dict per aggregated round: ``round``, ``clients``, ``slice_s`` (server time to
        compute the slicing), ``compensate_s``, ``noise_var`` (gradient units), ``dropped``.
    """

    def __init__(self, strategy: Strategy, model: nn.Module, defense: PaperDefense, *, local_lr: float,
                 weighted_by_key: str | None = None, require_mod: bool = True):
        super().__init__()
        if not isinstance(strategy, Strategy):
            raise FedshieldError(f"strategy must be a flwr Strategy, got {type(strategy).__name__}")
        if not isinstance(model, nn.Module):
            raise FedshieldError(f"model must be a torch nn.Module, got {type(model).__name__}")
        if not isinstance(defense, PaperDefense):
            raise FedshieldError(f"defense must be a fedshield.defense.PaperDefense, got {type(defense).__name__}")
        if isinstance(local_lr, bool) or not isinstance(local_lr, (int, float)) or not float(local_lr) > 0:
            raise FedshieldError(f"local_lr must be the clients' learning rate (> 0), got {local_lr!r}")
        self.strategy = strategy
        self.model = copy.deepcopy(model).cpu().eval()
        self.keys = trainable_keys(self.model)
        defense.check_model(self.model)
        self.defense = defense
        self.local_lr = float(local_lr)
        self.weighted_by_key = weighted_by_key or getattr(strategy, "weighted_by_key", "num-examples")
        self.require_mod = bool(require_mod)
        self._rounds: dict[int, tuple[Tensor, ArrayRecord, float]] = {}
        self.history: list[dict] = []

    def __repr__(self) -> str:
        return f"DefendedStrategy({self.strategy!r}, {self.defense!r}, local_lr={self.local_lr})"

    # ---- slicing ---------------------------------------------------------------------------
    def slice_bounds(self, arrays: ArrayRecord) -> Tensor:
        """The ``s + 1`` slice boundaries for the global model ``arrays`` (computed once per
        round by :meth:`PaperDefense.update_slices`)."""
        self._load(arrays)
        return self.defense.update_slices(self.model)

    def round_config(self, arrays: ArrayRecord, config: ConfigRecord | None = None) -> ConfigRecord:
        """A copy of ``config`` plus this round's ``fedshield.*`` entries for :class:`DefenseMod`."""
        d = self.defense
        cfg = ConfigRecord(dict(config.items()) if config is not None else {})
        cfg[KEY_BOUNDS] = [int(b) for b in self.slice_bounds(arrays).tolist()]
        cfg[KEY_KEYS] = list(self.keys)
        cfg[KEY_RATIO] = d.ratio
        cfg[KEY_SIGMA] = d.sigma
        cfg[KEY_LR] = self.local_lr
        if d.clip_bound is not None:
            cfg[KEY_CLIP] = d.clip_bound
        if d.floor > 0:
            cfg[KEY_FLOOR] = d.floor
        if d.jitter > 0:
            cfg[KEY_JITTER] = d.jitter
        return cfg

    def _load(self, arrays: ArrayRecord) -> None:
        self.check_arrays(arrays)
        sd = {k: torch.from_numpy(np.array(arrays[k].numpy())) for k in self.model.state_dict() if k in arrays}
        self.model.load_state_dict(sd, strict=False)

    def check_arrays(self, arrays: ArrayRecord) -> None:
        """Raise one clear error when ``arrays`` do not hold the model's trainable arrays."""
        params = dict(self.model.named_parameters())
        missing = [k for k in self.keys if k not in arrays]
        if missing:
            raise FedshieldError(f"the arrays lack the model's parameters {missing[:5]}; build the initial "
                                 "arrays as ArrayRecord(model.state_dict()) of the same architecture")
        bad = [k for k in self.keys if tuple(arrays[k].shape) != tuple(params[k].shape)]
        if bad:
            k = bad[0]
            raise FedshieldError(f"array {k!r} has shape {tuple(arrays[k].shape)}, the model expects "
                                 f"{tuple(params[k].shape)}")

    # ---- Strategy API ----------------------------------------------------------------------
    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3, timeout: float = 3600,
              train_config: ConfigRecord | None = None, evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None) -> Result:
        """Flower's ``Strategy.start``, after checking ``initial_arrays`` against the model so a
        mismatch fails before the first round is sent. Pass a finite ``timeout``."""
        self.check_arrays(initial_arrays)
        return super().start(grid, initial_arrays, num_rounds=num_rounds, timeout=timeout,
                             train_config=train_config, evaluate_config=evaluate_config,
                             evaluate_fn=evaluate_fn)

    def summary(self) -> None:
        d = self.defense
        log(INFO, "\t├──> fedshield defense: slicing=%s, s=%d, ratio=%.3g, sigma=%.3g (gradient units), "
                  "clip=%s, q=%.3g, compensation=%s, floor=%.3g, jitter=%.3g, local_lr=%.3g", d.slicing, d.n_slices,
            d.ratio, d.sigma, d.clip_bound, d.q, d.do_compensate, d.floor, d.jitter, self.local_lr)
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        t0 = time.perf_counter()
        cfg = self.round_config(arrays, config)
        slice_s = time.perf_counter() - t0
        self._rounds[server_round] = (arrays_to_flat(arrays, self.keys), arrays, slice_s)
        return self.strategy.configure_train(server_round, arrays, cfg, grid)

    def _received(self, ok: list[Message], w_global: Tensor) -> tuple[list[float], list[Tensor]]:
        """Each defended reply's weight ``n_i`` and flat trainable arrays."""
        weights, flats, undefended = [], [], []
        for m in ok:
            metrics = list(m.content.metric_records.values())
            if self.require_mod and not any(METRIC_DEFENDED in r for r in metrics):
                undefended.append(m.metadata.src_node_id)
                continue
            try:
                n = next(r[self.weighted_by_key] for r in metrics if self.weighted_by_key in r)
            except StopIteration:
                raise FedshieldError(f"a reply from node {m.metadata.src_node_id} has no "
                                     f"'{self.weighted_by_key}' metric to weight it by") from None
            _, rec = _single(m.content.array_records, "ArrayRecord")
            flat = arrays_to_flat(rec, self.keys)
            if flat.shape != w_global.shape:
                raise FedshieldError(f"node {m.metadata.src_node_id} sent {flat.numel()} trainable "
                                     f"entries, the model has {w_global.numel()}")
            weights.append(float(n))
            flats.append(flat)
        if undefended:
            raise FedshieldError(f"{len(undefended)} of {len(ok)} clients replied without the fedshield "
                                 f"defense (nodes {undefended[:5]}); add fedshield.flower.DefenseMod() "
                                 "to the ClientApp's mods")
        return weights, flats

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        state = self._rounds.pop(server_round, None)
        ok = [m for m in replies if not m.has_error() and m.has_content()]
        if state is None or not ok:
            return self.strategy.aggregate_train(server_round, replies)
        w_global, _, slice_s = state
        t0 = time.perf_counter()
        weights, flats = self._received(ok, w_global)
        w = torch.tensor(weights, dtype=torch.float64)
        if not bool((w > 0).all()):
            raise FedshieldError(f"client weights '{self.weighted_by_key}' must be > 0, got {weights}")
        p = w / w.sum()
        d = self.defense
        grads = (w_global - torch.stack(flats)) / self.local_lr  # [m, P] received pseudo-gradients g~_i
        mean = p.to(grads.dtype) @ grads                          # G = sum_i p_i g~_i
        ctx = RoundContext(round=server_round, model=self.model, weights=p)
        comp = d.server(mean, ctx)                                # G_c (G itself without compensation)
        noise_var = float(ctx.extra.get("noise_var", d.aggregate_variance(p)))
        dropped = int(ctx.extra.get("dropped_directions", 0))
        if d.do_compensate:
            shift = self.local_lr * (comp.to(mean.dtype) - mean)  # weight units, common to every reply
            for m, flat in zip(ok, flats):
                rk, rec = _single(m.content.array_records, "ArrayRecord")
                m.content.array_records[rk] = flat_to_arrays(flat - shift, rec, self.keys)
        comp_s = time.perf_counter() - t0
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if metrics is None:
            metrics = MetricRecord()
        metrics[METRIC_DROPPED] = dropped
        self.history.append({"round": server_round, "clients": len(ok), "slice_s": slice_s,
                             "compensate_s": comp_s, "noise_var": noise_var, "dropped": dropped})
        log(INFO, "\t└──> fedshield: %d updates, noise var %.3g, %d eigen-directions dropped "
                  "(slicing %.3fs, compensation %.3fs)", len(ok), noise_var, dropped, slice_s, comp_s)
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)
