"""Fréchet distance and the reference statistics cache."""

import numpy as np
import pytest
import torch

from ncsn.errors import NCSNError
from ncsn.metrics.fid import (
    ReferenceStats,
    feature_stats,
    frechet_distance,
    frechet_terms,
    load_stats,
    save_stats,
)


def _gaussian(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def test_feature_stats_are_float64_mean_and_unbiased_covariance():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, sigma = feature_stats(x)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, [2.0, 4.0])
    np.testing.assert_allclose(sigma, np.cov(x.numpy().T))


def test_distance_of_a_set_to_itself_is_zero():
    mu, sigma = feature_stats(_gaussian(500, 16, 0))
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_matches_closed_form_for_identity_versus_scaled_identity():
    d, scale = 8, 3.0
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    s1, s2 = np.eye(d), scale**2 * np.eye(d)
    # ‖Δμ‖² + tr(S1 + S2 − 2 (S1 S2)^½) with (S1 S2)^½ = scale·I.
    expected = d * 0.25 + d * (1 + scale**2 - 2 * scale)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-12)


def test_matches_sqrtm_for_non_commuting_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    a, b = _gaussian(6, 6, 1), _gaussian(6, 6, 2)
    s1, s2 = a @ a.T + np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = _gaussian(1, 6, 3)[0], _gaussian(1, 6, 4)[0]
    root = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_singular_covariances_give_the_exact_finite_value():
    # Rank-1 covariances: tr(S1 + S2 − 2 (S1 S2)^½) = 1 + 4 − 2·2 = 1.
    s1, s2 = np.diag([1.0, 0.0, 0.0]), np.diag([4.0, 0.0, 0.0])
    assert frechet_distance(np.zeros(3), s1, np.zeros(3), s2) == pytest.approx(1.0, rel=1e-12)


def test_fewer_samples_than_dimensions_is_finite_and_non_negative():
    mu1, s1 = feature_stats(_gaussian(20, 64, 5))
    mu2, s2 = feature_stats(_gaussian(20, 64, 6) + 1.0)
    value = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(value) and value > 64 * 0.5


def test_stats_cache_roundtrip(tmp_path):
    features = _gaussian(50, 4, 7)
    stats = ReferenceStats.from_features(features, extractor="classifier:c.st", fingerprint="ab")
    save_stats(tmp_path / "ref.npz", stats)
    loaded = load_stats(tmp_path / "ref.npz")
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    np.testing.assert_array_equal(loaded.features, features.astype(np.float32))
    assert (loaded.extractor, loaded.fingerprint) == ("classifier:c.st", "ab")


def test_pytorch_fid_style_mu_sigma_file_loads(tmp_path):
    np.savez(tmp_path / "fid_stats.npz", mu=np.zeros(3), sigma=np.eye(3))
    loaded = load_stats(tmp_path / "fid_stats.npz")
    assert loaded.features is None and loaded.extractor == ""


def test_corrupted_cache_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "ref.npz"
    save_stats(path, ReferenceStats.from_features(_gaussian(50, 4, 8)))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(NCSNError, match="ref.npz"):
        load_stats(path)


def test_cache_without_sigma_is_refused_naming_the_key(tmp_path):
    np.savez(tmp_path / "bad.npz", mu=np.zeros(3))
    with pytest.raises(NCSNError, match="bad.npz.*'sigma'"):
        load_stats(tmp_path / "bad.npz")


def test_missing_cache_file_is_refused_naming_it(tmp_path):
    with pytest.raises(NCSNError, match="nothing.npz"):
        load_stats(tmp_path / "nothing.npz")


def test_frechet_terms_are_the_mean_and_covariance_parts_of_the_distance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 6)), rng.normal(size=(400, 6)) * 1.5 + 0.3
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    mean_term, cov_term = frechet_terms(mu1, s1, mu2, s2)
    assert mean_term == pytest.approx(float(((mu1 - mu2) ** 2).sum()), rel=1e-12)
    assert mean_term + cov_term == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-12)
    assert frechet_terms(mu1, s1, mu1, s1) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert cov_term > 0.5  # the spreads differ (1.5² per dimension)
