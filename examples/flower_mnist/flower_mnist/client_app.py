"""ClientApp: local training; the fedshield mod defends what leaves the client."""
from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedshield.flower import DefenseMod

from .task import client_data, evaluate, make_model, settings, train


def _partition(ctx: Context, cfg: dict) -> tuple[int, int]:
    # Simulation: Flower sets partition-id / num-partitions per virtual SuperNode.
    # Deployment: flower-supernode --node-config "partition-id=0 num-partitions=2".
    return int(ctx.node_config["partition-id"]), int(ctx.node_config.get("num-partitions", cfg["num-partitions"]))


def make_client_app(overrides: dict | None = None, seed: int | None = None) -> ClientApp:
    """The ClientApp. ``seed``: reproducible defense noise (``None``: OS entropy, the default)."""
    defense_mod = DefenseMod(seed=seed)

    def maybe_defend(msg: Message, ctx: Context, call_next):
        # The run config decides; a client that always wants protection uses DefenseMod() alone
        # (it refuses to send an update when the server does not run DefendedStrategy).
        if settings(ctx.run_config, overrides)["defense"]:
            return defense_mod(msg, ctx, call_next)
        return call_next(msg, ctx)

    app = ClientApp(mods=[maybe_defend])

    @app.train()
    def train_fn(msg: Message, ctx: Context) -> Message:
        torch.set_num_threads(1)
        cfg = settings(ctx.run_config, overrides)
        pid, n_parts = _partition(ctx, cfg)
        x, y = client_data(cfg, pid, n_parts)
        model = make_model()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        rnd = int(msg.content["config"].get("server-round", 0))
        loss = train(model, x, y, epochs=cfg["local-epochs"], batch_size=cfg["batch-size"],
                     lr=float(msg.content["config"].get("lr", cfg["lr"])), seed=cfg["seed"] * 100003 + rnd * 1009 + pid)
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                              "metrics": MetricRecord({"train_loss": loss, "num-examples": len(y)})})
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate_fn(msg: Message, ctx: Context) -> Message:
        cfg = settings(ctx.run_config, overrides)
        pid, n_parts = _partition(ctx, cfg)
        x, y = client_data(cfg, pid, n_parts)
        model = make_model()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        loss, acc = evaluate(model, x, y)
        content = RecordDict({"metrics": MetricRecord({"eval_loss": loss, "eval_acc": acc, "num-examples": len(y)})})
        return Message(content=content, reply_to=msg)

    return app


app = make_client_app()
