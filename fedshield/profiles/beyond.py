"""Chapter 10 (beyond the paper: per-layer compensation).

``run``: run the experiments here (the smoke profile's miniature: ``rounds`` FedAvg rounds, the
aggregate error at ``error_rounds`` with ``draws`` noise draws) or read the committed tables of
profile ``tables`` (made by ``tools/campaign.py compensation_rules`` and ``tools/compensation_error.py``).
"""
PROFILES = {
    "smoke": dict(run=True, rounds=3, seeds=(0,), error_rounds=(0, 2), draws=2, tables="smoke"),
    "default": dict(run=False, rounds=2000, seeds=(0, 1, 2), error_rounds=(0, 100, 500, 1000, 1999), draws=20,
                    tables="default"),
    "paper": dict(run=False, rounds=2000, seeds=(0, 1, 2), error_rounds=(0, 100, 500, 1000, 1999), draws=20,
                  tables="default"),
}
