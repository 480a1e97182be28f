"""Langevin samplers driven by the exact score of a Gaussian mixture (the oracle).

With the network replaced by the closed-form score, whatever error is left is the sampler's.
Setup of Song & Ermon 2019, §3.2 and Fig. 3: p = 1/5 N((−5, −5), I) + 4/5 N((5, 5), I), 4,000
particles started uniform on [−8, 8]² (a box covering both modes).

The ladder is geometric from σ₁ = 20 (about the largest distance between samples of the two
modes) to σ_L = 0.01, with L = 30 levels (γ ≈ 1.30) of T = 100 steps, ε = 2e-5. The minor weight
is decided where particles stop crossing between the modes (σ between about 4 and 1.5), so it
needs several levels there (NCSNv2's technique 2): with L = 10, T = 100 it comes out near 0.22,
about 14 noise floors away from exact samples in energy distance; with L = 30 it is 0.203-0.206,
about 2 noise floors away.
"""

import functools
import math

import pytest
import torch

from ncsn.data.toy import GaussianMixture, OracleModel, make_toy
from ncsn.metrics import energy_distance, noise_floor
from ncsn.samplers.langevin import annealed_langevin, langevin

N = 4000
SIGMAS = torch.logspace(math.log10(20.0), math.log10(0.01), 30).tolist()
N_STEPS_EACH = 100
EPS = 2e-5
# Plain Langevin at σ_L: a step that settles each mode in a few dozen steps (the paper's ε = 0.1
# in its convention, half that in ours), so a wrong weight is not a failure to converge.
PLAIN_EPS = 0.05
WEIGHTS = torch.tensor([0.2, 0.8])


@pytest.fixture(scope="module")
def mixture() -> GaussianMixture:
    return make_toy("mixture")


def _uniform_box(n: int, generator: torch.Generator) -> torch.Tensor:
    return 16 * torch.rand(n, 2, generator=generator) - 8


def _annealed(
    mixture: GaussianMixture, n: int, seed: int, sigmas: list[float] = SIGMAS
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = _uniform_box(n, generator)
    return annealed_langevin(
        OracleModel(mixture),
        (n, 2),
        sigmas,
        generator=generator,
        eps=EPS,
        n_steps_each=N_STEPS_EACH,
        x=x,
    )


@pytest.fixture(scope="module")
def annealed_samples(mixture: GaussianMixture) -> torch.Tensor:
    return _annealed(mixture, N, seed=0)


def test_annealed_langevin_recovers_the_mixture_weights(
    mixture: GaussianMixture, annealed_samples: torch.Tensor
) -> None:
    weights = mixture.responsibilities(annealed_samples).mean(0)
    torch.testing.assert_close(weights, WEIGHTS, rtol=0, atol=0.03)


def test_plain_langevin_with_as_many_steps_gets_the_weights_wrong(
    mixture: GaussianMixture,
) -> None:
    generator = torch.Generator().manual_seed(0)
    x = _uniform_box(N, generator)
    n_steps = len(SIGMAS) * N_STEPS_EACH
    x = langevin(
        OracleModel(mixture), x, SIGMAS[-1], generator=generator, eps=PLAIN_EPS, n_steps=n_steps
    )
    distance_to_mode = torch.cdist(x.double(), mixture.means).min(dim=1).values
    assert (distance_to_mode < 4).float().mean() > 0.99  # it has settled into the modes...
    weights = mixture.responsibilities(x).mean(0)
    assert (weights - WEIGHTS).abs().max() > 0.1  # ...in proportion to their basins, not weights


def test_annealed_samples_are_within_three_noise_floors_of_exact_samples(
    mixture: GaussianMixture, annealed_samples: torch.Tensor
) -> None:
    distance = functools.partial(energy_distance, unbiased=False)
    generator = torch.Generator().manual_seed(1)
    floor = noise_floor(mixture.sample, N, distance, repeats=3, generator=generator)
    assert distance(annealed_samples, mixture.sample(N, generator)) < 3 * floor.mean


def test_annealed_langevin_is_reproducible_for_a_seed(mixture: GaussianMixture) -> None:
    sigmas = SIGMAS[::6]
    first = _annealed(mixture, 256, seed=3, sigmas=sigmas)
    second = _annealed(mixture, 256, seed=3, sigmas=sigmas)
    assert first.numpy().tobytes() == second.numpy().tobytes()
