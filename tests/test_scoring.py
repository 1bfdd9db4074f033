"""Attack rows scored against the no-information floor and a crowd of same-class test images."""
import numpy as np
import pytest
import torch

from fedshield.data import load_dataset
from fedshield.errors import FedshieldError
from fedshield.experiments.scoring import N_CANDIDATES, SCORE_COLUMNS, candidates_for, score_reconstruction


def test_candidates_are_other_images_of_the_class(data_root):
    xte, yte = load_dataset("mnist", "test", data_root)
    c = candidates_for("mnist", 3741, int(yte[3741]), data_dir=data_root)
    assert c.shape == (N_CANDIDATES - 1, 1, 28, 28)
    # none of them is the victim, all of them are test images of its class
    same = (xte[yte == int(yte[3741])].flatten(1)[None] == c.flatten(1)[:, None]).all(2).any(1)
    assert bool(same.all())
    assert not bool((c.flatten(1) == xte[3741].flatten()).all(1).any())
    assert torch.equal(c, candidates_for("mnist", 3741, int(yte[3741]), data_dir=data_root))   # seeded by the index


def test_exact_reconstruction_scores_rank_one(data_root):
    xte, yte = load_dataset("mnist", "test", data_root)
    x = xte[12].numpy()
    s = score_reconstruction("mnist", x, x, 12, int(yte[12]), data_dir=data_root)
    assert set(SCORE_COLUMNS) <= set(s)
    assert s["rank"] == 1 and s["identified"] == 1.0
    assert s["psnr_gain"] > 30   # an exact copy is far above anything a guess without the update gets


def test_floor_guess_scores_no_gain(data_root):
    xte, yte = load_dataset("mnist", "test", data_root)
    x = xte[12:13].numpy()
    guess = np.full_like(x, x.mean())
    s = score_reconstruction("mnist", x, guess, 12, int(yte[12]), data_dir=data_root)
    assert s["psnr_gain"] <= 1e-6
    assert s["rank"] == N_CANDIDATES and s["identified"] == 0.0


def test_row_without_reconstruction(data_root):
    _, yte = load_dataset("mnist", "test", data_root)
    s = score_reconstruction("mnist", None, None, 12, int(yte[12]), psnr_value=20.0, data_dir=data_root)
    assert np.isnan(s["rank"]) and np.isnan(s["identified"])
    assert s["psnr_gain"] == pytest.approx(20.0 - s["psnr_floor"])
    with pytest.raises(FedshieldError, match="psnr_value"):
        score_reconstruction("mnist", None, None, 12, int(yte[12]), data_dir=data_root)
