"""One call that scores a set of samples against reference data with every metric we have.

The feature-space metrics (Fréchet distance, KID, precision/recall) are only comparable between
runs that used the same feature extractor, so the result names it: ``"inception:<weights>"`` for
the standard FID network, ``"classifier:<weights>"`` for a domain classifier.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ncsn.errors import NCSNError
from ncsn.metrics.classifier import (
    Classifier,
    class_coverage,
    classifier_score,
    load_classifier,
    predict_proba,
)
from ncsn.metrics.fid import (
    ReferenceStats,
    feature_stats,
    frechet_distance,
    frechet_terms,
    load_stats,
    save_stats,
)  # fmt: skip
from ncsn.metrics.inception import FIDInceptionV3, load_inception
from ncsn.metrics.kid import kid
from ncsn.metrics.memorization import memorization_report
from ncsn.metrics.precision_recall import precision_recall

__all__ = [
    "FeatureExtractor",
    "classifier_extractor",
    "evaluate",
    "fingerprint",
    "inception_extractor",
    "load_extractor",
]


@dataclass
class FeatureExtractor:
    """Maps images (N, C, H, W) in [0, 1] to features (N, D), batch by batch, without grad.

    ``name`` identifies the extractor and its weights in results and stats caches.
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    batch_size: int = 200

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            batches = [
                self.fn(images[i : i + self.batch_size]).float().cpu()
                for i in range(0, len(images), self.batch_size)
            ]
        return torch.cat(batches)


def classifier_extractor(
    model: Classifier, name: str, device: str | torch.device = "cpu"
) -> FeatureExtractor:
    """Penultimate-layer features of a domain classifier; ``name`` is e.g. its weights path.

    Moves ``model`` to ``device``; each batch is moved there and the features back to the CPU.
    """
    model.eval().to(device)
    return FeatureExtractor(
        f"classifier:{name}", lambda x: model.features(x.to(device)), batch_size=500
    )


def inception_extractor(
    model: FIDInceptionV3, name: str, device: str | torch.device = "cpu"
) -> FeatureExtractor:
    """2048-d pool3 features of the FID Inception network; ``name`` is e.g. its weights path.

    Moves ``model`` to ``device``; each batch is moved there and the features back to the CPU.
    """
    model.eval().to(device)
    return FeatureExtractor(f"inception:{name}", lambda x: model(x.to(device)), batch_size=50)


def load_extractor(
    spec: str, device: str | torch.device = "cpu"
) -> tuple[FeatureExtractor, Classifier | None]:
    """Build an extractor from ``"classifier:<path>"`` or ``"inception:<path>"``.

    Returns the classifier too when the spec names one, for the classifier-based scores.
    """
    kind, _, path = spec.partition(":")
    if kind == "classifier" and path:
        model = load_classifier(path)
        return classifier_extractor(model, path, device), model
    if kind == "inception" and path:
        return inception_extractor(load_inception(path), path, device), None
    raise NCSNError(
        f"feature extractor {spec!r} not understood; expected 'classifier:<weights file>' "
        "or 'inception:<weights file>'"
    )


def fingerprint(images: torch.Tensor) -> str:
    """A short hash of an image set (shape and float32 values), to key cached statistics."""
    x = images.detach().cpu().float().contiguous()
    digest = hashlib.sha256(str(tuple(x.shape)).encode())
    digest.update(x.numpy().tobytes())
    return digest.hexdigest()[:16]


def _reference_stats(
    reference: torch.Tensor | None,
    extractor: FeatureExtractor,
    stats_cache: str | os.PathLike | None,
) -> ReferenceStats:
    """Reference statistics from the cache when it matches, else computed (and cached)."""
    if stats_cache is not None and Path(stats_cache).is_file():
        stats = load_stats(stats_cache)
        if stats.extractor and stats.extractor != extractor.name:
            raise NCSNError(
                f"stats cache {stats_cache} was computed with extractor {stats.extractor!r}, "
                f"not {extractor.name!r}; delete it or pass another cache path"
            )
        if reference is not None and stats.fingerprint:
            if stats.fingerprint != fingerprint(reference):
                raise NCSNError(
                    f"stats cache {stats_cache} was computed from other reference images; "
                    "delete it or pass another cache path"
                )
        return stats
    if reference is None:
        raise NCSNError(
            f"no reference images given and no stats cache at {stats_cache}; pass reference images"
        )
    stats = ReferenceStats.from_features(
        extractor(reference), extractor=extractor.name, fingerprint=fingerprint(reference)
    )
    if stats_cache is not None:
        save_stats(stats_cache, stats)
    return stats


def evaluate(
    samples: torch.Tensor,
    reference: torch.Tensor | None,
    *,
    extractor: FeatureExtractor,
    train_images: torch.Tensor | None = None,
    classifier: Classifier | None = None,
    k: int = 3,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    memorization_quantile: float = 0.01,
    seed: int = 0,
    stats_cache: str | os.PathLike | None = None,
) -> dict:
    """Score ``samples`` against ``reference`` images (N, C, H, W) in [0, 1].

    Returns a JSON-ready dict: ``extractor``, ``fd`` (Fréchet distance), ``kid_mean``/``kid_std``,
    ``precision``/``recall`` (k-NN manifolds, ``k``), and with ``classifier`` the
    ``classifier_score``, ``class_coverage`` and ``class_histogram`` of its predictions on the
    samples. With ``train_images`` it adds ``memorization``: samples closer (in pixels) to a
    training image than the ``memorization_quantile`` of the reference images are flagged, so the
    reference must be held out from training (the test split).

    ``stats_cache`` is an .npz of reference features and statistics, written on first use and
    checked against the extractor name and a fingerprint of the reference images afterwards;
    with a cache, ``reference`` may be None (then memorization is unavailable). A cache holding
    only ``mu``/``sigma`` (e.g. from pytorch-fid) gives the Fréchet distance alone: KID and
    precision/recall are then None.
    """
    if len(samples) < 2:
        raise NCSNError(f"need at least 2 samples to evaluate, got {len(samples)}")
    stats = _reference_stats(reference, extractor, stats_cache)
    features = extractor(samples)
    mu, sigma = feature_stats(features)
    result: dict = {
        "extractor": extractor.name,
        "num_samples": len(samples),
        "num_reference": None if stats.features is None else len(stats.features),
        "fd": frechet_distance(mu, sigma, stats.mu, stats.sigma),
        "kid_mean": None,
        "kid_std": None,
        "precision": None,
        "recall": None,
    }
    if stats.features is not None:
        reference_features = torch.from_numpy(np.asarray(stats.features))
        result["kid_mean"], result["kid_std"] = kid(
            features,
            reference_features,
            subset_size=kid_subset_size,
            num_subsets=kid_subsets,
            seed=seed,
        )
        result["precision"], result["recall"] = precision_recall(reference_features, features, k=k)
    if classifier is not None:
        probs = predict_proba(classifier, samples)
        result["classifier_score"] = classifier_score(probs)
        result["class_coverage"], result["class_histogram"] = class_coverage(probs)
    if train_images is not None:
        if reference is None:
            raise NCSNError("the memorization check needs held-out reference images, got None")
        report = memorization_report(
            samples, train_images, reference, quantile=memorization_quantile
        )
        result["memorization"] = report.summary()
    return result


class HeldOutAndTraining:
    """The benchmarks' scores of a sample set against two references: the Fréchet distance to
    held-out images split into its mean and covariance terms (``frechet_terms``), the Fréchet
    distance to the training images (``fd_train``), and, with ``full``, precision/recall (k = 3),
    KID and class coverage against the held-out images (:func:`evaluate`, seed 0). The
    references' feature statistics are computed once."""

    def __init__(self, extractor: FeatureExtractor, classifier, held_out, training):
        self.extractor, self.classifier, self.held_out = extractor, classifier, held_out
        self.held_stats = feature_stats(extractor(held_out))
        self.train_stats = feature_stats(extractor(training))

    def __call__(self, images: torch.Tensor, full: bool = True) -> dict:
        mu, sigma = feature_stats(self.extractor(images))
        mean_term, cov_term = frechet_terms(mu, sigma, *self.held_stats)
        out = {"fd": mean_term + cov_term, "mean_term": mean_term, "cov_term": cov_term,
               "fd_train": frechet_distance(mu, sigma, *self.train_stats)}  # fmt: skip
        if full:
            r = evaluate(images, self.held_out, extractor=self.extractor,
                         classifier=self.classifier, seed=0)  # fmt: skip
            out |= {k: r[k] for k in ("precision", "recall", "class_coverage", "kid_mean")}
        return out
