"""Chapter 1 (threat model, Table I): DLG on LeNet (DLG initialisation) against no defense, the
paper's defense ('ours') and the adaptive "muted" attacker, on four datasets.

``attacks``: the cells are the paper-scale attack campaign's (``fedshield.experiments.attack_campaign``,
plan ``attacks_dlg``: 500 L-BFGS steps, 8 victims on MNIST / Fashion-MNIST / CIFAR-10, 4 on
CIFAR-100): ``run`` the missing victims here (smoke: ``iterations`` steps, ``images`` victims) or read
the committed tables of profile ``tables``."""
_DATASETS = ("mnist", "fmnist", "cifar10", "cifar100")
PROFILES = {
    "smoke": dict(datasets=_DATASETS, seed=0, attacks=dict(run=True, tables="smoke", iterations=8, images=1)),
    "default": dict(datasets=_DATASETS, seed=0, attacks=dict(run=False, tables="default", iterations=None, images=None)),
    "paper": dict(datasets=_DATASETS, seed=0, attacks=dict(run=True, tables="default", iterations=None, images=None)),
}
