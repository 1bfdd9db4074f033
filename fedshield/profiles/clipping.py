"""Chapter 5 (clipping, Section 5C): Table III[E] and the attacker who also compensates.

FedAvg on MNIST / LeNet (paper partition, 100 clients, 10 per round) for the accuracy column;
DLG (L-BFGS, known labels) on single MNIST test images against the DLG LeNet for the attacks.
Clipping bounds are L2 norms in gradient units (the chapter prints the median clean gradient norm).

``campaign``: the accuracies (Fig. 2 / Table III[D] / III[E]) come from Chapter 8's paper-scale
campaign (``fedshield.experiments.campaign``): ``run`` its missing cells here (smoke: a
``rounds``-round miniature) or read the committed tables of profile ``tables``, for ``seeds``.

``table3``: Table III at the paper's GIA scale from the attack campaign
(``fedshield.experiments.attack_campaign.table3_long``): ``run`` the missing cells here (smoke: a
miniature of ``iterations`` Adam steps, ``images`` victims, ConvNet ``width``, ``datasets``) or read
the committed tables of profile ``tables`` (``None`` = the plan's own scale).
"""
PROFILES = {
    "smoke": dict(table3=dict(run=True, tables="smoke", iterations=5, images=1, width=4, datasets=("mnist",)), campaign=dict(run=True, rounds=3, seeds=(0,), tables="smoke"), bounds=(None, 1.0), rounds=2, local_lr=0.1, seed=0, risk_every=10, root_size=20,
                  probes=2, test_samples=300, images=1, iterations=4, local_batch_size=None, model_kwargs=()),
    # default FedAvg: the setting of chapter 4 that learns within 60 rounds
    "default": dict(table3=dict(run=False, tables="default", iterations=None, images=None, width=None, datasets=None), campaign=dict(run=False, rounds=None, seeds=(0, 1, 2), tables="default"), bounds=(None, 10.0, 1.0, 0.3), rounds=60, local_lr=0.1, seed=0, risk_every=10,
                    root_size=100, probes=8, test_samples=2000, images=3, iterations=25,
                    local_batch_size=5, model_kwargs=(("dlg_init", True),)),
    "paper": dict(table3=dict(run=True, tables="default", iterations=None, images=None, width=None, datasets=None), campaign=dict(run=False, rounds=None, seeds=(0, 1, 2), tables="default"), bounds=(None, 10.0, 3.0, 1.0, 0.3, 0.1), rounds=2000, local_lr=0.01, seed=0, risk_every=1,
                  root_size=100, probes=8, test_samples=None, images=32, iterations=500,
                  local_batch_size=None, model_kwargs=()),
}
