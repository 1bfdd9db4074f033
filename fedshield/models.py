"""The paper's models (Section 6A).

- :class:`LeNet`: the DLG LeNet: sigmoid convolutions of 12 channels, 5x5 kernels, strides
  2, 2, 1, 1 (four conv layers, as the paper states; the DLG / authors' code uses the first three,
  15,826 parameters on CIFAR-10: ``LeNet(n_conv=3)``), one fully connected layer.
- :class:`ConvNet`: the Inverting Gradients ConvNet: eight 3x3 conv layers with normalisation and
  ReLU, two 3x3 max-pools, one fully connected layer, width parameter (64 by default).
Both take 1x28x28 (MNIST, Fashion-MNIST) or 3x32x32 (CIFAR) inputs.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import FedshieldError


def dlg_init_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """DLG's initialisation, in place: every parameter (weights and biases, in
    ``model.parameters()`` order) ~ uniform(-0.5, 0.5), drawn from ``generator`` (``None``: the
    global RNG). Returns ``model``."""
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.5, 0.5, generator=generator)
    return model


def _out_hw(hw: int, stride: int) -> int:
    # conv 5x5, padding 2: out = floor((hw + 4 - 5) / stride) + 1
    return (hw - 1) // stride + 1


class LeNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32,
                 n_conv: int = 4, channels: int = 12, dlg_init: bool = False):
        super().__init__()
        if n_conv < 1:
            raise FedshieldError(f"n_conv must be >= 1, got {n_conv}")
        strides = [2, 2, 1, 1, 1, 1][:n_conv] if n_conv <= 6 else [2, 2] + [1] * (n_conv - 2)
        layers, c, hw = [], in_channels, image_size
        for s in strides:
            layers += [nn.Conv2d(c, channels, 5, padding=2, stride=s), nn.Sigmoid()]
            c, hw = channels, _out_hw(hw, s)
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * hw * hw, num_classes)
        self.feature_dim = channels * hw * hw
        if dlg_init:
            self.dlg_init_()

    def dlg_init_(self, generator: torch.Generator | None = None) -> "LeNet":
        """DLG's initialisation, in place: :func:`dlg_init_`."""
        return dlg_init_(self, generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The input representation of the FC layer (what PLD/Soteria prunes)."""
        return self.body(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class ConvNet(nn.Module):
    """Inverting Gradients' ConvNet. ``norm``: 'batch' (the original), 'group' or 'none'."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32,
                 width: int = 64, norm: str = "batch"):
        super().__init__()
        if norm not in ("batch", "group", "none"):
            raise FedshieldError(f"norm must be 'batch', 'group' or 'none', got {norm!r}")
        if width < 1:
            raise FedshieldError(f"width must be >= 1, got {width}")

        def block(cin, cout):
            if norm == "batch":
                nl = nn.BatchNorm2d(cout)
            elif norm == "group":
                nl = nn.GroupNorm(min(8, cout), cout)
            else:
                nl = nn.Identity()
            return [nn.Conv2d(cin, cout, 3, padding=1), nl, nn.ReLU()]

        w = width
        chans = [(in_channels, w), (w, 2 * w), (2 * w, 2 * w), (2 * w, 4 * w), (4 * w, 4 * w), (4 * w, 4 * w)]
        layers = []
        for cin, cout in chans:
            layers += block(cin, cout)
        layers += [nn.MaxPool2d(3)]
        layers += block(4 * w, 4 * w) + block(4 * w, 4 * w)
        layers += [nn.MaxPool2d(3)]
        self.body = nn.Sequential(*layers)
        hw = (image_size // 3) // 3
        self.feature_dim = 4 * w * hw * hw
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


DATASET_SHAPES = {
    "mnist": (1, 28, 10),
    "fmnist": (1, 28, 10),
    "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100),
}


def build_model(name: str, dataset: str, **kwargs) -> nn.Module:
    """``build_model('lenet', 'cifar10')`` -> a model sized for that dataset."""
    if dataset not in DATASET_SHAPES:
        raise FedshieldError(f"unknown dataset {dataset!r}; choose from {sorted(DATASET_SHAPES)}")
    c, hw, k = DATASET_SHAPES[dataset]
    name = name.lower()
    if name == "lenet":
        return LeNet(in_channels=c, num_classes=k, image_size=hw, **kwargs)
    if name == "convnet":
        return ConvNet(in_channels=c, num_classes=k, image_size=hw, **kwargs)
    raise FedshieldError(f"unknown model {name!r}; choose from ['convnet', 'lenet']")
