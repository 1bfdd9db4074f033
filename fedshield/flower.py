"""The paper's defense inside Flower: a client *mod* and a server *strategy wrapper*.

Install with ``pip install 'fedshield[flower]'`` (pins ``flwr[simulation]==1.41.0``).

How a defended round runs
-------------------------
1. **Server, once per round** (:class:`DefendedStrategy`): load the global arrays into the model,
   estimate the per-tensor leakage risk on the server's public root set
   (:func:`fedshield.defense.leakage_risk`) and cut the flattened parameter vector into ``s``
   slices of equal risk (:func:`fedshield.defense.risk_slices`). The boundaries, the trainable
   array keys (in ``model.parameters()`` order), ``ratio``, ``sigma`` and the clipping bound travel
   in the round's ``ConfigRecord`` under ``fedshield.*`` keys. Clients never recompute the slicing.
2. **Client** (:class:`DefenseMod`, placed in ``ClientApp(mods=[...])``): the ClientApp trains as
   usual; on the way out the mod forms the update ``u = w_global - w_local`` over the trainable
   arrays, clips it (``u <- u / max(1, ||u||_2 / B)``), adds ``N(0, sigma^2)`` to every entry of
   ``max(1, floor(s * ratio))`` slices drawn by reservoir sampling
   (:func:`fedshield.defense.perturb`), and replies with the arrays ``w_global - u~``. Buffers
   (e.g. batch-norm statistics) pass unchanged. The noise generator is seeded from OS entropy
   unless a seed is given, so the server cannot predict it; which slices were perturbed never
   leaves the client (it is kept in ``context.state`` for the client's own audit).
3. **Server, aggregation**: with weights ``p_i = n_i / sum_j n_j`` (the ``num-examples`` metric)
   the noisy weighted-average update is ``U = sum_i p_i u~_i``. Its per-coordinate noise variance
   is :func:`fedshield.defense.aggregate_noise_var` ``(p, ratio, sigma)``; the Marchenko-Pastur
   compensation (:func:`fedshield.defense.compensate`) turns ``U`` into ``U_c``. The correction
   ``d = U_c - U`` is added to every client's update before the wrapped strategy aggregates
   (``w_i <- w_i - d``). For FedAvg the result is exactly ``w_global - U_c``; because the shift is
   common to all replies, strategies that post-process a weighted mean (FedAvgM, FedAdam, ...) or
   are translation-equivariant (median, trimmed mean, Krum) see a compensated input too. The
   variance formula assumes the weighted-average aggregation.

Bad configuration (no root set, ``ratio`` outside ``(0, 1]``, ``sigma < 0``, too many slices,
initial arrays that do not match the model) raises :class:`~fedshield.errors.FedshieldError` when
the strategy is built or started, before any round is sent. A client without the mod is detected
at the first aggregation (its reply lacks the ``fedshield.defended`` metric) and stops the run with
one clear message; a client whose mod finds no ``fedshield.*`` entries in the config replies with
an error instead of an undefended update.

Telemetry: importing this module sets ``FLWR_TELEMETRY_ENABLED=0``, ``FLWR_DISABLE_UPDATE_CHECK=1``
and ``RAY_USAGE_STATS_ENABLED=0`` unless they are already set.

Example
-------
::

    from flwr.clientapp import ClientApp
    from flwr.serverapp.strategy import FedAvg
    from fedshield.flower import DefenseMod, DefendedStrategy

    client_app = ClientApp(mods=[DefenseMod()])                  # client side
    strategy = DefendedStrategy(FedAvg(fraction_train=0.1), model,  # server side
                                root_set=(x_root, y_root), ratio=0.2, sigma=0.1)
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

from . import defense as _defense
from .errors import FedshieldError
from .utils import check_nonneg, check_ratio, make_generator

__all__ = [
    "DefenseMod", "DefendedStrategy", "trainable_keys", "arrays_to_flat", "flat_to_arrays",
    "KEY_BOUNDS", "KEY_KEYS", "KEY_RATIO", "KEY_SIGMA", "KEY_CLIP", "METRIC_DEFENDED",
    "METRIC_DROPPED",
]

# ConfigRecord entries the strategy sends and the mod reads.
KEY_BOUNDS = "fedshield.bounds"   # list[int], s + 1 slice boundaries into the flat update
KEY_KEYS = "fedshield.keys"       # list[str], trainable array keys in model.parameters() order
KEY_RATIO = "fedshield.ratio"     # float in (0, 1], fraction of slices perturbed
KEY_SIGMA = "fedshield.sigma"     # float >= 0, noise std
KEY_CLIP = "fedshield.clip"       # float > 0, L2 clipping bound B (absent: no clipping)
# MetricRecord entries.
METRIC_DEFENDED = "fedshield.defended"  # set to 1 by the mod on every defended reply
METRIC_DROPPED = "fedshield.dropped"    # eigen-directions removed by the compensation

_ERR_MOD = 6  # flwr.common.constant.ErrorCode.MOD_FAILED_PRECONDITION


# --------------------------------------------------------------------------- array helpers
def trainable_keys(model: nn.Module) -> list[str]:
    """``state_dict`` keys of the trainable parameters, in ``model.parameters()`` order
    (the order of every flat vector in fedshield)."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


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
        bounds = torch.as_tensor(list(cfg[KEY_BOUNDS]), dtype=torch.long)
        keys = [str(k) for k in cfg[KEY_KEYS]]
        ratio = float(cfg[KEY_RATIO])
        sigma = float(cfg[KEY_SIGMA])
        clip_b = float(cfg[KEY_CLIP]) if KEY_CLIP in cfg else None
    except (KeyError, TypeError, ValueError) as e:
        raise FedshieldError(f"malformed fedshield config entry: {e}") from e
    check_ratio(ratio)
    check_nonneg(sigma, "sigma")
    if clip_b is not None and not clip_b > 0:
        raise FedshieldError(f"clipping bound must be > 0, got {clip_b}")
    if bounds.numel() < 2 or bounds[0] != 0 or not bool((bounds[1:] > bounds[:-1]).all()):
        raise FedshieldError("slice boundaries must start at 0 and increase strictly")
    if not keys:
        raise FedshieldError("the config names no trainable arrays")
    return {"bounds": bounds, "keys": keys, "ratio": ratio, "sigma": sigma, "clip": clip_b}


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

    With ``w`` the received global arrays and ``w'`` the locally trained ones (trainable arrays
    only, flattened in ``model.parameters()`` order), it sends ``w - u~`` where

    ``u = w - w'``,  ``u_c = u / max(1, ||u||_2 / B)``,  ``u~ = u_c + n``,

    ``n`` being ``N(0, sigma^2)`` on every entry of ``max(1, floor(s * ratio))`` of the ``s``
    slices given by the server and 0 elsewhere. It is computed as ``w' - (u~ - u)``, so without
    clipping the entries outside the perturbed slices are bit-identical to the trained ones.

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
            if int(c["bounds"][-1]) != w_global.numel():
                raise FedshieldError(f"slices cover {int(c['bounds'][-1])} entries, the trainable "
                                     f"arrays have {w_global.numel()}")
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
            u = w_global - w_local
            u_def = _defense.clip(u, c["clip"]) if c["clip"] is not None else u
            u_def, chosen = _defense.perturb(u_def, c["bounds"], c["ratio"], c["sigma"],
                                             generator=self._generator(ctx, server_round))
            sent = w_local - (u_def - u)
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
                                               "chosen": [int(i) for i in torch.as_tensor(chosen).tolist()]})
        return out


# --------------------------------------------------------------------------- server side
def _check_root_set(root_set) -> tuple[Tensor, Tensor]:
    if root_set is None:
        raise FedshieldError("DefendedStrategy needs the server's public root set, root_set=(x, y), "
                             "to compute the leakage-risk slices (or pass slicing='size')")
    try:
        x, y = root_set
    except (TypeError, ValueError) as e:
        raise FedshieldError("root_set must be a pair (x, y) of tensors") from e
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.ndim < 2 or x.shape[0] == 0:
        raise FedshieldError(f"root set images must be a non-empty [n, ...] tensor, got shape {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise FedshieldError(f"root set labels must be [n] with n = {x.shape[0]}, got shape {tuple(y.shape)}")
    if not x.is_floating_point() or not torch.isfinite(x).all():
        raise FedshieldError("root set images must be finite floating-point values")
    return x, y.long()


class DefendedStrategy(Strategy):
    """Wrap any Flower strategy with the paper's server side: per-round risk slicing and
    Marchenko-Pastur compensation of the aggregate. Pair it with :class:`DefenseMod` on clients.

    Parameters
    ----------
    strategy : the Flower strategy to wrap (e.g. ``FedAvg``); it samples clients and aggregates.
    model : a model of the federated architecture (copied; used to compute the leakage risk and
        to name the trainable arrays). The initial arrays must be its ``state_dict``.
    root_set : ``(x, y)``, the server's small public data set (paper: 100 images) for
        :func:`fedshield.defense.leakage_risk`. Required unless ``slicing='size'``.
    ratio : fraction ``gamma`` of slices each client perturbs, in ``(0, 1]``.
    sigma : std of the Gaussian noise added to the perturbed slices, ``>= 0``.
    n_slices : number of slices ``s``.
    clip_bound : L2 bound ``B`` of the update each client shares; ``None``: no clipping.
    q : aspect ratio ``v / w`` of the matrix the aggregate is reshaped into for compensation
        (``>= 1``).
    compensation : apply the compensation (``False`` gives the perturbation-only ablation).
    slicing : ``'risk'`` (equal leakage risk, the paper) or ``'size'`` (layer-size baseline).
    probes : random probes of the leakage-risk estimator.
    weighted_by_key : MetricRecord key with each client's weight ``n_i``; default: the wrapped
        strategy's ``weighted_by_key`` or ``'num-examples'``.
    seed : seed of the server's probe generator (``None``: OS entropy).
    require_mod : stop with an error when a reply lacks the mod's ``fedshield.defended`` metric.

    Attributes
    ----------
    history : one dict per aggregated round: ``round``, ``clients``, ``slice_s`` (server time to
        compute the slicing), ``compensate_s``, ``noise_var``, ``dropped``.
    """

    def __init__(self, strategy: Strategy, model: nn.Module, root_set: tuple[Tensor, Tensor] | None = None,
                 *, ratio: float = 0.2, sigma: float = 0.1, n_slices: int = 10,
                 clip_bound: float | None = None, q: float = 6.0, compensation: bool = True,
                 slicing: str = "risk", probes: int = 8, weighted_by_key: str | None = None,
                 seed: int | None = None, require_mod: bool = True):
        super().__init__()
        if not isinstance(strategy, Strategy):
            raise FedshieldError(f"strategy must be a flwr Strategy, got {type(strategy).__name__}")
        if not isinstance(model, nn.Module):
            raise FedshieldError(f"model must be a torch nn.Module, got {type(model).__name__}")
        if slicing not in ("risk", "size"):
            raise FedshieldError(f"slicing must be 'risk' or 'size', got {slicing!r}")
        check_ratio(ratio)
        check_nonneg(sigma, "sigma")
        if clip_bound is not None and not float(clip_bound) > 0:
            raise FedshieldError(f"clip_bound must be > 0 (or None for no clipping), got {clip_bound}")
        if not float(q) >= 1:
            raise FedshieldError(f"q must be >= 1, got {q}")
        if int(probes) < 1:
            raise FedshieldError(f"probes must be >= 1, got {probes}")
        self.strategy = strategy
        self.model = copy.deepcopy(model).cpu().eval()
        self.keys = trainable_keys(self.model)
        if not self.keys:
            raise FedshieldError("the model has no trainable parameters")
        self.sizes = [p.numel() for p in self.model.parameters() if p.requires_grad]
        n_params = sum(self.sizes)
        if not 1 <= int(n_slices) <= n_params:
            raise FedshieldError(f"n_slices must be in [1, {n_params}] (the number of trainable "
                                 f"entries), got {n_slices}")
        self.slicing = slicing
        self.root = _check_root_set(root_set) if slicing == "risk" else None
        if self.root is not None:
            try:
                with torch.no_grad():
                    self.model(self.root[0][:1])
            except Exception as e:  # shape mismatch between root images and model
                raise FedshieldError(f"the model cannot run on the root set images "
                                     f"(shape {tuple(self.root[0].shape)}): {e}") from e
        self.ratio, self.sigma, self.n_slices = float(ratio), float(sigma), int(n_slices)
        self.clip_bound = None if clip_bound is None else float(clip_bound)
        self.q, self.compensation, self.probes = float(q), bool(compensation), int(probes)
        self.weighted_by_key = weighted_by_key or getattr(strategy, "weighted_by_key", "num-examples")
        self.require_mod = bool(require_mod)
        self._gen = make_generator(seed)
        self._rounds: dict[int, tuple[Tensor, ArrayRecord, float]] = {}
        self.history: list[dict] = []

    def __repr__(self) -> str:
        return (f"DefendedStrategy({self.strategy!r}, ratio={self.ratio}, sigma={self.sigma}, "
                f"n_slices={self.n_slices}, clip_bound={self.clip_bound}, q={self.q}, "
                f"slicing={self.slicing!r}, compensation={self.compensation})")

    # ---- slicing ---------------------------------------------------------------------------
    def slice_bounds(self, arrays: ArrayRecord) -> Tensor:
        """The ``s + 1`` slice boundaries for the global model ``arrays`` (computed once per
        round): equal leakage risk on the root set, or equal layer size with ``slicing='size'``."""
        if self.slicing == "size":
            return _defense.size_slices(self.sizes, self.n_slices)
        self._load(arrays)
        risk = _defense.leakage_risk(self.model, self.root[0], self.root[1], probes=self.probes,
                                     generator=self._gen)
        return _defense.risk_slices(self.sizes, risk, self.n_slices)

    def round_config(self, arrays: ArrayRecord, config: ConfigRecord | None = None) -> ConfigRecord:
        """A copy of ``config`` plus this round's ``fedshield.*`` entries for :class:`DefenseMod`."""
        cfg = ConfigRecord(dict(config.items()) if config is not None else {})
        cfg[KEY_BOUNDS] = [int(b) for b in self.slice_bounds(arrays).tolist()]
        cfg[KEY_KEYS] = list(self.keys)
        cfg[KEY_RATIO] = self.ratio
        cfg[KEY_SIGMA] = self.sigma
        if self.clip_bound is not None:
            cfg[KEY_CLIP] = self.clip_bound
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
        log(INFO, "\t├──> fedshield defense: slicing=%s, s=%d, ratio=%.3g, sigma=%.3g, clip=%s, "
                  "q=%.3g, compensation=%s", self.slicing, self.n_slices, self.ratio, self.sigma,
            self.clip_bound, self.q, self.compensation)
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        t0 = time.perf_counter()
        cfg = self.round_config(arrays, config)
        slice_s = time.perf_counter() - t0
        self._rounds[server_round] = (arrays_to_flat(arrays, self.keys), arrays, slice_s)
        return self.strategy.configure_train(server_round, arrays, cfg, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        state = self._rounds.pop(server_round, None)
        ok = [m for m in replies if not m.has_error() and m.has_content()]
        if state is None or not ok:
            return self.strategy.aggregate_train(server_round, replies)
        w_global, _, slice_s = state
        t0 = time.perf_counter()
        weights, flats = [], []
        undefended = []
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
        w = torch.tensor(weights, dtype=torch.float64)
        if not bool((w > 0).all()):
            raise FedshieldError(f"client weights '{self.weighted_by_key}' must be > 0, got {weights}")
        p = w / w.sum()
        updates = w_global - torch.stack(flats)  # [m, P] received updates u~_i
        mean = p.to(updates.dtype) @ updates    # U = sum_i p_i u~_i
        noise_var = float(_defense.aggregate_noise_var(p, self.ratio, self.sigma, n_slices=self.n_slices))
        dropped = 0
        if self.compensation and noise_var > 0:
            res = _defense.compensate(mean, noise_var, self.q, return_info=True)
            comp, info = res if isinstance(res, tuple) else (res, {})
            dropped = _dropped(info)
            shift = comp.to(mean.dtype) - mean  # d = U_c - U, added to every u~_i
            for m, flat in zip(ok, flats):
                rk, rec = _single(m.content.array_records, "ArrayRecord")
                m.content.array_records[rk] = flat_to_arrays(flat - shift, rec, self.keys)
        comp_s = time.perf_counter() - t0
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if metrics is None:
            metrics = MetricRecord()
        metrics[METRIC_DROPPED] = int(dropped)
        self.history.append({"round": server_round, "clients": len(ok), "slice_s": slice_s,
                             "compensate_s": comp_s, "noise_var": noise_var, "dropped": int(dropped)})
        log(INFO, "\t└──> fedshield: %d updates, noise var %.3g, %d eigen-directions dropped "
                  "(slicing %.3fs, compensation %.3fs)", len(ok), noise_var, dropped, slice_s, comp_s)
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)


def _dropped(info: Any) -> int:
    """Number of eigen-directions the compensation removed, from its ``return_info`` output."""
    if isinstance(info, dict):
        for k in ("dropped", "n_dropped", "removed"):
            if k in info:
                return int(info[k])
        return 0
    for k in ("dropped", "n_dropped", "removed"):
        if hasattr(info, k):
            return int(getattr(info, k))
    return 0
