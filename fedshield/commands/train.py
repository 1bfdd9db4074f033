"""``fedshield train``: run a (non-IID) FedAvg simulation and write its results as JSON."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..baselines import DEFENSES
from ..errors import FedshieldError
from ..experiments import fl_defense
from ..experiments.campaign import OURS_REFRESH
from ..fl import FLConfig, run_fedavg


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")


def _batch(text: str):
    if text.strip().lower() == "full":
        return None
    return _int(text)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="simulate FedAvg on a dataset and report test accuracy and round times",
        description="Simulate FedAvg as in the paper (Section 6A): every round the server samples M of N "
                    "clients, each runs local SGD from the global weights and shares w_global - w_local, "
                    "the server averages the updates weighted by the clients' sample counts and applies "
                    "them. Prints the final test accuracy and the mean round time; --json writes per-round "
                    "accuracy, round times and the config. Finished runs are cached (FEDSHIELD_CACHE, default "
                    "results/cache) and an interrupted run resumes from its last checkpoint.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="mnist",
                   help="mnist, fmnist, cifar10 or cifar100")
    p.add_argument("--model", default="lenet", help="lenet (DLG's sigmoid LeNet) or convnet (Inverting Gradients)")
    p.add_argument("--rounds", type=_int, default=50, metavar="R", help="number of FedAvg rounds")
    p.add_argument("--clients", type=_int, default=100, metavar="N", help="total number of clients")
    p.add_argument("--per-round", type=_int, default=10, metavar="M", help="clients sampled per round (M <= N)")
    p.add_argument("--seed", type=_int, default=0, metavar="S",
                   help="seeds model init, partition, client sampling and local shuffling")
    p.add_argument("--local-epochs", type=_int, default=2, metavar="E", help="local SGD epochs per round")
    p.add_argument("--lr", type=_float, default=1e-2, help="local SGD learning rate")
    p.add_argument("--batch-size", type=_batch, default=1, metavar="B",
                   help="local mini-batch size, or 'full' for the client's whole data (one step per epoch); "
                        "the default 1 is the calibrated setting (the book's calibration page: closest to the "
                        "paper's undefended accuracy after 2000 rounds)")
    p.add_argument("--init", default="dlg", choices=["dlg", "default"],
                   help="LeNet initialisation: dlg (U(-0.5, 0.5), DLG's; the calibrated setting) or default "
                        "(PyTorch's, with which the sigmoid LeNet stays at chance at SGD 1e-2)")
    p.add_argument("--n-conv", type=_int, default=4, metavar="L",
                   help="LeNet convolutions (the paper's 4; DLG's and the authors' code have 3)")
    p.add_argument("--risk-every", type=_int, default=None, metavar="R",
                   help="--defense ours: recompute the leakage risk and slices every R rounds (default: "
                        "rounds 0, 1, 2, 4, ..., 128, then every 200, the book's schedule, chosen from the measured "
                        "drift of the slice boundaries)")
    p.add_argument("--server-lr", type=_float, default=1.0, help="server step size on the averaged update")
    p.add_argument("--partition", default="noniid",
                   help="noniid (paper: 2 classes per client, 1..K samples each) or iid (K+1 samples per client)")
    p.add_argument("--max-per-class", type=_int, default=None, metavar="K",
                   help="K of the partition (default: the paper's, 10 for (F)MNIST, 20 for CIFAR-10)")
    p.add_argument("--eval-every", type=_int, default=10, metavar="R",
                   help="test accuracy every R rounds (and after the last)")
    p.add_argument("--test-samples", type=_int, default=None, metavar="K",
                   help="evaluate on a fixed random subset of K test images (default: the whole test split)")
    p.add_argument("--defense", default="none",
                   help="defense applied to every round's updates, with the paper's settings for --attack: "
                        "none, ours (the paper's: risk slicing, perturbation, RMT compensation; root set of "
                        "--root-size training images outside all clients), gc (gradient compression), "
                        "dp-g / dp-l (Gaussian / Laplace noise), pld (Soteria)")
    p.add_argument("--attack", default="dlg",
                   help="which of the paper's defense settings to use: dlg (against DLG) or ig (Inverting Gradients)")
    p.add_argument("--root-size", type=_int, default=100, metavar="K",
                   help="root-set size for --defense ours")
    p.add_argument("--data-dir", default=None,
                   help="data directory (default: $FEDSHIELD_DATA, else ./data)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results to this JSON file")
    p.add_argument("--loop", action="store_true",
                   help="train clients one after another instead of batched (same numbers, slower)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args) -> int:
    cfg = FLConfig(dataset=args.dataset, model=args.model, rounds=args.rounds, n_clients=args.clients,
                   per_round=args.per_round, local_epochs=args.local_epochs, local_lr=args.lr,
                   local_batch_size=args.batch_size, server_lr=args.server_lr, partition=args.partition,
                   max_per_class=args.max_per_class, seed=args.seed, eval_every=args.eval_every,
                   test_samples=args.test_samples, model_kwargs=_model_kwargs(args))
    defense = make_train_defense(args, cfg)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FedshieldError(f"device {args.device!r} requested but CUDA is not available")
    res = run_fedavg(cfg, defense, data_dir=args.data_dir, progress=not args.no_progress,
                     cache=not args.no_cache, batched=not args.loop, device=args.device)
    if args.json:
        path = Path(args.json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(res, indent=1))
        except OSError as e:
            raise FedshieldError(f"cannot write {path}: {e.strerror}")
    acc = res["final_accuracy"]
    label = f" with {args.defense}" if args.defense != "none" else ""
    print(f"{cfg.dataset}/{cfg.model}{label}: {cfg.rounds} rounds, {cfg.per_round} of {cfg.n_clients} clients per round; "
          f"final test accuracy {acc:.4f}; mean round time {res['mean_round_time']:.3f} s"
          + (f"; results in {args.json}" if args.json else ""), file=sys.stdout)
    return 0


def _model_kwargs(args) -> tuple:
    """LeNet's ``--init`` / ``--n-conv`` as ``FLConfig.model_kwargs`` (nothing for the ConvNet)."""
    if str(args.model).lower() != "lenet":
        return ()
    kw = []
    if args.init == "dlg":
        kw.append(("dlg_init", True))
    if args.n_conv != 4:
        kw.append(("n_conv", args.n_conv))
    return tuple(kw)


def make_train_defense(args, cfg):
    """The defense named by ``--defense`` (``None`` for 'none') with the paper's settings against
    ``--attack``: :func:`fedshield.experiments.fl_defense` (root set outside every client's data,
    noise seeded from ``--seed``)."""
    name = str(args.defense).lower()
    if name not in DEFENSES:
        raise FedshieldError(f"unknown defense {args.defense!r}; choose from {list(DEFENSES)}")
    if args.attack not in ("dlg", "ig"):
        raise FedshieldError(f"unknown attack {args.attack!r}; choose from ['dlg', 'ig']")
    if name == "none":
        return None
    opts = {}
    risk_every = getattr(args, "risk_every", None)
    if name == "ours":
        opts.update(OURS_REFRESH if risk_every is None else {"risk_every": risk_every})
    elif risk_every is not None:
        raise FedshieldError("--risk-every applies to --defense ours only")
    return fl_defense(name, cfg, attack=args.attack, root_size=args.root_size, data_dir=args.data_dir, **opts)