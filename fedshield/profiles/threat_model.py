"""Chapter 1 (threat model, Table I): DLG on LeNet (DLG initialisation) against no defense, the
paper's defense ('ours') and the adaptive "muted" attacker, on four datasets."""
_DATASETS = ("mnist", "fmnist", "cifar10", "cifar100")
PROFILES = {
    "smoke": dict(datasets=_DATASETS, images=1, iterations=8, root_size=20, seed=0),
    "default": dict(datasets=_DATASETS, images=3, iterations=50, root_size=100, seed=0),
    "paper": dict(datasets=_DATASETS, images=16, iterations=500, root_size=100, seed=0),
}
