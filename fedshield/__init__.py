"""fedshield: defending federated learning against gradient leakage.

Implements Wang, Guo, Xie, Qi, "Protect Privacy from Gradient Leakage Attack in Federated
Learning" (IEEE INFOCOM 2022) with the attacks and baselines it is evaluated against.

Modules
-------
- :mod:`fedshield.params`    the flat-vector layout (trainable tensors, ranges, slices)
- :mod:`fedshield.data`      datasets (MNIST, Fashion-MNIST, CIFAR-10/100), non-IID partition, root set
- :mod:`fedshield.models`    LeNet (DLG) and ConvNet (Inverting Gradients)
- :mod:`fedshield.fl`        batched FedAvg simulator with client / server hooks
- :mod:`fedshield.defense`   the paper's defense, one function per step
- :mod:`fedshield.attacks`   DLG and Inverting Gradients, label inference, the adaptive attacker
- :mod:`fedshield.experiments` attack and FedAvg experiments by defense name (one ``build_defense``)
- :mod:`fedshield.baselines` GC, DP-G, DP-L, PLD (Soteria)
- :mod:`fedshield.metrics`   PSNR, SSIM, accuracy, overhead
- :mod:`fedshield.cache`     experiment configs and the on-disk result cache
- :mod:`fedshield.flower`    the defense as a Flower mod and strategy (optional extra)
"""
from .errors import FedshieldError

__version__ = "0.1.0"
__all__ = ["FedshieldError", "__version__"]
