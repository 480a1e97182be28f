"""Domain classifier: training, safetensors save/load, classifier score and class coverage."""

import json

import pytest
import torch
from safetensors.torch import save_file

from ncsn import checkpoint
from ncsn.errors import NCSNError
from ncsn.metrics.classifier import (
    Classifier,
    accuracy,
    class_coverage,
    classifier_score,
    load_classifier,
    predict_proba,
    save_classifier,
    train_classifier,
)


def _bars(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: bright top half, class 1: bright bottom half, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(2, (n,), generator=g)
    images = 0.3 * torch.rand(n, 1, size, size, generator=g)
    half = size // 2
    images[labels == 0, :, :half] += 0.6
    images[labels == 1, :, half:] += 0.6
    return images, labels


@pytest.fixture(scope="module")
def trained() -> Classifier:
    images, labels = _bars(256, 12, seed=0)
    eval_images, eval_labels = _bars(128, 12, seed=1)
    return train_classifier(
        images,
        labels,
        steps=40,
        batch_size=32,
        width=8,
        hidden=16,
        seed=0,
        eval_images=eval_images,
        eval_labels=eval_labels,
    )


def test_features_and_logits_have_the_configured_sizes_for_any_image_size():
    model = Classifier(in_channels=3, num_classes=5, width=4, hidden=12)
    for size in (8, 13, 32):
        x = torch.rand(2, 3, size, size)
        assert model.features(x).shape == (2, 12)
        assert model.logits(x).shape == (2, 5)


def test_training_on_a_separable_set_reaches_high_held_out_accuracy(trained):
    assert trained.info["eval_accuracy"] > 0.95
    assert trained.info["steps"] == 40


def test_training_is_reproducible_for_a_seed():
    images, labels = _bars(64, 8, seed=2)
    a = train_classifier(images, labels, steps=3, batch_size=8, width=4, hidden=8, seed=5)
    b = train_classifier(images, labels, steps=3, batch_size=8, width=4, hidden=8, seed=5)
    x = images[:4]
    torch.testing.assert_close(a.logits(x), b.logits(x), rtol=0, atol=0)


def test_save_load_roundtrip_gives_identical_logits_and_metadata(trained, tmp_path):
    path = tmp_path / "new_folder" / "clf.safetensors"
    save_classifier(trained, path)
    loaded = load_classifier(path)
    x, labels = _bars(16, 12, seed=3)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.logits(x), trained.logits(x), rtol=0, atol=0)
    assert loaded.config == trained.config
    assert loaded.info == json.loads(json.dumps(trained.info))
    assert accuracy(loaded, x, labels) == accuracy(trained, x, labels)


def test_missing_weights_file_is_refused_naming_it(tmp_path):
    with pytest.raises(NCSNError, match="absent.safetensors"):
        load_classifier(tmp_path / "absent.safetensors")


def test_file_that_is_not_safetensors_is_refused(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"definitely not a safetensors header")
    with pytest.raises(NCSNError, match="junk.safetensors"):
        load_classifier(path)


def test_plain_safetensors_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(NCSNError, match="other.safetensors"):
        load_classifier(path)


def test_checkpoint_of_something_else_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    checkpoint.save(path, {"w": torch.zeros(2)}, {"step": 3})
    with pytest.raises(NCSNError, match="model.safetensors.*not a classifier"):
        load_classifier(path)


def test_weights_with_a_wrong_shape_are_refused_naming_the_key(trained, tmp_path):
    bad = Classifier(**{**trained.config, "hidden": 17})
    bad.config = trained.config
    save_classifier(bad, tmp_path / "bad.safetensors")
    with pytest.raises(NCSNError, match="bad.safetensors.*'hidden.weight'.*shape"):
        load_classifier(tmp_path / "bad.safetensors")


def test_score_is_the_number_of_classes_for_confident_uniform_predictions():
    probs = torch.eye(10).repeat(5, 1)
    assert classifier_score(probs) == pytest.approx(10.0)


def test_score_is_one_for_a_constant_classifier():
    probs = torch.softmax(torch.tensor([2.0, 0.5, -1.0]), dim=0).repeat(30, 1)
    assert classifier_score(probs) == pytest.approx(1.0)


def test_score_with_splits_averages_the_splits():
    probs = torch.cat([torch.eye(4).repeat(2, 1), torch.eye(4)[:1].repeat(8, 1)])
    assert classifier_score(probs, splits=2) == pytest.approx((4.0 + 1.0) / 2)


def test_coverage_counts_classes_predicted_for_enough_samples():
    predicted = torch.tensor([0] * 50 + [1] * 45 + [2] * 5)
    probs = torch.nn.functional.one_hot(predicted, 4).float()
    coverage, histogram = class_coverage(probs, min_share=0.1)
    assert histogram == [50, 45, 5, 0]
    assert coverage == pytest.approx(0.5)


def test_probabilities_sum_to_one(trained):
    probs = predict_proba(trained, torch.rand(7, 1, 12, 12))
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(7))
