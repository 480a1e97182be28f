"""Memorization report: flag samples much closer to a training image than held-out data is."""

import numpy as np
import pytest
import torch

from ncsn.errors import NCSNError
from ncsn.metrics.memorization import memorization_report


def _images(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=generator)


def test_planted_copies_of_training_images_are_flagged():
    g = torch.Generator().manual_seed(0)
    train, held_out, samples = _images(300, g), _images(200, g), _images(100, g)
    planted = torch.tensor([3, 40, 77])
    copied_from = torch.tensor([10, 20, 30])
    samples[planted] = train[copied_from] + 0.001 * torch.randn(3, 1, 8, 8, generator=g)
    report = memorization_report(samples, train, held_out, quantile=0.01)
    assert set(planted.tolist()) <= set(report.flagged.tolist())
    np.testing.assert_array_equal(report.nearest_train[planted.numpy()], copied_from.numpy())
    assert set(report.summary()["flagged"][:3]) == {3, 40, 77}


def test_a_model_that_does_not_copy_has_about_quantile_flagged():
    g = torch.Generator().manual_seed(3)
    train, held_out, samples = _images(300, g), _images(1000, g), _images(1000, g)
    report = memorization_report(samples, train, held_out, quantile=0.05)
    assert report.fraction_flagged == pytest.approx(0.05, abs=0.025)


def test_threshold_is_the_held_out_quantile():
    g = torch.Generator().manual_seed(1)
    train, held_out, samples = _images(100, g), _images(101, g), _images(10, g)
    report = memorization_report(samples, train, held_out, quantile=0.1)
    assert report.threshold == pytest.approx(np.quantile(report.held_out_distances, 0.1))
    assert len(report.distances) == 10


def test_summary_lists_flagged_samples_closest_first():
    g = torch.Generator().manual_seed(2)
    train, held_out, samples = _images(100, g), _images(100, g), _images(20, g)
    samples[5] = train[0] + 0.01
    samples[9] = train[1]
    summary = memorization_report(samples, train, held_out).summary()
    assert summary["flagged"] == [9, 5]
    assert summary["nearest_train_of_flagged"] == [1, 0]
    assert summary["num_flagged"] == 2


def test_quantile_outside_the_unit_interval_is_refused():
    x = torch.zeros(4, 3)
    with pytest.raises(NCSNError, match="quantile"):
        memorization_report(x, x, x, quantile=1.5)
