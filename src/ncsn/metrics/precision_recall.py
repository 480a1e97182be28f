"""Improved precision and recall with k-NN manifolds (Kynkäänniemi et al. 2019, §2, Eqs. 1–2).

Each set of feature vectors Φ approximates its manifold by the union of balls around its points,
the radius of the ball at φ being the distance to its k-th nearest neighbour within Φ:

    f(φ, Φ) = 1 if ‖φ − φ'‖ ≤ ‖φ' − NN_k(φ', Φ)‖ for at least one φ' ∈ Φ, else 0,
    precision(Φ_r, Φ_g) = (1/|Φ_g|) Σ_{φ_g} f(φ_g, Φ_r),
    recall(Φ_r, Φ_g)    = (1/|Φ_r|) Σ_{φ_r} f(φ_r, Φ_g).

Precision is the fraction of generated samples that fall on the real manifold (fidelity); recall
the fraction of real samples that fall on the generated manifold (diversity). Pairwise distances
are computed in chunks of rows, so memory stays bounded for tens of thousands of samples.
"""

from __future__ import annotations

import numpy as np
import torch

from ncsn.errors import NCSNError

__all__ = ["kth_neighbour_distances", "nearest_distances", "precision_recall"]

_CHUNK_ELEMENTS = 1 << 24


def _as_float32(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(x).detach().cpu().float()
    return x.reshape(x.shape[0], -1)


def _chunk_rows(num_columns: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(num_columns, 1))


def _squared_distances(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² via ‖a‖² + ‖b‖² − 2aᵀb (one matrix product), clipped at 0 for round-off."""
    a_sq = (a * a).sum(dim=1, keepdim=True)
    return (a_sq + b_sq[None, :] - 2.0 * a @ b.T).clamp_min_(0.0)


def kth_neighbour_distances(x: torch.Tensor | np.ndarray, k: int) -> torch.Tensor:
    """Distance from each row of ``x`` (N, D) to its k-th nearest other row, shape (N,)."""
    x = _as_float32(x)
    if not 1 <= k < x.shape[0]:
        raise NCSNError(f"k must be between 1 and N - 1 = {x.shape[0] - 1}, got k={k}")
    x_sq = (x * x).sum(dim=1)
    radii = torch.empty(x.shape[0])
    step = _chunk_rows(x.shape[0])
    for start in range(0, x.shape[0], step):
        d2 = _squared_distances(x[start : start + step], x, x_sq)
        # Each point is its own nearest neighbour at distance 0, hence k + 1.
        radii[start : start + step] = d2.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii.sqrt()


def nearest_distances(
    queries: torch.Tensor | np.ndarray, references: torch.Tensor | np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance from each query (N, …) to its nearest reference (M, …), and that reference's index.

    Inputs are flattened to vectors, so images and feature vectors are both accepted.
    """
    q, r = _as_float32(queries), _as_float32(references)
    if q.shape[1] != r.shape[1]:
        raise NCSNError(f"queries have dimension {q.shape[1]} but references {r.shape[1]}")
    r_sq = (r * r).sum(dim=1)
    distances = torch.empty(q.shape[0])
    indices = torch.empty(q.shape[0], dtype=torch.long)
    step = _chunk_rows(r.shape[0])
    for start in range(0, q.shape[0], step):
        d2, index = _squared_distances(q[start : start + step], r, r_sq).min(dim=1)
        distances[start : start + step] = d2
        indices[start : start + step] = index
    return distances.sqrt(), indices


def _inside_any_ball(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of queries within radius of at least one centre (the mean of f in Eq. 1)."""
    centres_sq = (centres * centres).sum(dim=1)
    radii_sq = radii.square()
    inside = 0
    step = _chunk_rows(centres.shape[0])
    for start in range(0, queries.shape[0], step):
        d2 = _squared_distances(queries[start : start + step], centres, centres_sq)
        inside += int((d2 <= radii_sq[None, :]).any(dim=1).sum())
    return inside / queries.shape[0]


def precision_recall(
    real: torch.Tensor | np.ndarray, generated: torch.Tensor | np.ndarray, *, k: int = 3
) -> tuple[float, float]:
    """Improved precision and recall of ``generated`` against ``real`` features (Eqs. 1–2).

    ``k`` is the neighbourhood size of the k-NN manifold estimate (the paper uses k = 3).
    """
    phi_r, phi_g = _as_float32(real), _as_float32(generated)
    if phi_r.shape[1] != phi_g.shape[1]:
        raise NCSNError(
            f"real features have dimension {phi_r.shape[1]} but generated {phi_g.shape[1]}"
        )
    precision = _inside_any_ball(phi_g, phi_r, kth_neighbour_distances(phi_r, k))
    recall = _inside_any_ball(phi_r, phi_g, kth_neighbour_distances(phi_g, k))
    return precision, recall
