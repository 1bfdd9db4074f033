"""Chapter 6 (convergence check): least squares on MNIST, FedSGD with the defense."""
PROFILES = {
    "smoke": dict(n_samples=1000, steps=60, clients=5, batch=16, sigmas=(0.0, 0.1), seeds=(0,),
                  n_slices=10, ratio=0.2, q=6.0),
    "default": dict(n_samples=4000, steps=400, clients=10, batch=32, sigmas=(0.0, 0.05, 0.1, 0.2),
                    seeds=(0, 1, 2), n_slices=10, ratio=0.2, q=6.0),
    "paper": dict(n_samples=60000, steps=2000, clients=10, batch=32, sigmas=(0.0, 0.05, 0.1, 0.2),
                  seeds=(0, 1, 2, 3, 4), n_slices=10, ratio=0.2, q=6.0),
}
