"""``fedshield attack``: run a gradient-leakage attack experiment (DLG / Inverting Gradients)
against an (optionally defended) shared update and report PSNR / SSIM / label accuracy."""
from __future__ import annotations

import ast
import json
import sys

from ..attacks import ATTACKS
from ..baselines import DEFENSES
from ..errors import FedshieldError
from ..experiments.attack import LABEL_MODES, VICTIMS, AttackConfig, run_attack
from ..models import DATASET_SHAPES


def _kv(text: str) -> tuple[str, object]:
    """``name=value`` with a Python literal value (``ratio=0.3``, ``compensate=False``)."""
    if "=" not in text:
        raise FedshieldError(f"expected NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        val = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        val = v
    return k.strip(), val


def add_parser(sub) -> None:
    p = sub.add_parser(
        "attack", help="attack shared gradients with DLG or Inverting Gradients",
        description="Reconstruct test images from the update a client shares (honest-but-curious server), "
                    "optionally defended; report per-victim PSNR / SSIM / label accuracy and their summary. "
                    "Results are cached per victim (FEDSHIELD_CACHE, default results/cache): an interrupted run "
                    "resumes.")
    p.add_argument("--dataset", default="cifar10", help=f"one of {sorted(DATASET_SHAPES)} (default: %(default)s)")
    p.add_argument("--model", default="lenet", help="lenet or convnet (default: %(default)s)")
    p.add_argument("--attack", default="dlg", help=f"one of {list(ATTACKS)} (default: %(default)s)")
    p.add_argument("--defense", default="none",
                   help=f"one of {list(DEFENSES)}, with the paper's settings for the attack (default: %(default)s)")
    p.add_argument("--muted", action="store_true",
                   help="adaptive attacker: drop the FC layer (pld), match only unpruned entries (gc), or detect and "
                        "skip the noisy slices (ours)")
    p.add_argument("--images", type=int, default=8, help="number of victims (default: %(default)s)")
    p.add_argument("--iterations", type=int, default=None,
                   help="DLG: L-BFGS steps, IG: Adam steps (default: 300 for dlg, 1000 for ig)")
    p.add_argument("--seed", type=int, default=0, help="victims, model init, dummy starts, noise (default: %(default)s)")
    p.add_argument("--label", default="known", help=f"one of {list(LABEL_MODES)} (default: %(default)s)")
    p.add_argument("--victim", default="gradient", help=f"one of {list(VICTIMS)} (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=1, help="images per victim update (default: %(default)s)")
    p.add_argument("--restarts", type=int, default=1, help="IG restarts (default: %(default)s)")
    p.add_argument("--model-init", default="auto", help="auto, dlg or default (default: %(default)s)")
    p.add_argument("--defense-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="override a defense setting, e.g. --defense-arg ratio=0.3 (repeatable)")
    p.add_argument("--root-size", type=int, default=100,
                   help="root-set size (training images) for --defense ours (default: %(default)s)")
    p.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="model option, e.g. --model-arg width=16 (repeatable)")
    p.add_argument("--chunk", type=int, default=8, help="victims attacked together (default: %(default)s)")
    p.add_argument("--json", metavar="PATH", help="write config, per-victim rows and summary as JSON")
    p.add_argument("--data-dir", help="data directory (default: $FEDSHIELD_DATA, else ./data)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args) -> int:
    iterations = args.iterations
    if iterations is None:
        iterations = 1000 if args.attack == "ig" else 300
    if iterations <= 0:
        raise FedshieldError(f"--iterations must be > 0, got {iterations}")
    cfg = AttackConfig(dataset=args.dataset, model=args.model, attack=args.attack, defense=args.defense,
                       muted=args.muted, images=args.images, iterations=iterations, seed=args.seed,
                       label=args.label, model_init=args.model_init, victim=args.victim,
                       defense_kwargs=tuple(sorted(_kv(s) for s in args.defense_arg)),
                       model_kwargs=tuple(sorted(_kv(s) for s in args.model_arg)),
                       batch_size=args.batch_size, restarts=args.restarts, root_size=args.root_size).validate()
    res = run_attack(cfg, data_dir=args.data_dir, progress=not args.no_progress, cache=not args.no_cache,
                     chunk=args.chunk)
    s = res["summary"]
    print(f"{cfg.attack} vs {cfg.defense}{' (muted)' if cfg.muted else ''} on {cfg.model}/{cfg.dataset}, "
          f"{cfg.images} victim(s), {cfg.iterations} iterations")
    print(f"{'victim':>6} {'index':>7} {'label':>5} {'pred':>5} {'PSNR':>7} {'SSIM':>6} {'grad loss':>10}")
    for r in res["rows"]:
        print(f"{r['victim']:>6} {str(r['index']):>7} {str(r['label']):>5} {str(r['label_pred']):>5} "
              f"{r['psnr']:7.2f} {r['ssim']:6.3f} {r['grad_loss']:10.3g}")
    ps, ss = s["psnr"], s["ssim"]
    print(f"PSNR {ps['mean']:.2f} +- {ps['std']:.2f} dB (median {ps['median']:.2f}), "
          f"SSIM {ss['mean']:.3f} +- {ss['std']:.3f}, label accuracy {s['label_accuracy']:.2f}, "
          f"{s['images_per_second']:.3g} images/s"
          + (f", noisy-slice detection precision {s['detect_precision']:.2f}" if "detect_precision" in s else ""))
    if res["npz"]:
        print(f"reconstructions: {res['npz']}")
    if args.json:
        out = {k: res[k] for k in ("config", "key", "rows", "summary", "npz")}
        try:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1, default=float)
        except OSError as e:
            raise FedshieldError(f"cannot write {args.json}: {e.strerror}") from None
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
