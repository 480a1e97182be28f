"""Label dropout for classifier-free guidance (``train.label_dropout``)."""

from __future__ import annotations

import torch


def drop_labels(
    labels: torch.Tensor, p: float, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """Each label replaced by ``num_classes`` ("no label") with probability ``p``, one uniform
    draw per example from ``generator`` (classifier-free guidance's joint training, Ho & Salimans
    2022, Alg. 1). ``p`` = 0 draws nothing (the data stream of a plain conditional run)."""
    if p == 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator, device=generator.device) < p
    return torch.where(drop.to(labels.device), torch.full_like(labels, num_classes), labels)
