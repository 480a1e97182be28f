"""A small CNN classifier for domain-specific metrics, and scores computed from its predictions.

The Inception network was trained on ImageNet photographs; on 28×28 digits its features say
little. A classifier trained on the data set itself gives features (its penultimate layer) for a
domain-specific Fréchet distance and class probabilities for an Inception-Score-style score and
class coverage. Numbers computed with it are only comparable when the same weights file is used.

Weights are stored with :mod:`ncsn.checkpoint` (one safetensors file whose header holds the
architecture arguments and training information as JSON, with a checksum), so a file describes
itself and loads without pickle.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import ncsn.checkpoint as checkpoint
from ncsn.errors import NCSNError

__all__ = [
    "Classifier",
    "accuracy",
    "check_state_dict",
    "class_coverage",
    "classifier_score",
    "load_classifier",
    "predict_proba",
    "save_classifier",
    "train_classifier",
]

_KIND = "ncsn.classifier"


class Classifier(nn.Module):
    """Two conv blocks and an MLP head for (N, C, H, W) images in [0, 1] with H, W ≥ 8.

    Block 1: two 3×3 convs at ``width`` channels, 2×2 max-pool. Block 2: two 3×3 convs at
    2·``width`` channels, adaptive average pooling to 4×4 (so any image size works). Head:
    ``hidden`` units (the features), then ``num_classes`` logits. Inputs are mapped to [−1, 1].
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, width: int = 16, hidden: int = 128
    ) -> None:
        super().__init__()
        self.config = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "width": width,
            "hidden": hidden,
        }
        self.info: dict = {}
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.hidden = nn.Linear(2 * width * 16, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations (N, hidden), used for the Fréchet distance."""
        h = self.conv(2.0 * x - 1.0)
        return F.relu(self.hidden(h.flatten(1)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised class scores (N, num_classes)."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


def _init_weights(model: nn.Module, generator: torch.Generator) -> None:
    """He initialisation drawn from ``generator``, zero biases."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(module.weight, nonlinearity="relu", generator=generator)
            nn.init.zeros_(module.bias)


def _batched(model: Classifier, images: torch.Tensor, fn, batch_size: int) -> torch.Tensor:
    """``fn`` over batches on the model's device, without grad; results on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        return torch.cat(
            [
                fn(images[i : i + batch_size].to(device)).cpu()
                for i in range(0, len(images), batch_size)
            ]
        )


def predict_proba(model: Classifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Class probabilities p(y | x), shape (N, num_classes), computed in batches without grad."""
    return _batched(model, images, lambda x: model.logits(x).softmax(dim=1), batch_size)


def accuracy(
    model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500
) -> float:
    """Fraction of ``images`` whose arg-max prediction equals ``labels``."""
    predicted = _batched(model, images, lambda x: model.logits(x).argmax(dim=1), batch_size)
    return float((predicted == labels.to(predicted.device)).float().mean())


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    num_classes: int | None = None,
    width: int = 16,
    hidden: int = 128,
    eval_images: torch.Tensor | None = None,
    eval_labels: torch.Tensor | None = None,
) -> Classifier:
    """Train a :class:`Classifier` with Adam and cross-entropy on minibatches drawn with
    replacement from a generator seeded with ``seed``; records timing and accuracy in ``.info``.

    Accuracy is measured on ``eval_images``/``eval_labels`` when given (use held-out data).
    """
    if images.dim() != 4 or min(images.shape[2:]) < 8:
        raise NCSNError(
            f"classifier images must be (N, C, H, W) with H, W >= 8, got {images.shape}"
        )
    if labels.shape != (images.shape[0],):
        raise NCSNError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    labels = labels.long()
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    generator = torch.Generator().manual_seed(seed)
    model = Classifier(images.shape[1], num_classes, width, hidden)
    _init_weights(model, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # Cosine decay to zero: the last steps average out minibatch noise.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / steps))
    )
    start = time.perf_counter()
    model.train()
    for _ in range(steps):
        index = torch.randint(len(images), (batch_size,), generator=generator)
        loss = F.cross_entropy(model.logits(images[index].float()), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.info = {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "train_examples": len(images),
        "train_seconds": round(time.perf_counter() - start, 2),
        "final_loss": float(loss.detach()),
    }
    if eval_images is not None and eval_labels is not None:
        model.info["eval_examples"] = len(eval_images)
        model.info["eval_accuracy"] = accuracy(model, eval_images, eval_labels)
    model.eval()
    return model


def check_state_dict(
    state: dict[str, torch.Tensor], model: nn.Module, source: str | os.PathLike
) -> None:
    """Raise NCSNError naming ``source`` and the first missing key, unexpected key or shape
    mismatch between ``state`` and ``model.state_dict()``."""
    expected = model.state_dict()
    for key in expected:
        if key not in state:
            raise NCSNError(f"{source}: missing weight '{key}' ({len(expected)} expected)")
    for key in state:
        if key not in expected:
            raise NCSNError(f"{source}: unexpected weight '{key}' (not in the architecture)")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise NCSNError(
                f"{source}: weight '{key}' has shape {tuple(state[key].shape)}, "
                f"expected {tuple(tensor.shape)}"
            )


def save_classifier(model: Classifier, path: str | os.PathLike) -> None:
    """Write weights and JSON metadata (config, training info) as one ncsn checkpoint file."""
    meta = {"kind": _KIND, "config": model.config, "info": model.info}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(path, model.state_dict(), meta)


def load_classifier(path: str | os.PathLike) -> Classifier:
    """Read a classifier written by :func:`save_classifier` (safetensors + JSON, no pickle)."""
    state, meta = checkpoint.load(path)
    if meta.get("kind") != _KIND:
        raise NCSNError(
            f"{path} is an ncsn checkpoint but not a classifier "
            f"(metadata 'kind' is {meta.get('kind')!r}, expected {_KIND!r})"
        )
    try:
        model = Classifier(**meta["config"])
    except (KeyError, TypeError) as error:
        raise NCSNError(f"{path}: unreadable classifier config in metadata: {error}") from error
    check_state_dict(state, model, path)
    model.load_state_dict(state)
    model.info = meta.get("info", {})
    return model.eval()


def classifier_score(probs: torch.Tensor | np.ndarray, *, splits: int = 1) -> float:
    """exp(E_x KL(p(y|x) ‖ p(y))), the Inception Score's form (Salimans et al. 2016, §4).

    p(y) is the mean of p(y|x) over the samples. Ranges from 1 (every sample gets the same
    prediction) to the number of classes (confident predictions, all classes equally often).
    With ``splits`` > 1 the score is averaged over that many disjoint splits, as in the paper.
    """
    p = torch.as_tensor(probs, dtype=torch.float64)
    if p.dim() != 2 or len(p) < splits:
        raise NCSNError(f"probabilities must be (N, classes) with N >= splits, got {p.shape}")
    scores = []
    for part in p.chunk(splits):
        marginal = part.mean(dim=0, keepdim=True)
        kl = torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)
        scores.append(math.exp(float(kl.sum(dim=1).mean())))
    return float(np.mean(scores))


def class_coverage(
    probs: torch.Tensor | np.ndarray, *, min_share: float | None = None
) -> tuple[float, list[int]]:
    """Fraction of classes that are the arg-max prediction for at least ``min_share`` of the
    samples, and the histogram of predicted classes.

    The default ``min_share`` is a tenth of the uniform share, 0.1 / num_classes: a class the
    model produces ten times less often than the data would is counted as dropped (mode collapse).
    """
    p = torch.as_tensor(probs)
    num_classes = p.shape[1]
    min_share = 0.1 / num_classes if min_share is None else min_share
    histogram = torch.bincount(p.argmax(dim=1), minlength=num_classes)
    covered = (histogram.double() / len(p) >= min_share).double().mean()
    return float(covered), [int(count) for count in histogram]
