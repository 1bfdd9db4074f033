"""fedshield.models (shapes, parameter counts, DLG init) and fedshield.metrics (known cases)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fedshield.errors import FedshieldError
from fedshield.metrics import accuracy, overhead, psnr, ssim, summarize
from fedshield.models import ConvNet, LeNet, build_model


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


# ------------------------------------------------------------------ models
@pytest.mark.parametrize("dataset,in_shape,k", [("mnist", (1, 28, 28), 10), ("fmnist", (1, 28, 28), 10),
                                                ("cifar10", (3, 32, 32), 10), ("cifar100", (3, 32, 32), 100)])
@pytest.mark.parametrize("name,kwargs", [("lenet", {}), ("lenet", {"n_conv": 3}), ("convnet", {"width": 8}),
                                         ("convnet", {"width": 8, "norm": "group"})])
def test_output_and_feature_shapes(dataset, in_shape, k, name, kwargs):
    torch.manual_seed(0)
    model = build_model(name, dataset, **kwargs)
    x = torch.rand(3, *in_shape)
    out = model(x)
    assert out.shape == (3, k) and torch.isfinite(out).all()
    feats = model.features(x)
    assert feats.shape == (3, model.feature_dim) == (3, model.fc.in_features)
    assert torch.allclose(model.fc(feats), out, atol=1e-6)  # forward = fc(features)


def test_convnet_default_width_shapes():
    torch.manual_seed(0)
    for c, hw in ((3, 32), (1, 28)):
        m = ConvNet(in_channels=c, image_size=hw)
        assert m.eval()(torch.rand(2, c, hw, hw)).shape == (2, 10)
        # eight 3x3 conv layers, widths 64 .. 256, one linear layer
        convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
        assert len(convs) == 8 and all(cv.kernel_size == (3, 3) for cv in convs)
        assert [cv.out_channels for cv in convs] == [64, 128, 128, 256, 256, 256, 256, 256]
        assert sum(isinstance(mod, nn.Linear) for mod in m.modules()) == 1


def test_lenet_parameter_counts():
    # DLG's LeNet on CIFAR-10 (three 5x5 convs of 12 channels, 12*8*8 -> 10 FC): 15,826 parameters
    assert _n_params(LeNet(n_conv=3)) == 15826
    # the paper's four conv layers: one more 12->12 5x5 conv (12*12*25 + 12 = 3,612)
    assert _n_params(LeNet()) == 15826 + 3612
    # MNIST: 1 input channel, 28 -> 14 -> 7 -> 7 -> 7
    assert _n_params(build_model("lenet", "mnist")) == (25 + 1) * 12 + 3 * (12 * 12 * 25 + 12) + 12 * 7 * 7 * 10 + 10
    convs = [m for m in LeNet().modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 2, 1, 1]
    assert all(isinstance(a, nn.Sigmoid) for a in list(LeNet().body)[1::2])


def test_lenet_dlg_init_range_and_reproducibility():
    m = LeNet(dlg_init=True)
    flat = torch.cat([p.detach().flatten() for p in m.parameters()])
    assert float(flat.min()) >= -0.5 and float(flat.max()) <= 0.5
    # uniform(-0.5, 0.5): spread over the whole interval, mean ~0, variance 1/12
    assert float(flat.min()) < -0.49 and float(flat.max()) > 0.49
    assert abs(float(flat.mean())) < 0.02 and abs(float(flat.var()) - 1 / 12) < 0.005
    # the default PyTorch init is much narrower for the FC layer: dlg_init really changed it
    default_fc = LeNet().fc.weight.detach()
    assert float(default_fc.abs().max()) < 0.1
    a = LeNet().dlg_init_(torch.Generator().manual_seed(1))
    b = LeNet().dlg_init_(torch.Generator().manual_seed(1))
    c = LeNet().dlg_init_(torch.Generator().manual_seed(2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_model_errors():
    with pytest.raises(FedshieldError, match="unknown dataset"):
        build_model("lenet", "svhn")
    with pytest.raises(FedshieldError, match="unknown model"):
        build_model("resnet", "mnist")
    with pytest.raises(FedshieldError, match="n_conv"):
        LeNet(n_conv=0)
    with pytest.raises(FedshieldError, match="norm"):
        ConvNet(norm="layer")
    with pytest.raises(FedshieldError, match="width"):
        ConvNet(width=0)


# ------------------------------------------------------------------ PSNR
def test_psnr_known_cases():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(4, 3, 32, 32, generator=g) * 0.9
    assert torch.isinf(psnr(ref, ref)).all()
    # a constant offset d: MSE = d^2, PSNR = 10 log10(1 / d^2) = 20 dB for d = 0.1
    p = psnr(ref + 0.1, ref)
    assert p.shape == (4,) and torch.allclose(p, torch.full((4,), 20.0, dtype=p.dtype), atol=1e-4)
    assert torch.allclose(psnr(ref + 0.01, ref), torch.full((4,), 40.0, dtype=p.dtype), atol=1e-3)
    # per image: only the second image is perturbed
    x = ref.clone()
    x[1] += 0.1
    p = psnr(x, ref)
    assert torch.isinf(p[[0, 2, 3]]).all() and p[1].item() == pytest.approx(20.0, abs=1e-4)
    # CHW input, data range 255
    assert psnr(ref[0] * 255 + 25.5, ref[0] * 255, data_range=255).item() == pytest.approx(20.0, abs=1e-4)
    # the reconstruction is clipped to the valid range before comparing
    assert torch.isinf(psnr(torch.full((1, 8, 8), 2.0), torch.ones(1, 8, 8))).all()


# ------------------------------------------------------------------ SSIM
@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 32, 32)])
def test_ssim_identical_noisy_and_monotone(shape):
    g = torch.Generator().manual_seed(0)
    # a smooth image with structure (gradient + blobs) rather than pure noise
    h, w = shape[-2:]
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = 0.5 + 0.3 * torch.sin(6 * xx) * torch.cos(4 * yy)
    ref = base.expand(*shape).clone()
    s = ssim(ref, ref)
    assert s.shape == (shape[0],) and torch.allclose(s, torch.ones_like(s))
    noise = torch.randn(shape, generator=g)
    s_small = ssim((ref + 0.05 * noise).clamp(0, 1), ref)
    s_large = ssim((ref + 0.3 * noise).clamp(0, 1), ref)
    assert (s_small < 1).all() and (s_large < s_small).all() and (s_large > -1).all()


def test_ssim_constant_images_closed_form():
    # constant images a, b: sigma terms vanish and SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 L)^2
    a, b = 0.5, 0.6
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    s = ssim(torch.full((1, 28, 28), b), torch.full((1, 28, 28), a))
    assert s.item() == pytest.approx(expected, abs=1e-6)
    assert s.item() < 0.99


def test_metric_shape_mismatch_errors():
    with pytest.raises(FedshieldError, match="shapes differ"):
        psnr(torch.rand(2, 1, 28, 28), torch.rand(2, 1, 32, 32))
    with pytest.raises(FedshieldError, match="shapes differ"):
        ssim(torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32))
    with pytest.raises(FedshieldError, match="shapes differ"):
        psnr(torch.rand(3, 32, 32), torch.rand(2, 3, 32, 32))


# ------------------------------------------------------------------ accuracy, overhead, summarize
class _Slice(nn.Module):
    """Logits = the first 3 features, so the prediction is argmax(x[:, :3])."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        assert not self.training
        return x[:, :3] + 0 * self.dummy


def test_accuracy_batches_and_restores_mode():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(250, 5, generator=g)
    y = x[:, :3].argmax(1)
    m = _Slice()
    m.train()
    assert accuracy(m, x, y, batch_size=16) == 1.0
    assert m.training
    y_wrong = y.clone()
    y_wrong[:100] = (y_wrong[:100] + 1) % 3
    assert accuracy(m, x, y_wrong, batch_size=7) == pytest.approx(150 / 250)


def test_overhead():
    assert overhead(1.5, 1.0) == pytest.approx(0.5)
    assert overhead(0.8, 1.0) == pytest.approx(-0.2)
    with pytest.raises(FedshieldError):
        overhead(1.0, 0.0)


def test_summarize_with_inf():
    s = summarize([1.0, 2.0, 3.0, math.inf])
    assert s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(np.std([1, 2, 3]))
    assert s["median"] == pytest.approx(2.5) and s["min"] == 1.0 and s["max"] == math.inf
    assert s["n"] == 4 and s["n_inf"] == 1
    s = summarize(torch.tensor([4.0, 8.0]).tolist())
    assert s["mean"] == 6.0 and s["n_inf"] == 0
    s = summarize([math.inf, math.inf])
    assert math.isnan(s["mean"]) and s["n"] == 2
