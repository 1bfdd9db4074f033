"""Chapter 4 (compensation, Sections 5A-B): spectrum of a perturbed aggregate, Fig. 2, Table III[D].

FedAvg on MNIST / LeNet with the paper's partition (100 clients, 10 per round); the defense with the
paper's DLG setting (ratio 0.2, sigma 0.1 in gradient units, s = 10 slices). ``risk_every``: the
leakage risk (and the slices) are recomputed every that many rounds instead of every round (cost).

``campaign``: the accuracies (Fig. 2 / Table III[D] / III[E]) come from Chapter 8's paper-scale
campaign (``fedshield.experiments.campaign``): ``run`` its missing cells here (smoke: a
``rounds``-round miniature) or read the committed tables of profile ``tables``, for ``seeds``.
"""
PROFILES = {
    "smoke": dict(campaign=dict(run=True, rounds=3, seeds=(0,), tables="smoke"), rounds=2, local_lr=0.1, seeds=(0,), q_values=(1, 6, 12, 20), capture_round=0,
                  noise_draws=5, risk_every=10, root_size=20, probes=2, eval_every=1, test_samples=300,
                  local_batch_size=None, model_kwargs=()),
    # default: DLG's uniform init + local mini-batches of 5 so that the sigmoid LeNet leaves its
    # initial plateau within 60 rounds (undefended; the chapter's accuracy curves show it)
    "default": dict(campaign=dict(run=False, rounds=None, seeds=(0, 1, 2), tables="default"), rounds=60, local_lr=0.1, seeds=(0, 1), q_values=(1, 6, 12, 20), capture_round=5,
                    noise_draws=40, risk_every=10, root_size=100, probes=8, eval_every=5, test_samples=2000,
                    local_batch_size=5, model_kwargs=(("dlg_init", True),)),
    "paper": dict(campaign=dict(run=False, rounds=None, seeds=(0, 1, 2), tables="default"), rounds=2000, local_lr=0.01, seeds=(0, 1, 2, 3, 4), q_values=(1, 6, 12, 20), capture_round=100,
                  noise_draws=100, risk_every=1, root_size=100, probes=8, eval_every=20, test_samples=None,
                  local_batch_size=None, model_kwargs=()),
}
