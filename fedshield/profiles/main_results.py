"""Chapter 7 (main results, Table II [A] DLG/LeNet and [B] Inverting Gradients/ConvNet).

Attack part: ``*_images`` victims (batch 1) per (dataset, defense), ``*_iterations`` optimiser
steps (DLG: L-BFGS steps, IG: Adam steps). FL part: FedAvg with each defense for the accuracy
(ACC) and the average round time (ART); ``fl_clients`` / ``fl_per_round`` / ``fl_rounds`` per
dataset for [A] (LeNet), ``fl_rounds_ig`` for [B] (ConvNet). [A]'s clients train with ``fl_local_lr`` / ``fl_batch_size`` from the LeNet initialisation
``fl_model_kwargs``, [B]'s with ``fl_lr_ig`` / ``fl_batch_size_ig`` (the paper's scale: full-batch
SGD at 1e-2 from the default initialisation; the small scales use local mini-batches of 5 and a
larger step, and DLG's uniform initialisation for the sigmoid LeNet, which otherwise stays at chance
for hundreds of rounds, so that accuracy separates the defenses within the rounds a CPU affords).
``pld_kwargs``: PLD's options in the FL runs per attack: ``max_samples`` (score each client's
features on at most this many of its samples per round) and ``probes`` (estimate the feature
Jacobian's row norms with this many forward-mode probes instead of one backward pass per feature);
the per-sample feature Jacobian is the expensive part of a PLD round (minutes per round for the
ConvNet on a CPU when exact on every sample). ``paper``: exact, every sample.
``acc_seeds`` / ``acc_spread``: the seed spread of [B]'s ACC, FedAvg repeated with each seed for the
``(attack, datasets, defenses)`` listed. ``campaign``: [A]'s ACC and ART come from Chapter 8's
paper-scale campaign (``fedshield.experiments.campaign``, plans ``table2a_acc`` and ``table2a_pld``):
``run`` the missing cells here (smoke: a ``rounds``-round miniature) or read the committed tables of
profile ``tables``, for ``seeds``. The ``fl_*`` settings of [A] are then only the attack-side model. ``attacks``: Table II's PSNR / SSIM come from the paper-scale attack campaign
(``fedshield.experiments.attack_campaign``, plans ``attacks_dlg`` and ``attacks_ig``: DLG 500 L-BFGS steps,
IG 1000 Adam steps on the width-64 ConvNet): ``run`` the missing victims here (smoke: a miniature of
``dlg_iterations`` / ``ig_iterations`` steps, ``images`` victims, ConvNet ``ig_width``; ``paper``: the
full cells, GPU work) or read the committed tables of profile ``tables``. ``dlg_*`` / ``ig_*`` /
``sweep_*`` are then only this page's own small-scale runs (the ratio sweep). ``risk_every``: the paper's defense recomputes the leakage risk every this many rounds
in the FL runs. ``ig_width``: ConvNet width (the paper: 64). ``sweep_*``: the ours-muted
attacker against a growing perturbation ratio (DLG, LeNet).
"""
_DEFENSES = ("none", "ours", "gc", "dp-g", "dp-l", "pld")

PROFILES = {
    "smoke": dict(
        datasets=("mnist",), defenses=_DEFENSES, seed=0,
        dlg_images=1, dlg_iterations=3,
        ig_images=1, ig_iterations=5, ig_width=4,
        fl_rounds={"mnist": 2}, fl_clients={"mnist": 100}, fl_per_round={"mnist": 10}, fl_local_lr=0.1,
        fl_batch_size=5, fl_model_kwargs=(("dlg_init", True),), fl_lr_ig=0.05, fl_batch_size_ig=5,
        fl_rounds_ig={"mnist": 2},
        pld_kwargs={"dlg": (("max_samples", 4),), "ig": (("max_samples", 2), ("probes", 8))},
        acc_seeds=(0, 1), acc_spread=(("ig", ("mnist",), ("none", "ours")),),
        campaign=dict(run=True, rounds=3, seeds=(0,), tables="smoke"),
        attacks=dict(run=True, tables="smoke", dlg_iterations=3, ig_iterations=5, images=1, ig_width=4),
        fl_test_samples=500, fl_eval_every=2, risk_every=10,
        sweep_dataset="mnist", sweep_ratios=(0.2, 0.5), sweep_images=1, sweep_iterations=3,
    ),
    "default": dict(
        datasets=("mnist", "fmnist", "cifar10"), defenses=_DEFENSES, seed=0,
        dlg_images=4, dlg_iterations=20,
        ig_images=2, ig_iterations=50, ig_width=16,
        fl_rounds={"mnist": 60, "fmnist": 60, "cifar10": 60},
        fl_clients={"mnist": 100, "fmnist": 100, "cifar10": 100},
        fl_per_round={"mnist": 10, "fmnist": 10, "cifar10": 10}, fl_local_lr=0.1,
        fl_batch_size=5, fl_model_kwargs=(("dlg_init", True),), fl_lr_ig=0.05, fl_batch_size_ig=5,
        fl_rounds_ig={"mnist": 30, "fmnist": 30, "cifar10": 30},
        pld_kwargs={"dlg": (("max_samples", 8),), "ig": (("max_samples", 4), ("probes", 16))},
        acc_seeds=(0, 1, 2), acc_spread=(("ig", ("mnist",), ("none", "ours", "dp-g")),),
        campaign=dict(run=False, rounds=None, seeds=(0, 1, 2), tables="default"),
        attacks=dict(run=False, tables="default", dlg_iterations=None, ig_iterations=None, images=None, ig_width=None),
        fl_test_samples=2000, fl_eval_every=5, risk_every=10,
        sweep_dataset="cifar10", sweep_ratios=(0.1, 0.2, 0.5, 0.8), sweep_images=4, sweep_iterations=20,
    ),
    "paper": dict(
        datasets=("mnist", "fmnist", "cifar10"), defenses=_DEFENSES, seed=0,
        dlg_images=100, dlg_iterations=500,
        ig_images=50, ig_iterations=1000, ig_width=64,
        fl_rounds={"mnist": 2000, "fmnist": 2000, "cifar10": 2000},
        fl_clients={"mnist": 100, "fmnist": 100, "cifar10": 1000},
        fl_per_round={"mnist": 10, "fmnist": 10, "cifar10": 200}, fl_local_lr=1e-2,
        fl_batch_size=None, fl_model_kwargs=(), fl_lr_ig=1e-2, fl_batch_size_ig=None,
        fl_rounds_ig={"mnist": 2000, "fmnist": 2000, "cifar10": 2000}, pld_kwargs={"dlg": (), "ig": ()},
        acc_seeds=(0, 1, 2), acc_spread=(("ig", ("mnist", "fmnist", "cifar10"), ("none", "ours", "gc", "dp-g", "dp-l", "pld")),),
        campaign=dict(run=False, rounds=None, seeds=(0, 1, 2), tables="default"),
        attacks=dict(run=True, tables="default", dlg_iterations=None, ig_iterations=None, images=None, ig_width=None),
        fl_test_samples=None, fl_eval_every=50, risk_every=1,
        sweep_dataset="cifar10", sweep_ratios=(0.1, 0.2, 0.3, 0.5, 0.8), sweep_images=100, sweep_iterations=500,
    ),
}
