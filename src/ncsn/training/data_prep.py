"""What training takes from the data set before it starts: the held-out examples, σ_data.

``train.holdout`` = N keeps the data set's last N examples out of training (the per-σ
diagnostics are measured on them); ``model.sigma_data = auto`` becomes the training examples'
pixel standard deviation (:func:`ncsn.noise_levels.data_std`), written into the resolved config
that the run directory and every checkpoint record.
"""

from __future__ import annotations

import dataclasses

from ncsn.data.dataset import Dataset
from ncsn.errors import NCSNError
from ncsn.noise_levels import data_std


def split(cfg, data: Dataset) -> tuple[Dataset, Dataset | None]:
    """(training examples, held-out examples or None)."""
    n = cfg.train.holdout
    if not n:
        return data, None
    if n >= len(data):
        raise NCSNError(
            f"train.holdout = {n}: the data set has only {len(data)} examples; expected fewer"
        )
    return data.subset(0, len(data) - n), data.subset(len(data) - n, len(data))


def resolve_sigma_data(cfg, data: Dataset):
    """``cfg`` with ``model.sigma_data = auto`` replaced by the measured value, and that value
    (the data's pixel standard deviation, measured whatever the config says)."""
    measured = data_std(data.x, data.as_float)
    if cfg.model.sigma_data != "auto":
        return cfg, measured
    if not measured > 0:
        raise NCSNError(
            "model.sigma_data = auto: the training data has standard deviation 0; set a "
            "positive number"
        )
    model = dataclasses.replace(cfg.model, sigma_data=round(measured, 6))
    return dataclasses.replace(cfg, model=model), measured
