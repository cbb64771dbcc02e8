"""Losses: adversarial (``GANLoss``) and our MGGC-style density objective (``density``)."""
from gan.losses.gan import GAN_KINDS, GANLoss
from gan.losses.density import (
    DensityConfig, DensityObjective, DensityResult, FrozenFeatures, bandwidth, density_loss,
    make_neighbors, max_shift, neighborhood_batches)

__all__ = ["GAN_KINDS", "GANLoss", "DensityConfig", "DensityObjective", "DensityResult",
           "FrozenFeatures", "bandwidth", "density_loss", "make_neighbors", "max_shift",
           "neighborhood_batches"]
