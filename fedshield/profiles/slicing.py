"""Chapter 3 (slicing and perturbation, Section 4B; Table III[A]: risk- vs layer-size slicing
against Inverting Gradients on ConvNet)."""
PROFILES = {
    "smoke": dict(dataset="cifar10", root_size=50, n_slices=10, uniform_draws=20000,
                  ig_width=4, ig_images=1, ig_iterations=20, ig_root=20, seed=0),
    "default": dict(dataset="cifar10", root_size=100, n_slices=10, uniform_draws=200000,
                    ig_width=16, ig_images=2, ig_iterations=120, ig_root=50, seed=0),
    "paper": dict(dataset="cifar10", root_size=100, n_slices=10, uniform_draws=1000000,
                  ig_width=64, ig_images=16, ig_iterations=1000, ig_root=100, seed=0),
}
