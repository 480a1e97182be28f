"""evaluate(): every metric in one call, with a named extractor and a reference stats cache."""

import pytest
import torch

from ncsn.errors import NCSNError
from ncsn.metrics.classifier import Classifier
from ncsn.metrics.evaluate import FeatureExtractor, evaluate, fingerprint, load_extractor


def _flatten_extractor(name: str = "flatten") -> FeatureExtractor:
    return FeatureExtractor(name, lambda x: x.flatten(1), batch_size=7)


def _images(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.2 * torch.rand(n, 1, 3, 3, generator=g) + shift).clamp(0, 1)


def test_extractor_batches_give_the_same_features_as_one_pass():
    x = _images(20, 0)
    torch.testing.assert_close(_flatten_extractor()(x), x.flatten(1))


def test_same_distribution_scores_well_and_shifted_scores_badly():
    reference = _images(200, 0)
    kwargs = {"extractor": _flatten_extractor(), "kid_subsets": 5, "kid_subset_size": 100}
    good = evaluate(_images(200, 1), reference, **kwargs)
    bad = evaluate(_images(200, 2, shift=0.5), reference, **kwargs)
    assert good["extractor"] == "flatten"
    assert good["fd"] < 0.05 < bad["fd"]
    assert bad["kid_mean"] > good["kid_mean"]
    assert good["precision"] > 0.8 and good["recall"] > 0.8
    assert bad["precision"] == 0.0 and bad["recall"] == 0.0


def test_classifier_and_memorization_results_are_included():
    reference, train = _images(60, 0), _images(100, 1)
    samples = _images(40, 2)
    samples[:2] = train[:2]
    g = torch.Generator().manual_seed(0)
    classifier = Classifier(num_classes=3, width=2, hidden=4)
    with torch.no_grad():
        for p in classifier.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    result = evaluate(
        samples,
        reference,
        extractor=_flatten_extractor(),
        classifier=classifier,
        train_images=train,
        kid_subsets=2,
        kid_subset_size=30,
    )
    assert 1.0 <= result["classifier_score"] <= 3.0
    assert sum(result["class_histogram"]) == 40
    assert 0.0 <= result["class_coverage"] <= 1.0
    assert result["memorization"]["flagged"][:2] == [0, 1]


def test_stats_cache_is_written_then_reused_without_the_reference(tmp_path):
    reference, samples = _images(50, 0), _images(50, 1)
    cache = tmp_path / "ref.npz"
    kwargs = {"extractor": _flatten_extractor(), "kid_subsets": 2, "kid_subset_size": 20}
    first = evaluate(samples, reference, stats_cache=cache, **kwargs)
    assert cache.is_file()
    assert evaluate(samples, None, stats_cache=cache, **kwargs) == first


def test_cache_from_another_extractor_is_refused(tmp_path):
    cache = tmp_path / "ref.npz"
    evaluate(
        _images(20, 1),
        _images(20, 0),
        extractor=_flatten_extractor("a"),
        stats_cache=cache,
        kid_subsets=1,
    )
    with pytest.raises(NCSNError, match="ref.npz.*'a'"):
        evaluate(
            _images(20, 1),
            None,
            extractor=_flatten_extractor("b"),
            stats_cache=cache,
            kid_subsets=1,
        )


def test_cache_from_other_reference_images_is_refused(tmp_path):
    cache = tmp_path / "ref.npz"
    kwargs = {"extractor": _flatten_extractor(), "stats_cache": cache, "kid_subsets": 1}
    evaluate(_images(20, 1), _images(20, 0), **kwargs)
    with pytest.raises(NCSNError, match="other reference images"):
        evaluate(_images(20, 1), _images(20, 5), **kwargs)


def test_fingerprint_depends_on_values_and_shape():
    x = _images(4, 0)
    assert fingerprint(x) == fingerprint(x.clone())
    assert fingerprint(x) != fingerprint(x.reshape(4, 1, 9, 1))
    assert fingerprint(x) != fingerprint(x + 1e-3)


def test_unknown_extractor_spec_is_refused():
    with pytest.raises(NCSNError, match="'vgg:x'"):
        load_extractor("vgg:x")
