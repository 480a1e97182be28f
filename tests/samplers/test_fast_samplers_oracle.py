"""PC, probability-flow ODE (Heun) and churn samplers driven by the exact score of the
paper's 0.2/0.8 Gaussian mixture: whatever error is left is the sampler's."""

import functools
import math

import pytest
import torch

from ncsn.data.toy import OracleModel
from ncsn.metrics import energy_distance
from ncsn.samplers.ode import heun_sampler
from ncsn.samplers.pc import pc_sampler
from ncsn.schedule import karras_sigmas

N = 4000
DISTANCE = functools.partial(energy_distance, unbiased=False)


def _run(sampler, mixture, seed, **options):
    return sampler(
        OracleModel(mixture), (N, 2), generator=torch.Generator().manual_seed(seed), **options
    )


CASES = {
    "pc": (
        pc_sampler,
        {
            "sigmas": torch.logspace(math.log10(20), -2, 200).tolist(),
            "n_correctors": 1,
            "snr": 0.16,
        },
    ),
    # A deterministic ODE maps its start to the data: σ_max must dwarf the data's spread
    # (80 ≫ 14, the distance between the means) for N(0, σ_max² I) to be p_σmax.
    "ode": (heun_sampler, {"sigmas": karras_sigmas(80.0, 0.01, 25)}),
    "churn": (
        heun_sampler,
        {
            "sigmas": karras_sigmas(80.0, 0.01, 50),
            "s_churn": 40.0,
            "s_min": 0.05,
            "s_max": 80.0,
            "s_noise": 1.0,
        },
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sampler_is_within_three_noise_floors_of_exact_samples(name, mixture, floor):
    sampler, options = CASES[name]
    x = _run(sampler, mixture, 0, **options)
    exact = mixture.sample(N, torch.Generator().manual_seed(2))
    assert DISTANCE(x, exact) < 3 * floor
    weights = mixture.responsibilities(x).mean(0)
    assert abs(weights[0].item() - 0.2) < 0.03


@pytest.mark.parametrize("name", list(CASES))
def test_same_seed_same_bytes(name, mixture):
    sampler, options = CASES[name]
    options = dict(options, sigmas=options["sigmas"][::5] + ([0.0] if name != "pc" else []))
    a = sampler(
        OracleModel(mixture), (64, 2), generator=torch.Generator().manual_seed(5), **options
    )
    b = sampler(
        OracleModel(mixture), (64, 2), generator=torch.Generator().manual_seed(5), **options
    )
    assert a.numpy().tobytes() == b.numpy().tobytes()


class Gaussian:
    """Exact score of N(0, I) perturbed to σ: s = −x / (1 + σ²); D(x, σ) = x / (1 + σ²)."""

    def score(self, x, sigma):
        return -x / (1 + sigma.view(-1, 1) ** 2)

    def denoise(self, x, sigma):
        return x / (1 + sigma.view(-1, 1) ** 2)


def test_one_heun_step_equals_the_formula():
    x0 = torch.tensor([[1.0, -2.0], [0.3, 0.5]])
    t0, t1 = 2.0, 1.0
    out = heun_sampler(Gaussian(), x0.shape, [t0, t1], generator=torch.Generator(), x=x0.clone())
    d = (x0 - x0 / (1 + t0**2)) / t0  # d_i = (x − D(x; t_i)) / t_i
    x1 = x0 + (t1 - t0) * d
    d1 = (x1 - x1 / (1 + t1**2)) / t1
    assert torch.allclose(out, x0 + (t1 - t0) * (0.5 * d + 0.5 * d1), atol=1e-6)


def test_last_heun_step_to_zero_is_a_single_euler_step():
    x0 = torch.tensor([[1.0, -2.0]])
    calls = []
    out = heun_sampler(
        Gaussian(),
        x0.shape,
        [0.5, 0.0],
        generator=torch.Generator(),
        x=x0.clone(),
        callback=calls.append,
    )
    assert torch.allclose(out, x0 / 1.25, atol=1e-6)  # x + (0 − σ)(x − D)/σ = D(x, σ)
    assert calls[-1]["nfe"] == 1


def test_karras_schedule_endpoints_and_rho_spacing():
    sig = karras_sigmas(80.0, 0.002, 18, rho=7.0)
    assert sig[0] == pytest.approx(80.0) and sig[-2] == pytest.approx(0.002) and sig[-1] == 0.0
    steps = [a - b for a, b in zip(sig[:-2], sig[1:-1], strict=True)]
    assert all(a > b for a, b in zip(steps, steps[1:], strict=False))  # denser near σ_min


def test_pc_counts_network_evaluations():
    calls = []
    pc_sampler(
        Gaussian(),
        (8, 2),
        [4.0, 2.0, 1.0, 0.5],
        generator=torch.Generator().manual_seed(0),
        n_correctors=2,
        callback=calls.append,
    )
    assert calls[-1]["nfe"] == 3 * (1 + 2) + 1
