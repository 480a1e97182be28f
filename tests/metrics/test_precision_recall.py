"""Improved precision and recall with k-NN manifolds."""

import importlib

import numpy as np
import pytest
import torch

from ncsn.errors import NCSNError
from ncsn.metrics.precision_recall import (
    kth_neighbour_distances,
    nearest_distances,
    precision_recall,
)

pr_module = importlib.import_module("ncsn.metrics.precision_recall")

# Eight well-separated cluster centres in the plane.
_CENTRES = 20.0 * np.array([[i % 4, i // 4] for i in range(8)], dtype=float)


def _clusters(centres: np.ndarray, per_cluster: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    points = centres.repeat(per_cluster, axis=0)
    return torch.from_numpy(points + 0.3 * rng.standard_normal(points.shape)).float()


def test_kth_neighbour_distance_excludes_the_point_itself():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    torch.testing.assert_close(kth_neighbour_distances(x, 1), torch.tensor([1.0, 1.0, 2.0, 4.0]))
    torch.testing.assert_close(kth_neighbour_distances(x, 2), torch.tensor([3.0, 2.0, 3.0, 6.0]))


def test_nearest_distances_agree_with_cdist_across_chunks(monkeypatch):
    monkeypatch.setattr(pr_module, "_CHUNK_ELEMENTS", 64)
    q, r = torch.randn(37, 5, generator=torch.Generator().manual_seed(0)), torch.randn(23, 5)
    distances, index = nearest_distances(q, r)
    full = torch.cdist(q, r)
    torch.testing.assert_close(distances, full.min(dim=1).values, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(index, full.argmin(dim=1))


def test_identical_sets_have_precision_and_recall_one():
    real = _clusters(_CENTRES, 30, 0)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)


def test_disjoint_clusters_have_precision_and_recall_zero():
    real = _clusters(_CENTRES[:4], 30, 0)
    generated = _clusters(_CENTRES[4:], 30, 1)
    assert precision_recall(real, generated) == (0.0, 0.0)


def test_samples_covering_half_the_clusters_have_recall_one_half():
    real = _clusters(_CENTRES, 50, 0)
    generated = _clusters(_CENTRES[:4], 100, 1)
    precision, recall = precision_recall(real, generated, k=3)
    assert precision > 0.95
    assert recall == pytest.approx(0.5, abs=0.05)


def test_chunked_result_equals_single_chunk(monkeypatch):
    real, generated = _clusters(_CENTRES, 20, 0), _clusters(_CENTRES[:5], 30, 1)
    expected = precision_recall(real, generated)
    monkeypatch.setattr(pr_module, "_CHUNK_ELEMENTS", 100)
    assert precision_recall(real, generated) == expected


def test_k_not_smaller_than_the_set_size_is_refused():
    with pytest.raises(NCSNError, match="k must be"):
        kth_neighbour_distances(torch.zeros(3, 2), 3)
