"""Class-conditional sampling and classifier-free guidance as one more score model, so every
sampler (and inpaint, denoise, refine) takes it unchanged.

Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Eq. 6, in
score form): s_w(x, σ, y) = s(x, σ, ∅) + w · (s(x, σ, y) − s(x, σ, ∅)), ∅ the "no label" class
that label dropout trained. w = 1 is the plain conditional model, w = 0 the unconditional one;
w > 1 trades diversity for fidelity. The pair is evaluated as one batched network call on
[x, x] with labels [y, ∅], which costs two network evaluations per example: ``evaluations``
says so, and the sampling path multiplies the samplers' NFE by it (docs/conventions.md).
"""

from __future__ import annotations

import torch
from torch import nn

from ncsn.devices import model_device
from ncsn.errors import NCSNError
from ncsn.schedule import append_dims, sigma_batch


class Conditioned(nn.Module):
    """``model`` (class-conditional, ``num_classes`` = K) answering ``score(x, σ)`` and
    ``denoise(x, σ)`` for the fixed ``labels`` (N,) of the batch, with guidance weight
    ``guidance`` (None: 1, the conditional model)."""

    def __init__(self, model, labels: torch.Tensor, guidance: float | None = None):
        super().__init__()
        self.model = model
        self.labels = labels.to(model_device(model))  # once, not at every sampler step
        self.guidance = 1.0 if guidance is None else float(guidance)
        self.null = torch.full_like(self.labels, model.num_classes)
        self.pair = torch.cat([self.labels, self.null])  # the batched pair's labels, built once
        # w = 1 and w = 0 need one of the two scores only
        self.evaluations = 1 if self.guidance in (0.0, 1.0) else 2

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """s_w(x, σ, y) = s(x, σ, ∅) + w (s(x, σ, y) − s(x, σ, ∅)) (Ho & Salimans 2022, Eq. 6)."""
        if self.guidance == 1.0:
            return self.model.score(x, sigma, self.labels)
        if self.guidance == 0.0:
            return self.model.score(x, sigma, self.null)
        sigma = sigma_batch(sigma, x)
        both = self.model.score(torch.cat([x, x]), torch.cat([sigma, sigma]), self.pair)
        conditional, unconditional = both.chunk(2)
        return unconditional + self.guidance * (conditional - unconditional)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """D(x, σ) = x + σ² s_w(x, σ, y) (Tweedie's formula with the guided score)."""
        s = append_dims(sigma_batch(sigma, x), x.dim())
        return x + s * s * self.score(x, sigma)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        return self.score(x, sigma)


def class_labels(value: str | int | None, num_classes: int, n: int, flag: str = "--class"):
    """Labels (n,) for the request ``value`` of a model with ``num_classes`` classes: None (an
    unconditional model, or a conditional one asked for no class: its classes in turn,
    0, 1, …, K−1, 0, …), one class index, ``all`` (classes in turn) or a comma-separated list
    repeated. An NCSNError naming ``flag`` for an index out of range or an unconditional model."""
    if value is None:
        return None if not num_classes else torch.arange(n) % num_classes
    if not num_classes:
        raise NCSNError(f"{flag} {value}: the run is not class-conditional (model.num_classes = 0)")
    if str(value) == "all":
        return torch.arange(n) % num_classes
    try:
        wanted = [int(v) for v in str(value).split(",")]
    except ValueError:
        raise NCSNError(
            f"{flag} {value}: expected a class index, a comma-separated list or 'all'"
        ) from None
    for k in wanted:
        if not 0 <= k < num_classes:
            raise NCSNError(f"{flag} {k}: expected a class index from 0 to {num_classes - 1}")
    return torch.tensor(wanted)[torch.arange(n) % len(wanted)]


def conditioned(model, labels: torch.Tensor | None, guidance: float | None):
    """``model`` itself (unconditional, no labels) or :class:`Conditioned` for ``labels``."""
    if labels is None:
        if guidance is not None:
            raise NCSNError(
                f"--guidance {guidance}: the run is not class-conditional (model.num_classes = 0)"
            )
        return model
    return Conditioned(model, labels, guidance)
