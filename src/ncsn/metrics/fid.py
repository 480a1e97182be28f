"""Fréchet distance between Gaussian fits of two feature sets, and cached reference statistics.

FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", Eq. 6 in §3) fits a Gaussian N(μ, Σ) to each feature set and reports

    d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½).

With Inception pool3 features this is the published FID; with a domain classifier's penultimate
features it is a domain-specific Fréchet distance (the number is only comparable between runs that
used the same extractor, so results always name it).

Matrix square root. scipy's ``sqrtm`` (used by pytorch-fid) works on the non-symmetric product
Σ₁Σ₂, may return complex values, and needs an ε added to the diagonals when a covariance is
singular (fewer samples than feature dimensions). We only need the trace, and

    tr (Σ₁ Σ₂)^½ = tr (Σ₁^½ Σ₂ Σ₁^½)^½,

because Σ₁Σ₂ = Σ₁^½ (Σ₁^½ Σ₂ Σ₁^½) Σ₁^-½ is similar to the symmetric PSD matrix Σ₁^½ Σ₂ Σ₁^½
(and by continuity when Σ₁ is singular). Both square roots come from symmetric eigendecompositions
(``numpy.linalg.eigh``/``eigvalsh``) with round-off negative eigenvalues clipped to zero, so
the result is real and exact for singular covariances, with no ε regularisation.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ncsn.errors import NCSNError
from ncsn.files import atomic_write_bytes

__all__ = ["ReferenceStats", "feature_stats", "frechet_distance", "load_stats", "save_stats"]


def _as_float64(features: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise NCSNError(f"features must have shape (N, D), got shape {x.shape}")
    return x


def feature_stats(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean μ (D,) and unbiased covariance Σ (D, D) of features (N, D), both float64."""
    x = _as_float64(features)
    if x.shape[0] < 2:
        raise NCSNError(f"need at least 2 feature vectors for a covariance, got {x.shape[0]}")
    mu = x.mean(axis=0)
    centred = x - mu
    sigma = centred.T @ centred / (x.shape[0] - 1)
    return mu, sigma


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix, eigenvalues clipped at zero."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½) (Heusel et al. 2017, Eq. 6).

    tr (Σ₁Σ₂)^½ is computed as the sum of square roots of the eigenvalues of the symmetric
    Σ₁^½ Σ₂ Σ₁^½ (see the module docstring), which is exact for singular covariances.
    """
    mean_term, cov_term = frechet_terms(mu1, sigma1, mu2, sigma2)
    return float(max(mean_term + cov_term, 0.0))


def frechet_terms(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> tuple[float, float]:
    """The two terms of :func:`frechet_distance`: (‖μ₁ − μ₂‖², tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)), which
    say whether two sets differ in where their features sit or in how they spread."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise NCSNError(
            "frechet_distance needs means of shape (D,) and covariances of shape (D, D); got "
            f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    sigma1 = (sigma1 + sigma1.T) / 2
    sigma2 = (sigma2 + sigma2.T) / 2
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff), float(np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


@dataclass
class ReferenceStats:
    """Gaussian fit (and optionally the features themselves) of a reference set.

    ``extractor`` names the feature extractor that produced the features and ``fingerprint``
    identifies the reference images (see :func:`ncsn.metrics.evaluate.fingerprint`), so that a
    cache computed for another extractor or data set is never used by mistake.
    """

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None = None
    extractor: str = ""
    fingerprint: str = ""

    @classmethod
    def from_features(
        cls,
        features: torch.Tensor | np.ndarray,
        *,
        extractor: str = "",
        fingerprint: str = "",
        keep_features: bool = True,
    ) -> ReferenceStats:
        """Statistics of ``features`` (N, D); keeps a float32 copy for KID and precision/recall."""
        mu, sigma = feature_stats(features)
        kept = _as_float64(features).astype(np.float32) if keep_features else None
        return cls(mu, sigma, kept, extractor, fingerprint)


_REQUIRED_KEYS = ("mu", "sigma")


def save_stats(path: str | os.PathLike, stats: ReferenceStats) -> None:
    """Write ``stats`` to an uncompressed .npz (no pickled objects), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "mu": stats.mu.astype(np.float64),
        "sigma": stats.sigma.astype(np.float64),
        "extractor": np.array(stats.extractor),
        "fingerprint": np.array(stats.fingerprint),
    }
    if stats.features is not None:
        arrays["features"] = np.asarray(stats.features, dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_stats(path: str | os.PathLike) -> ReferenceStats:
    """Read statistics written by :func:`save_stats` (or pytorch-fid's ``mu``/``sigma`` .npz).

    Raises NCSNError naming the file when it is missing, unreadable or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise NCSNError(f"reference statistics file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise NCSNError(
            f"{path} is not a readable reference statistics file (.npz written by save_stats): "
            f"{error}"
        ) from error
    missing = [key for key in _REQUIRED_KEYS if key not in arrays]
    if missing:
        raise NCSNError(
            f"reference statistics file {path} lacks the array '{missing[0]}' "
            "(expected keys mu, sigma; optional features, extractor, fingerprint)"
        )
    mu, sigma = arrays["mu"], arrays["sigma"]
    d = mu.shape[0] if mu.ndim == 1 else -1
    if d < 1 or sigma.shape != (d, d):
        raise NCSNError(
            f"reference statistics file {path} has mu of shape {mu.shape} and sigma of shape "
            f"{sigma.shape}; expected (D,) and (D, D)"
        )
    features = arrays.get("features")
    if features is not None and (features.ndim != 2 or features.shape[1] != d):
        raise NCSNError(
            f"reference statistics file {path} has features of shape {features.shape}; "
            f"expected (N, {d})"
        )
    return ReferenceStats(
        mu.astype(np.float64),
        sigma.astype(np.float64),
        features,
        str(arrays.get("extractor", "")),
        str(arrays.get("fingerprint", "")),
    )
