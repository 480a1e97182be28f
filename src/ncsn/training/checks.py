"""What the data set must satisfy before training starts: the batch fits it, and a class-
conditional config (``model.num_classes`` > 0) finds labels it can use."""

from __future__ import annotations

import torch

from ncsn.data.dataset import Dataset
from ncsn.errors import NCSNError


def check_data(cfg, data: Dataset, processes: int) -> None:
    """An NCSNError naming the config field when ``data`` cannot be trained on as configured."""
    t = cfg.train
    if t.batch_size > len(data):
        raise NCSNError(
            f"train.batch_size = {t.batch_size}: larger than the data set ({len(data)} examples)"
        )
    if t.batch_size % (processes * t.grad_accum):
        raise NCSNError(
            f"train.batch_size = {t.batch_size}: expected a multiple of the number of processes "
            f"({processes}) × train.grad_accum ({t.grad_accum})"
        )
    if cfg.model.num_classes:
        check_labels(data, cfg.model.num_classes)


def check_labels(data: Dataset, num_classes: int) -> None:
    """Refuse, before training, a conditional config on data without usable labels."""
    if data.labels is None:
        raise NCSNError(
            f"model.num_classes = {num_classes}: the data set {data.name!r} has no labels "
            "(an image folder needs one sub-folder per class; an .npz a 'labels' array)"
        )
    found = torch.unique(data.labels)
    if len(found) < 2:
        raise NCSNError(
            f"model.num_classes = {num_classes}: the data set {data.name!r} holds a single class "
            f"({data.class_names()[int(found[0])] if len(found) else 'none'}): a class-"
            "conditional model needs at least two"
        )
    if int(data.labels.min()) < 0 or int(data.labels.max()) >= num_classes:
        raise NCSNError(
            f"model.num_classes = {num_classes}: the data set {data.name!r} has labels from "
            f"{int(data.labels.min())} to {int(data.labels.max())}; expected 0 to "
            f"{num_classes - 1} (set model.num_classes = {int(data.labels.max()) + 1})"
        )
