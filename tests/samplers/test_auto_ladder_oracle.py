"""`num_levels: auto` below image dimension (issue 14), checked with exact mixture scores: annealed
Langevin (T = 100, ε by NCSNv2 technique 4) on the ladder `schedule.resolve` picks from 2,000
training samples. NCSNv2's overlap rule (technique 2) alone gives L = 11 in 16-D and L = 5 in 6-D,
on which the minor weight comes out near 0.26 and 0.31 and the 6-D variances 2.7× too large; the
low-dimension rule's γ = 1.22 (L = 38 and 37) recovers both."""

import pytest
import torch

import ncsn.schedule as schedule
from ncsn.config import ScheduleConfig
from ncsn.data.toy import GaussianMixture, OracleModel
from ncsn.samplers.langevin import annealed_langevin

N = 4000
T = 100


def _mixture(dim: int) -> GaussianMixture:
    """0.2 N(−1.5·1, I) + 0.8 N(1.5·1, I) in ``dim`` dimensions (means 3√D apart)."""
    means = torch.full((2, dim), 1.5, dtype=torch.float64)
    means[0] = -1.5
    return GaussianMixture.isotropic([0.2, 0.8], means, 1.0)


def _ald(mixture: GaussianMixture, sigmas: list[float], eps: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return annealed_langevin(
        OracleModel(mixture), (N, mixture.dim), sigmas, generator=gen, eps=eps, n_steps_each=T,
        init="gaussian",
    )  # fmt: skip


def _auto(mixture: GaussianMixture) -> schedule.Schedule:
    train = mixture.sample(2000, torch.Generator().manual_seed(0))
    return schedule.resolve(ScheduleConfig(steps_per_level=T), train)


def _overlap_rule_ladder(mixture: GaussianMixture, sched: schedule.Schedule):
    gamma = schedule.gamma_for_overlap(0.5, mixture.dim)
    levels = schedule.levels_for_gamma(sched.sigma_max, sched.sigma_min, gamma)
    sigmas = schedule.geometric_sigmas(sched.sigma_max, sched.sigma_min, levels)
    eps = schedule.step_size_for((sigmas[0] / sigmas[-1]) ** (1 / (levels - 1)), 0.01, T)
    return sigmas, eps


def _variances(mixture: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """Per-coordinate variance of the samples of each component (1 for exact samples)."""
    k = mixture.responsibilities(x).argmax(1)
    return torch.stack([x[k == j].double().var(0).mean() for j in range(2)])


@pytest.mark.parametrize("dim", [16, 6])
def test_auto_ladder_in_low_dimension_recovers_the_weights_and_variances(dim):
    mixture = _mixture(dim)
    sched = _auto(mixture)
    assert "low-dimension rule" in sched.how["num_levels"]
    x = _ald(mixture, sched.sigmas, sched.step_size)
    assert abs(mixture.responsibilities(x).mean(0)[0].item() - 0.2) < 0.03
    assert (_variances(mixture, x) - 1).abs().max() < 0.15


def test_the_overlap_rule_alone_is_too_coarse_in_16d():
    mixture = _mixture(16)
    sigmas, eps = _overlap_rule_ladder(mixture, _auto(mixture))
    assert len(sigmas) == 11
    x = _ald(mixture, sigmas, eps)
    assert mixture.responsibilities(x).mean(0)[0].item() - 0.2 > 0.04


def test_the_overlap_rule_alone_is_too_coarse_in_6d():
    mixture = _mixture(6)
    sigmas, eps = _overlap_rule_ladder(mixture, _auto(mixture))
    assert len(sigmas) == 5
    assert (_variances(mixture, _ald(mixture, sigmas, eps)) > 2).all()
