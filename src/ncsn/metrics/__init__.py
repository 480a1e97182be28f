"""Sample-quality metrics."""

from ncsn.metrics.distances import (
    NoiseFloor,
    energy_distance,
    mmd,
    noise_floor,
    sliced_wasserstein,
)

__all__ = ["NoiseFloor", "energy_distance", "mmd", "noise_floor", "sliced_wasserstein"]
