"""How training draws σ, and the weight λ(σ) of each example's loss.

Distributions (``train.sigma_distribution``), one σ per example:
- ``ladder``: one of the L levels of the geometric ladder, uniformly (Song & Ermon 2019, §4.2);
  NCSN's choice and every paper preset's;
- ``loguniform``: ln σ ~ U(ln σ_L, ln σ₁), the ladder made continuous;
- ``lognormal``: ln σ ~ N(P_mean, P_std²) (Karras et al. 2022, EDM, Table 1 "p_train"). EDM's
  P_mean = −1.2, P_std = 1.2 are for data with σ_data = 0.5 (pixels in [−1, 1]). σ scales with
  the data, so ``train.p_mean = auto`` moves ln σ by the log of the scale ratio:
  P_mean = −1.2 + ln(σ_data / 0.5), with σ_data the training data's pixel standard deviation
  (MNIST in [0, 1]: σ_data ≈ 0.31, P_mean ≈ −1.68); P_std is a width in ln σ and stays 1.2.

Weights (``train.loss_weight``) on our per-example loss ℓ = ½ ‖s_θ(x̃, σ) + z/σ‖² = ½ ‖D − x‖² / σ⁴:
- ``power``: λ(σ) = σ^p (``train.loss_power``; p = 2 is NCSN's, Song & Ermon 2019 Eq. 6);
- ``edm``: EDM's λ(σ) = (σ² + σ_d²)/(σ σ_d)² on ‖D − x‖² (Karras et al. 2022, Table 1), i.e.
  σ²(σ² + σ_d²)/σ_d² on ℓ (up to EDM's overall factor 2); with ``model.parameterization = edm``
  that is ½ ‖F − F_target‖² at unit weight for every σ (EDM §5, "Loss weighting").
``auto`` (the default) is ``edm`` for the edm (and consistency) parameterization and ``power``
otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

DISTRIBUTIONS = ("ladder", "loguniform", "lognormal")
EDM_P_MEAN, EDM_P_STD, EDM_SIGMA_DATA = -1.2, 1.2, 0.5  # Karras et al. 2022, Table 1


@dataclass(frozen=True)
class NoiseLevels:
    """The training σ law and loss weight; ``sigmas`` is the ladder (descending) on the device."""

    sigmas: torch.Tensor
    distribution: str = "ladder"
    p_mean: float = EDM_P_MEAN
    p_std: float = EDM_P_STD
    weighting: str = "power"
    power: float = 2.0
    sigma_data: float = EDM_SIGMA_DATA

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` noise levels drawn from ``generator`` (on the ladder's device)."""
        sigmas = self.sigmas
        if self.distribution == "ladder":
            index = torch.randint(len(sigmas), (n,), generator=generator, device=sigmas.device)
            return sigmas[index]
        if self.distribution == "loguniform":  # on the device: no host sync per step
            lo, hi = sigmas[-1].log(), sigmas[0].log()  # the ladder is descending
            u = torch.rand(n, generator=generator, device=sigmas.device, dtype=sigmas.dtype)
            return torch.exp(lo + (hi - lo) * u)
        z = torch.randn(n, generator=generator, device=sigmas.device, dtype=sigmas.dtype)
        return torch.exp(self.p_mean + self.p_std * z)

    def describe(self) -> str:
        law = {"ladder": f"one of the {len(self.sigmas)} ladder levels", "loguniform":
               "log-uniform on [σ_L, σ₁]", "lognormal": f"log-normal (P_mean {self.p_mean:.4g}, "
               f"P_std {self.p_std:.4g})"}[self.distribution]  # fmt: skip
        weight = f"σ^{self.power:g}" if self.weighting == "power" else "EDM's"
        return f"training σ: {law}; loss weight {weight}"

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """λ(σ) applied to ℓ (see the module docstring)."""
        if self.weighting == "edm":
            return sigma * sigma * (sigma * sigma + self.sigma_data**2) / self.sigma_data**2
        return sigma.pow(self.power)


def from_config(train_cfg, sigmas: torch.Tensor, parameterization: str, sigma_data: float,
                data_std: float) -> NoiseLevels:  # fmt: skip
    """The NoiseLevels a TrainConfig asks for; ``data_std`` sets ``p_mean = auto``."""
    t = train_cfg
    p_mean = t.p_mean if t.p_mean != "auto" else auto_p_mean(data_std)
    return NoiseLevels(
        sigmas, t.sigma_distribution, p_mean, t.p_std, weighting(t.loss_weight, parameterization),
        t.loss_power, sigma_data,
    )  # fmt: skip


def weighting(loss_weight: str, parameterization: str) -> str:
    """``train.loss_weight`` with ``auto`` resolved: ``edm`` for the edm parameterization (and
    the consistency one, whose per-σ diagnostics then compare with its edm teacher's)."""
    if loss_weight == "auto":
        return "edm" if parameterization in ("edm", "consistency") else "power"
    return loss_weight


def auto_p_mean(data_std: float) -> float:
    """EDM's P_mean moved to data of pixel standard deviation ``data_std``."""
    return EDM_P_MEAN + math.log(data_std / EDM_SIGMA_DATA)


def data_std(
    x: torch.Tensor, to_float: Callable[[torch.Tensor], torch.Tensor] = torch.Tensor.float
) -> float:
    """The standard deviation of every value of ``x`` (N, ...) together (σ_data, EDM §5), in
    float64, taking rows in chunks through ``to_float`` (no full float copy of uint8 data)."""
    total = squares = 0.0
    for i in range(0, len(x), 4096):
        chunk = to_float(x[i : i + 4096]).double()
        total += float(chunk.sum())
        squares += float(chunk.pow(2).sum())
    n = x.numel()
    return math.sqrt(max(squares / n - (total / n) ** 2, 0.0))
