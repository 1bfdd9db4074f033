"""Chapter 9 (training at the paper's scale, Section 6): the calibration, Table II[A]'s ACC and ART,
the noise readings, Fig. 2, Table III[D] and III[E] from the campaign's tables.

``run``: run the campaign's cells in the notebook (the smoke profile's 3-round miniature); without
it the chapter reads the committed tables that ``tools/campaign.py`` and ``tools/calibrate.py``
write (2000 rounds, hours of CPU: they are made outside the notebook, in resumable runs of under an
hour, and the page says which cells are still missing). ``tables``: the profile whose tables it reads.
"""
PROFILES = {
    "smoke": dict(run=True, rounds=3, seeds=(0,), datasets=("mnist",), tables="smoke", readings=(0, 8)),
    "default": dict(run=False, rounds=2000, seeds=(0, 1, 2), datasets=("mnist", "fmnist"), tables="default",
                    readings=None),
    "paper": dict(run=False, rounds=2000, seeds=(0, 1, 2), datasets=("mnist", "fmnist", "cifar10"),
                  tables="default", readings=None),
}
