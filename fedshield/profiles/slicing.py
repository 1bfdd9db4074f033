"""Chapter 3 (slicing and perturbation, Section 4B; Table III[A]: risk- vs layer-size slicing
against Inverting Gradients on ConvNet).

``table3``: Table III at the paper's GIA scale from the attack campaign
(``fedshield.experiments.attack_campaign.table3_long``): ``run`` the missing cells here (smoke: a
miniature of ``iterations`` Adam steps, ``images`` victims, ConvNet ``width``, ``datasets``) or read
the committed tables of profile ``tables`` (``None`` = the plan's own scale).
"""
PROFILES = {
    "smoke": dict(table3=dict(run=True, tables="smoke", iterations=5, images=1, width=4, datasets=("mnist",)), dataset="cifar10", root_size=50, n_slices=10, uniform_draws=20000,
                  ig_width=4, ig_images=1, ig_iterations=20, ig_root=20, seed=0),
    "default": dict(table3=dict(run=False, tables="default", iterations=None, images=None, width=None, datasets=None), dataset="cifar10", root_size=100, n_slices=10, uniform_draws=200000,
                    ig_width=16, ig_images=2, ig_iterations=120, ig_root=50, seed=0),
    "paper": dict(table3=dict(run=True, tables="default", iterations=None, images=None, width=None, datasets=None), dataset="cifar10", root_size=100, n_slices=10, uniform_draws=1000000,
                  ig_width=64, ig_images=16, ig_iterations=1000, ig_root=100, seed=0),
}
