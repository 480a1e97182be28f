"""The in-memory data set every loader returns, and batch preparation (dequantization, flips)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Dataset:
    """Training examples held in memory.

    ``x`` is either uint8 images (N, C, H, W) with 256 levels, float32 images in [0, 1]
    (N, C, H, W), or float32 vectors (N, D) in their own units (toy data is not rescaled).
    ``levels`` is the number of discrete intensity levels of the source (256 for 8-bit images,
    17 for scikit-learn's digits) or ``None`` for continuous data.
    """

    x: torch.Tensor
    name: str
    levels: int | None = None
    labels: torch.Tensor | None = None
    classes: list[str] | None = None  # class names by label (folders: the sub-folder names)

    def class_names(self) -> list[str]:
        """The name of each class by label: ``classes``, else the labels as text."""
        if self.classes is not None:
            return list(self.classes)
        return [] if self.labels is None else [str(i) for i in range(int(self.labels.max()) + 1)]

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example: (C, H, W) or (D,)."""
        return tuple(self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x.dim() == 4

    def subset(self, start: int, stop: int) -> Dataset:
        """Examples ``start`` to ``stop`` (Python slice semantics), labels kept aligned."""
        labels = None if self.labels is None else self.labels[start:stop]
        return Dataset(self.x[start:stop], self.name, self.levels, labels, self.classes)

    def as_float(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Examples as float32 in [0, 1] (all of them when ``x`` is None)."""
        x = self.x if x is None else x
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    def batch(
        self,
        index: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        dequantize: bool = False,
        hflip: bool = False,
    ) -> torch.Tensor:
        """A float32 batch in [0, 1] of the examples at ``index``.

        Uniform dequantization (Theis et al. 2016): an example with integer level k of K levels
        becomes (k + u) / K, u ~ U[0, 1). Horizontal flips apply to each image with probability 1/2.
        """
        x = self.as_float(self.x[index])
        if dequantize and self.levels is not None:
            k = torch.round(x * (self.levels - 1))
            u = torch.rand(x.shape, generator=generator, device=x.device)
            x = (k + u) / self.levels
        if hflip and self.is_image:
            flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x
