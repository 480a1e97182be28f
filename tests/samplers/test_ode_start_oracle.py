"""Where the deterministic sampler starts (issue 14), with exact mixture scores: the Heun ODE maps
its start onto the data one to one, so the start must follow p_σ₁ ≈ N(μ, σ₁² I) with μ the data's
mean. With σ₁ from NCSNv2 technique 1 (the largest distance between two training examples), μ is
not small next to σ₁ for data away from 0: started from N(0, σ₁² I) the ODE puts the wrong mass on
the components; started from N(μ, σ₁² I) (the run's recorded mean) it is within the noise floor.
ald, pc and churn keep their starts: their noise carries them to p_σ whatever the start's mean.
"""

import functools

import pytest
import torch

import ncsn.samplers.run as run
import ncsn.schedule as schedule
from ncsn.data.toy import GaussianMixture, OracleModel
from ncsn.metrics import energy_distance, noise_floor
from ncsn.samplers.ode import heun_sampler

N = 4000
STEPS = 50  # N = 50 Karras steps, 99 NFE: converged, so what is left is the start's error
DISTANCE = functools.partial(energy_distance, unbiased=False)

# 2-D, weights 0.15/0.35/0.50 at three corners of a square of side 10, std 1.5: ‖mean‖/σ₁ ≈ 0.48.
THREE = GaussianMixture.isotropic([0.15, 0.35, 0.5], [[10.0, 0.0], [0.0, 10.0], [10.0, 10.0]], 1.5)
# 16-D, weights 0.2/0.8 at 0 and at (3, …, 3), unit std: ‖mean‖/σ₁ ≈ 0.5.
TWO_16D = GaussianMixture.isotropic([0.2, 0.8], [[0.0] * 16, [3.0] * 16], 1.0)


def _run_schedule(mixture: GaussianMixture, *, with_mean: bool) -> schedule.Schedule:
    """The schedule a run trained on 2,000 exact samples records (σ₁ by technique 1)."""
    train = mixture.sample(2000, torch.Generator().manual_seed(0))
    sigma_max, _ = schedule.max_pairwise_distance(train)
    mean = schedule.data_mean(train) if with_mean else None
    return schedule.Schedule(
        schedule.geometric_sigmas(sigma_max, 0.01, 10), 1e-5, 5, {}, False, mean
    )


def _ode(mixture: GaussianMixture, sched: schedule.Schedule, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x, nfe, _ = run.sample(
        OracleModel(mixture), sched, (N, mixture.dim), generator=gen, sampler="ode", steps=STEPS
    )
    assert nfe == 2 * STEPS - 1
    return x


def _floor(mixture: GaussianMixture) -> float:
    gen = torch.Generator().manual_seed(1)
    return noise_floor(mixture.sample, N, DISTANCE, repeats=3, generator=gen).mean


@pytest.fixture(scope="module")
def three_floor() -> float:
    return _floor(THREE)


def test_the_three_component_mean_is_far_from_zero_next_to_sigma_max():
    sched = _run_schedule(THREE, with_mean=True)
    ratio = torch.tensor(sched.data_mean).norm() / sched.sigma_max
    assert 0.4 < ratio < 0.55


def test_ode_from_the_data_mean_recovers_three_component_weights(three_floor):
    x = _ode(THREE, _run_schedule(THREE, with_mean=True))
    weights = THREE.responsibilities(x).mean(0)
    torch.testing.assert_close(weights, THREE.weights.float(), rtol=0, atol=0.03)
    exact = THREE.sample(N, torch.Generator().manual_seed(2))
    assert DISTANCE(x, exact) < 3 * three_floor


def test_ode_from_zero_gets_three_component_weights_wrong(three_floor):
    x = _ode(THREE, _run_schedule(THREE, with_mean=False))  # a run without a recorded mean
    weights = THREE.responsibilities(x).mean(0)
    assert (weights - THREE.weights.float()).abs().max() > 0.05
    exact = THREE.sample(N, torch.Generator().manual_seed(2))
    assert DISTANCE(x, exact) > 10 * three_floor


def test_ode_from_the_data_mean_recovers_16d_weights_and_from_zero_does_not():
    right = TWO_16D.responsibilities(_ode(TWO_16D, _run_schedule(TWO_16D, with_mean=True)))
    wrong = TWO_16D.responsibilities(_ode(TWO_16D, _run_schedule(TWO_16D, with_mean=False)))
    assert abs(right.mean(0)[0].item() - 0.2) < 0.03
    assert abs(wrong.mean(0)[0].item() - 0.2) > 0.05


class _Still:
    """A score model whose denoiser is the identity: the ODE's derivative is 0, x stays put."""

    def denoise(self, x, sigma):
        return x


def test_ode_start_is_the_zero_mean_start_shifted_by_the_recorded_mean():
    sched = schedule.Schedule([4.0, 0.5], 1e-5, 5, {}, False, [1.0, -2.0, 0.5])
    start = {}
    for mean in (sched.data_mean, None):
        sched.data_mean = mean
        gen = torch.Generator().manual_seed(3)
        start[mean is None] = run.sample(_Still(), sched, (5, 3), generator=gen, sampler="ode")[0]
    assert torch.equal(start[False], start[True] + torch.tensor([1.0, -2.0, 0.5]))


def test_a_run_without_a_recorded_mean_keeps_the_old_ode_bytes():
    sched = _run_schedule(THREE, with_mean=False)
    gen = torch.Generator().manual_seed(4)
    x, _, text = run.sample(OracleModel(THREE), sched, (64, 2), generator=gen, sampler="ode")
    sigmas = schedule.karras_sigmas(sched.sigma_max, sched.sigma_min, run.ODE_STEPS)
    old = heun_sampler(
        OracleModel(THREE), (64, 2), sigmas, generator=torch.Generator().manual_seed(4)
    )
    assert x.numpy().tobytes() == old.numpy().tobytes()
    assert "no μ recorded" in text


@pytest.mark.parametrize("sampler", ["ald", "pc", "churn"])
def test_the_other_samplers_ignore_the_recorded_mean(sampler):
    sched = _run_schedule(THREE, with_mean=True)
    out = []
    for mean in (sched.data_mean, None):
        sched.data_mean = mean
        gen = torch.Generator().manual_seed(5)
        out.append(
            run.sample(OracleModel(THREE), sched, (32, 2), generator=gen, sampler=sampler)[0]
        )
    assert out[0].numpy().tobytes() == out[1].numpy().tobytes()
