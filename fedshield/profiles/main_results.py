"""Chapter 7 (main results, Table II [A] DLG/LeNet and [B] Inverting Gradients/ConvNet).

Attack part: ``*_images`` victims (batch 1) per (dataset, defense), ``*_iterations`` optimiser
steps (DLG: L-BFGS steps, IG: Adam steps). FL part: FedAvg with each defense for the accuracy
(ACC) and the average round time (ART); ``fl_clients`` / ``fl_per_round`` / ``fl_rounds`` per
dataset for [A] (LeNet), ``fl_rounds_ig`` for [B] (ConvNet); ``fl_skip``: (attack, defense) FL runs
left out at this scale (PLD on ConvNet: its per-sample feature Jacobian costs minutes per round on
a CPU); ``fl_local_lr`` the clients' SGD step (FLConfig's default 1e-2 in ``paper``;
0.1 at the small scales so that a few rounds train visibly). ``risk_every``: the paper's defense recomputes the leakage risk every this many rounds
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
        fl_rounds_ig={"mnist": 2}, fl_skip=(("ig", "pld"),),
        fl_test_samples=500, fl_eval_every=2, risk_every=10,
        sweep_dataset="mnist", sweep_ratios=(0.2, 0.5), sweep_images=1, sweep_iterations=3,
    ),
    "default": dict(
        datasets=("mnist", "fmnist", "cifar10"), defenses=_DEFENSES, seed=0,
        dlg_images=4, dlg_iterations=20,
        ig_images=2, ig_iterations=50, ig_width=16,
        fl_rounds={"mnist": 20, "fmnist": 20, "cifar10": 10},
        fl_clients={"mnist": 100, "fmnist": 100, "cifar10": 100},
        fl_per_round={"mnist": 10, "fmnist": 10, "cifar10": 10}, fl_local_lr=0.1,
        fl_rounds_ig={"mnist": 6, "fmnist": 6, "cifar10": 4}, fl_skip=(("ig", "pld"),),
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
        fl_rounds_ig={"mnist": 2000, "fmnist": 2000, "cifar10": 2000}, fl_skip=(),
        fl_test_samples=None, fl_eval_every=50, risk_every=1,
        sweep_dataset="cifar10", sweep_ratios=(0.1, 0.2, 0.3, 0.5, 0.8), sweep_images=100, sweep_iterations=500,
    ),
}
