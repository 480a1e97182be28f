"""Sample-quality metrics: distances between sample sets, Fréchet distance, KID, precision/recall,
classifier score and coverage, memorization, and the feature extractors behind them."""

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
from ncsn.metrics.distances import (
    NoiseFloor,
    energy_distance,
    mmd,
    noise_floor,
    sliced_wasserstein,
)
from ncsn.metrics.evaluate import (
    FeatureExtractor,
    classifier_extractor,
    evaluate,
    fingerprint,
    inception_extractor,
    load_extractor,
)
from ncsn.metrics.fid import ReferenceStats, feature_stats, frechet_distance, load_stats, save_stats
from ncsn.metrics.inception import FIDInceptionV3, load_inception
from ncsn.metrics.kid import kid, mmd2_unbiased
from ncsn.metrics.memorization import MemorizationReport, memorization_report
from ncsn.metrics.precision_recall import (
    kth_neighbour_distances,
    nearest_distances,
    precision_recall,
)

__all__ = [
    "Classifier",
    "FIDInceptionV3",
    "FeatureExtractor",
    "MemorizationReport",
    "NoiseFloor",
    "ReferenceStats",
    "accuracy",
    "class_coverage",
    "classifier_extractor",
    "classifier_score",
    "energy_distance",
    "evaluate",
    "feature_stats",
    "fingerprint",
    "frechet_distance",
    "inception_extractor",
    "kid",
    "kth_neighbour_distances",
    "load_classifier",
    "load_extractor",
    "load_inception",
    "load_stats",
    "memorization_report",
    "mmd",
    "mmd2_unbiased",
    "nearest_distances",
    "noise_floor",
    "precision_recall",
    "predict_proba",
    "save_classifier",
    "save_stats",
    "sliced_wasserstein",
    "train_classifier",
]
