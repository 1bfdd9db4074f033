"""Chapter 2 (leakage risk, Section 4A; Table III[B] root-set size, III[C] root-set bias).

The risk-over-training run (``fl_*``, ``checkpoints``) uses the training setting of Chapters 4, 5
and 7 at the small scales (DLG's LeNet initialisation, local mini-batches of 5, step 0.1), in which
the sigmoid LeNet leaves chance within 60 rounds; ``paper``: full-batch SGD at 1e-2 from the
default initialisation.

``table3``: Table III at the paper's GIA scale from the attack campaign
(``fedshield.experiments.attack_campaign.table3_long``): ``run`` the missing cells here (smoke: a
miniature of ``iterations`` Adam steps, ``images`` victims, ConvNet ``width``, ``datasets``) or read
the committed tables of profile ``tables`` (``None`` = the plan's own scale).
"""
PROFILES = {
    "smoke": dict(table3=dict(run=True, tables="smoke", iterations=5, images=1, width=4, datasets=("mnist",)), dataset="cifar10", root_size=50, probes=4, convnet_width=4, tiny_samples=3,
                  fl_dataset="mnist", fl_clients=20, fl_per_round=5, checkpoints=(0, 2, 4), fl_root=30,
                  fl_local_lr=0.1, fl_batch_size=5, fl_model_kwargs=(("dlg_init", True),),
                  root_sizes=(25, 50), biases=(0.1, 0.5, 1.0), ref_root=100, convnet_root=8,
                  images=1, iterations=8, seed=0),
    "default": dict(table3=dict(run=False, tables="default", iterations=None, images=None, width=None, datasets=None), dataset="cifar10", root_size=100, probes=8, convnet_width=16, tiny_samples=8,
                    fl_dataset="mnist", fl_clients=100, fl_per_round=10, checkpoints=(0, 10, 20, 40, 60),
                    fl_local_lr=0.1, fl_batch_size=5, fl_model_kwargs=(("dlg_init", True),),
                    fl_root=100, root_sizes=(50, 100, 200, 400), biases=(0.1, 0.2, 0.4, 0.6, 0.8, 1.0),
                    ref_root=1000, convnet_root=32, images=3, iterations=40, seed=0),
    "paper": dict(table3=dict(run=True, tables="default", iterations=None, images=None, width=None, datasets=None), dataset="cifar10", root_size=100, probes=16, convnet_width=64, tiny_samples=16,
                  fl_dataset="mnist", fl_clients=100, fl_per_round=10, checkpoints=(0, 100, 500, 1000, 2000),
                  fl_local_lr=1e-2, fl_batch_size=None, fl_model_kwargs=(),
                  fl_root=100, root_sizes=(50, 100, 200, 400), biases=(0.1, 0.2, 0.4, 0.6, 0.8, 1.0),
                  ref_root=2000, convnet_root=100, images=16, iterations=500, seed=0),
}
