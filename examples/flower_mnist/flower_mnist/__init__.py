"""MNIST on Flower with the fedshield defense (Wang et al., INFOCOM 2022)."""
