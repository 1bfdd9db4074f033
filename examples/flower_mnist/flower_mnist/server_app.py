"""ServerApp: FedAvg, wrapped in fedshield's DefendedStrategy when the defense is on."""
from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedshield.defense import PaperDefense
from fedshield.flower import DefendedStrategy

from .task import evaluate, make_model, server_data, settings

HISTORY: dict[str, list] = {}  # filled by run_simulation.py runs: label -> [(round, accuracy), ...]


def make_server_app(overrides: dict | None = None, label: str | None = None) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, ctx: Context) -> None:
        cfg = settings(ctx.run_config, overrides)
        name = label or ("defended" if cfg["defense"] else "undefended")
        (x_root, y_root), (x_test, y_test) = server_data(cfg)
        model = make_model(cfg["seed"])
        strategy = FedAvg(fraction_train=cfg["fraction-train"], fraction_evaluate=0.0,
                          min_train_nodes=1, min_available_nodes=1)
        if cfg["defense"]:
            defense = PaperDefense(x_root, y_root, ratio=cfg["ratio"], sigma=cfg["sigma"], n_slices=cfg["n-slices"],
                                   clip_bound=cfg["clip-bound"] or None, q=cfg["q"], seed=cfg["seed"])
            strategy = DefendedStrategy(strategy, model, defense, local_lr=cfg["lr"])
        history = HISTORY.setdefault(name, [])

        def central_eval(rnd: int, arrays: ArrayRecord) -> MetricRecord:
            m = make_model()
            m.load_state_dict(arrays.to_torch_state_dict())
            loss, acc = evaluate(m, x_test, y_test)
            history.append((rnd, acc))
            print(f"[{name}] round {rnd:3d}  test accuracy {acc:.4f}  loss {loss:.4f}", flush=True)
            return MetricRecord({"accuracy": acc, "loss": loss})

        strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                       num_rounds=cfg["num-server-rounds"], timeout=600,
                       train_config=ConfigRecord({"lr": cfg["lr"]}), evaluate_fn=central_eval)

    return app


app = make_server_app()
