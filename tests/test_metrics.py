"""The no-information floor and identification (fedshield.metrics): property tests on hand-made data."""
import math

import pytest
import torch

from fedshield.errors import FedshieldError
from fedshield.metrics import floor_images, identification_rank, psnr, psnr_floor


def _images(n, c=1, hw=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, hw, hw, generator=g)


@pytest.mark.parametrize("c", [1, 3])
def test_floor_beats_every_constant_image(c):
    x = _images(6, c=c)
    floor = psnr_floor(x)
    for v in torch.linspace(0, 1, 41):
        assert bool((floor >= psnr(torch.full_like(x, float(v)), x) - 1e-9).all())
    # and every constant colour (one value per channel)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        col = torch.rand(1, c, 1, 1, generator=g).expand_as(x)
        assert bool((floor >= psnr(col, x) - 1e-9).all())


def test_floor_takes_the_better_of_constant_and_class_mean():
    g = torch.Generator().manual_seed(2)
    template = torch.rand(1, 1, 12, 12, generator=g)
    public = (template + 0.05 * torch.randn(200, 1, 12, 12, generator=g)).clamp(0, 1)
    x = (template + 0.05 * torch.randn(5, 1, 12, 12, generator=g)).clamp(0, 1)
    lab = torch.zeros(5, dtype=torch.long)
    with_mean = psnr_floor(x, label=lab, public=(public, torch.zeros(200, dtype=torch.long)))
    alone = psnr_floor(x)
    guesses = floor_images(x, label=lab, public=(public, torch.zeros(200, dtype=torch.long)))
    assert torch.allclose(with_mean, torch.maximum(psnr(guesses["constant"], x), psnr(guesses["class mean"], x)))
    assert bool((with_mean > alone + 3).all())   # the class template is a far better guess than grey


def test_floor_errors():
    x = _images(2)
    with pytest.raises(FedshieldError, match="NaN"):
        psnr_floor(x * float("nan"))
    with pytest.raises(FedshieldError, match="no image of class"):
        psnr_floor(x, label=[3, 3], public=(x, torch.tensor([0, 1])))
    with pytest.raises(FedshieldError, match="labels"):
        psnr_floor(x, label=[0], public=(x, torch.tensor([0, 1])))


def test_exact_image_has_rank_one():
    x = _images(4, seed=3)
    cands = _images(99, seed=4)
    assert identification_rank(x, x, cands).tolist() == [1, 1, 1, 1]
    # unaffected by brightness / contrast: an affine copy is still identified
    assert identification_rank(0.2 + 0.5 * x, x, cands).tolist() == [1, 1, 1, 1]


def test_constant_guess_ranks_last():
    x = _images(3, seed=5)
    cands = _images(49, seed=6)
    guess = floor_images(x)["constant"]
    assert identification_rank(guess, x, cands).tolist() == [50, 50, 50]


def test_floor_image_is_not_identified_beyond_chance():
    """Victims and candidates drawn alike from one class (a template plus noise): the class mean,
    the best guess without the update, identifies the victim at about the chance rate 1/N."""
    g = torch.Generator().manual_seed(7)
    template = torch.rand(1, 1, 10, 10, generator=g)
    n, trials, hits, ranks = 20, 400, 0, []
    mean = template.expand(1, 1, 10, 10)
    for _ in range(trials):
        pool = (template + 0.2 * torch.randn(n, 1, 10, 10, generator=g)).clamp(0, 1)
        r = int(identification_rank(mean, pool[:1], pool[1:])[0])
        hits += r == 1
        ranks.append(r)
    # binomial(400, 1/20): mean 20, sd 4.4; far below what an informative guess reaches
    assert hits <= 20 + 4 * math.sqrt(trials / n)
    assert abs(sum(ranks) / trials - (n + 1) / 2) < 1.5


def test_a_noisy_copy_is_identified():
    g = torch.Generator().manual_seed(8)
    x = _images(8, seed=9)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert bool((identification_rank(noisy, x, _images(99, seed=10)) == 1).all())


def test_identification_errors():
    x = _images(2)
    with pytest.raises(FedshieldError, match="shape"):
        identification_rank(x[:1], x, _images(5))
    with pytest.raises(FedshieldError, match="candidates"):
        identification_rank(x, x, _images(5, hw=8))
    with pytest.raises(FedshieldError, match="NaN"):
        identification_rank(x, x, _images(5) * float("nan"))
