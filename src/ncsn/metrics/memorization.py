"""Memorization check: are generated samples closer to the training set than new real data is?

The "data copying" view (Meehan et al. 2020, "A Non-Parametric Test to Detect Data-Copying in
Generative Models"): a model that generalises produces samples whose distance to the nearest
training example is distributed like that of held-out real examples. A sample much closer to its
nearest training example than almost any held-out image is a likely copy. We flag samples whose
nearest-training distance is below the ``quantile`` (default the 1st percentile) of the held-out
images' nearest-training distances; for a model that does not copy, about ``quantile`` of its
samples are flagged by chance.

Distances are Euclidean, in whatever space the inputs live in: flattened pixels by default
(exact copies sit at distance ≈ 0), or feature vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ncsn.errors import NCSNError
from ncsn.metrics.precision_recall import nearest_distances

__all__ = ["MemorizationReport", "memorization_report"]


@dataclass
class MemorizationReport:
    """Per-sample nearest-training distances and the samples flagged as likely copies."""

    distances: np.ndarray
    nearest_train: np.ndarray
    held_out_distances: np.ndarray
    quantile: float
    threshold: float
    flagged: np.ndarray

    @property
    def fraction_flagged(self) -> float:
        """Fraction of samples below the threshold (≈ ``quantile`` when nothing is copied)."""
        return len(self.flagged) / len(self.distances)

    def summary(self, max_indices: int = 100) -> dict:
        """JSON-ready summary; lists at most ``max_indices`` flagged samples, closest first."""
        closest_first = self.flagged[np.argsort(self.distances[self.flagged], kind="stable")]
        return {
            "quantile": self.quantile,
            "threshold": self.threshold,
            "fraction_flagged": self.fraction_flagged,
            "num_flagged": int(len(self.flagged)),
            "flagged": [int(i) for i in closest_first[:max_indices]],
            "nearest_train_of_flagged": [
                int(self.nearest_train[i]) for i in closest_first[:max_indices]
            ],
            "median_distance": float(np.median(self.distances)),
            "median_held_out_distance": float(np.median(self.held_out_distances)),
        }


def memorization_report(
    samples: torch.Tensor | np.ndarray,
    train: torch.Tensor | np.ndarray,
    held_out: torch.Tensor | np.ndarray,
    *,
    quantile: float = 0.01,
) -> MemorizationReport:
    """Compare samples' nearest-training distances with those of held-out real data.

    ``samples``, ``train`` and ``held_out`` are images (N, C, H, W) or vectors (N, D); ``held_out``
    must not overlap ``train`` (use the test split). Flags sample i when its distance to the
    nearest training example is below the ``quantile`` of the held-out distances.
    """
    if not 0.0 < quantile < 1.0:
        raise NCSNError(f"quantile must be in (0, 1), got {quantile}")
    if len(samples) == 0 or len(held_out) == 0 or len(train) == 0:
        raise NCSNError("memorization_report needs non-empty samples, train and held-out sets")
    distances, nearest = nearest_distances(samples, train)
    held_out_distances, _ = nearest_distances(held_out, train)
    distances_np = distances.numpy().astype(np.float64)
    held_out_np = held_out_distances.numpy().astype(np.float64)
    threshold = float(np.quantile(held_out_np, quantile))
    flagged = np.flatnonzero(distances_np < threshold)
    return MemorizationReport(
        distances=distances_np,
        nearest_train=nearest.numpy(),
        held_out_distances=held_out_np,
        quantile=quantile,
        threshold=threshold,
        flagged=flagged,
    )
