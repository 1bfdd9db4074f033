"""Chapter 10 (beyond the paper: per-layer compensation, attacks during training).

``run``: run the experiments here (the smoke profile's miniature: ``rounds`` FedAvg rounds, the
aggregate error at ``error_rounds`` with ``draws`` noise draws) or read the committed tables of
profile ``tables`` (made by ``tools/campaign.py compensation_rules``, ``tools/compensation_error.py`` and
``tools/attack_campaign.py attacks_training``). ``attacks``: the attack-during-training plan
(``fedshield.experiments.attack_campaign.attack_plan("attacks_training", ...)``; ``None`` = the plan's
own: 500 L-BFGS steps, 8 victims, rounds 0, 100, 1000, 2000 of the 2000-round run). ``frontier``: the
adaptive attacker's frontier (FedAvg plan ``frontier`` for ``seeds``, attack plan ``attacks_frontier``;
``None`` = the plan's own scale); ``seed_check``: the seeds at which the frontier's MNIST and
Fashion-MNIST cells (minutes each there) are read, where present, for the accuracy loss paired by seed
(never run by the chapter: ``tools/campaign.py frontier --seeds 1 2 --datasets mnist fmnist``).
"""
PROFILES = {
    "smoke": dict(run=True, rounds=3, seeds=(0,), error_rounds=(0, 2), draws=2, tables="smoke",
                  attacks=dict(iterations=3, images=1, datasets=("mnist",), rounds=(0, 2), total=3),
                  frontier=dict(seeds=(0,), datasets=("mnist",), iterations=3, images=1)),
    "default": dict(run=False, rounds=2000, seeds=(0, 1, 2), error_rounds=(0, 100, 500, 1000, 1999), draws=20,
                    tables="default", attacks=dict(iterations=None, images=None, datasets=("mnist", "fmnist"),
                                                   rounds=None, total=None),
                    frontier=dict(seeds=(0,), datasets=("mnist", "fmnist", "cifar10"), iterations=None, images=None,
                                  seed_check=(0, 1, 2))),
    "paper": dict(run=False, rounds=2000, seeds=(0, 1, 2), error_rounds=(0, 100, 500, 1000, 1999), draws=20,
                  tables="default", attacks=dict(iterations=None, images=None, datasets=("mnist", "fmnist"),
                                                 rounds=None, total=None),
                  frontier=dict(seeds=(0,), datasets=("mnist", "fmnist", "cifar10"), iterations=None, images=None,
                                seed_check=(0, 1, 2))),
}
