"""The fast samplers (iPNDM, DPM-Solver++(2M), its SDE variant, UniPC, Restart) driven by exact
scores: the paper's 0.2/0.8 mixture for the sample quality, a single Gaussian N(m, s² I), whose
probability-flow ODE has a closed form, for the order of accuracy."""

import functools
import math

import numpy as np
import pytest
import torch

import ncsn.schedule as schedule
from ncsn.data.toy import GaussianMixture, OracleModel
from ncsn.errors import NCSNError
from ncsn.metrics import energy_distance
from ncsn.samplers import run
from ncsn.samplers.multistep import (
    adams_bashforth_coefficients,
    dpmpp_2m_sampler,
    dpmpp_2m_sde_sampler,
    ipndm_sampler,
)
from ncsn.samplers.ode import heun_sampler
from ncsn.samplers.restart import restart_sampler
from ncsn.samplers.unipc import unipc_sampler
from ncsn.schedule import karras_sigmas, loguniform_sigmas

N = 4000
DISTANCE = functools.partial(energy_distance, unbiased=False)
RESTART = {"t_min": 1.0, "t_max": 5.0, "restarts": 1, "restart_steps": 4}
RESTART_2M = {"solver": "dpmpp_2m", "t_min": 2.0, "t_max": 10.0, "restarts": 2, "restart_steps": 4}

# σ_max = 80 dwarfs the mixture's spread (means 14 apart), so N(0, σ_max² I) is p_σmax.
# NFE ≤ 20 for each new sampler: ipndm and dpmpp_2m N = 20; dpmpp_2m_sde N = 20 at η = 0.3 (the
# MNIST benchmark's η at 9 NFE), restart on DPM-Solver++(2M) N + K·M = 11 + 2·4 = 19. Measured
# over sampler seeds 0–7 (distances in noise floors; the tests use seed 0): ipndm and dpmpp_2m
# within 3 floors on 8 of 8 (at most 2.8), unipc (order 2, the default) on 7 of 8 (median
# 1.3, at most 3.2), its order 3 on 6 of 8 (median 1.3), dpmpp_2m_sde at η = 0.3 on 7 of 8
# (median 1.6), restart (2M) on 7 of 8 (median 1.4; dpmpp_2m alone on its 11 levels: 9–11
# floors). Two more
# cases hold the defaults to their budgets: dpmpp_2m_sde at k-diffusion's η = 1 needs N = 30
# (7 of 8; at N = 20, 1 of 8: the injected noise's first-order error), and restart on Heun
# 2N − 1 + 2KM = 19 + 8 = 27 (6 of 8; at ≤ 20 NFE no Heun-based sampler gets within 3 floors:
# Heun N = 10, 19 NFE, is 6.0–9.3 floors away). benchmarks/oracle_seeds.py measures these.
CASES = {
    "ipndm": (ipndm_sampler, karras_sigmas(80.0, 0.01, 20), {}, 20),
    "dpmpp_2m": (dpmpp_2m_sampler, karras_sigmas(80.0, 0.01, 20), {}, 20),
    "dpmpp_2m_sde": (dpmpp_2m_sde_sampler, karras_sigmas(80.0, 0.01, 20), {"eta": 0.3}, 20),
    "unipc": (unipc_sampler, karras_sigmas(80.0, 0.01, 20), {}, 20),
    "unipc_order3": (unipc_sampler, karras_sigmas(80.0, 0.01, 20), {"order": 3}, 20),
    "restart": (restart_sampler, karras_sigmas(80.0, 0.01, 11), RESTART_2M, 19),
    "dpmpp_2m_sde_eta1": (dpmpp_2m_sde_sampler, karras_sigmas(80.0, 0.01, 30), {}, 30),
    "restart_heun": (restart_sampler, karras_sigmas(80.0, 0.01, 10), RESTART, 27),
}


def _draw(sampler, model, shape, sigmas, seed=0, **options):
    calls = []
    x = sampler(
        model,
        shape,
        sigmas,
        generator=torch.Generator().manual_seed(seed),
        callback=calls.append,
        **options,
    )
    return x, calls


@pytest.mark.parametrize("name", list(CASES))
def test_sampler_is_within_three_noise_floors_of_exact_samples(name, mixture, floor):
    sampler, sigmas, options, nfe = CASES[name]
    x, calls = _draw(sampler, OracleModel(mixture), (N, 2), sigmas, **options)
    exact = mixture.sample(N, torch.Generator().manual_seed(2))
    assert calls[-1]["nfe"] == nfe
    assert DISTANCE(x, exact) < 3 * floor
    assert abs(mixture.responsibilities(x).mean(0)[0].item() - 0.2) < 0.03


# The order of accuracy: N(m, s² I) with s = 0.5, from the same start x(σ₀) for every step count,
# on a ρ = 7 ladder from 80 to σ_min = 0.05 without the final 0 (compared at σ_min, where the
# exact x(σ) = m + (x(σ₀) − m) √(σ² + s²)/√(σ₀² + s²) is smooth). Measured slopes over
# N = 16…64 levels: ipndm 3.35 (3.66 between the last two: 4th order once the lower-order
# warm-up steps stop mattering), dpmpp_2m 1.94, heun 2.13.
MEAN, STD = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.5
LEVELS = [16, 23, 32, 45, 64]


def _error_slope(sampler, levels=LEVELS, **options) -> float:
    model = OracleModel(GaussianMixture.isotropic([1.0], [MEAN.tolist()], STD))
    x0 = MEAN + 80.0 * torch.randn(256, 2, generator=torch.Generator().manual_seed(0)).double()
    errors = []
    for n in levels:
        sigmas = karras_sigmas(80.0, 0.05, n)[:-1]
        x = sampler(model, x0.shape, sigmas, generator=torch.Generator(), x=x0.clone(), **options)
        scale = math.sqrt(sigmas[-1] ** 2 + STD**2) / math.sqrt(sigmas[0] ** 2 + STD**2)
        errors.append((x - (MEAN + (x0 - MEAN) * scale)).norm(dim=1).max().item())
    return -np.polyfit(np.log(levels), np.log(errors), 1)[0]


def test_ipndm_error_falls_at_about_fourth_order():
    assert _error_slope(ipndm_sampler) >= 3.0


def test_dpmpp_2m_error_falls_at_second_order():
    assert _error_slope(dpmpp_2m_sampler) >= 1.7


# UniPC-p is of order p + 1 (Zhao et al. 2023, Thm. 3.1): measured over N = 16…64, order 1
# (DDIM + UniC-1) 1.98, order 2 3.09; order 3 4.04 over N = 45, 64 (3.5 over 32…64; its error
# is not yet monotone at 16–23 levels, the warm-up's lower orders still dominating).
@pytest.mark.parametrize(
    "order, levels, least", [(1, LEVELS, 1.7), (2, LEVELS, 2.7), (3, LEVELS[2:], 3.2)]
)
def test_unipc_error_falls_at_one_order_above_its_predictor(order, levels, least):
    assert _error_slope(unipc_sampler, levels, order=order) >= least


def test_unipc_refuses_an_order_it_does_not_have(mixture):
    for order in (0, 4):
        with pytest.raises(NCSNError, match="unipc order"):
            unipc_sampler(OracleModel(mixture), (2, 2), [1.0, 0.0], generator=torch.Generator(),
                          order=order)  # fmt: skip


def test_adams_bashforth_coefficients_on_equal_steps_are_the_classic_ones():
    expected = {
        1: [1.0],
        2: [3 / 2, -1 / 2],
        3: [23 / 12, -16 / 12, 5 / 12],
        4: [55 / 24, -59 / 24, 37 / 24, -9 / 24],
    }
    for order, b in expected.items():
        nodes = [4.0 + k for k in range(order)]  # t_i, t_{i−1}, …: σ descends, h = −1
        assert adams_bashforth_coefficients(nodes, 3.0) == pytest.approx(b, abs=1e-12)


def test_variable_step_adams_bashforth_integrates_cubics_exactly():
    nodes, t_next = [2.0, 3.5, 7.0, 20.0], 0.7  # a non-uniform descending ladder
    b = adams_bashforth_coefficients(nodes, t_next)
    f = [lambda t: 1.0, lambda t: t, lambda t: t**2 - 3 * t, lambda t: t**3]
    antiderivative = [
        lambda t: t,
        lambda t: t**2 / 2,
        lambda t: t**3 / 3 - 1.5 * t**2,
        lambda t: t**4 / 4,
    ]
    for g, big_g in zip(f, antiderivative, strict=True):
        h = t_next - nodes[0]
        quadrature = h * sum(b_j * g(t) for b_j, t in zip(b, nodes, strict=True))
        assert quadrature == pytest.approx(big_g(t_next) - big_g(nodes[0]), rel=1e-10)


class Gaussian:
    """Exact denoiser of N(0, I): D(x, σ) = x / (1 + σ²)."""

    def denoise(self, x, sigma):
        return x / (1 + sigma.view(-1, 1) ** 2)


def test_two_dpmpp_2m_steps_equal_the_formula():
    x0 = torch.tensor([[1.0, -2.0], [0.3, 0.5]], dtype=torch.float64)
    s0, s1, s2 = 4.0, 2.0, 0.5
    out = dpmpp_2m_sampler(Gaussian(), x0.shape, [s0, s1, s2], generator=torch.Generator(), x=x0)
    h0, h1 = math.log(s0 / s1), math.log(s1 / s2)  # h_i = λ_{i+1} − λ_i, λ = −ln σ
    d0 = x0 / (1 + s0**2)
    x1 = (s1 / s0) * x0 - math.expm1(-h0) * d0  # first step: first order (DDIM)
    d1 = x1 / (1 + s1**2)
    r = h0 / h1
    d_tilde = (1 + 1 / (2 * r)) * d1 - d0 / (2 * r)
    assert torch.allclose(out, (s2 / s1) * x1 - math.expm1(-h1) * d_tilde, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2])
def test_two_unipc_steps_equal_the_formula(order):
    """Step 0: DDIM to x1; step 1: D1 at that x1 corrects it by UniC-1 (ρ = ½: the trapezoid
    in λ), then the predictor leaves the corrected x1 with D1: DDIM (order 1) or the 2M update
    (order 2, UniP-2 = DPM-Solver++(2M)). The last level is not 0: no evaluation there."""
    x0 = torch.tensor([[1.0, -2.0], [0.3, 0.5]], dtype=torch.float64)
    s0, s1, s2 = 4.0, 2.0, 0.5
    out = unipc_sampler(Gaussian(), x0.shape, [s0, s1, s2], generator=torch.Generator(), x=x0,
                        order=order)  # fmt: skip
    h0, h1 = math.log(s0 / s1), math.log(s1 / s2)
    d0 = x0 / (1 + s0**2)
    x1 = (s1 / s0) * x0 - math.expm1(-h0) * d0
    d1 = x1 / (1 + s1**2)  # at the uncorrected x1
    x1c = (s1 / s0) * x0 - math.expm1(-h0) * (d0 + 0.5 * (d1 - d0))
    r = h0 / h1
    d_tilde = d1 if order == 1 else (1 + 1 / (2 * r)) * d1 - d0 / (2 * r)
    assert torch.allclose(out, (s2 / s1) * x1c - math.expm1(-h1) * d_tilde, atol=1e-12)


def test_the_step_to_zero_returns_the_denoiser_output():
    x0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    for sampler in (dpmpp_2m_sampler, dpmpp_2m_sde_sampler, unipc_sampler):
        out = sampler(Gaussian(), x0.shape, [0.5, 0.0], generator=torch.Generator(), x=x0)
        assert torch.equal(out, x0 / 1.25)


def test_dpmpp_2m_sde_with_eta_zero_is_dpmpp_2m(mixture):
    sigmas = karras_sigmas(80.0, 0.01, 8)
    model = OracleModel(mixture)
    a, _ = _draw(dpmpp_2m_sde_sampler, model, (64, 2), sigmas, eta=0.0)
    b, _ = _draw(dpmpp_2m_sampler, model, (64, 2), sigmas)
    assert a.numpy().tobytes() == b.numpy().tobytes()


@pytest.mark.parametrize(
    "options",
    [
        {"restarts": 0},
        {"t_min": 0.001},  # no level in (0, t_min]: the ladder's last positive level is 0.01
        {"t_min": 1.0, "t_max": 0.5},  # t_max not above the restart level
    ],
)
def test_restart_without_a_restart_is_heun_to_the_byte(mixture, options):
    sigmas = karras_sigmas(80.0, 0.01, 10)
    model = OracleModel(mixture)
    a, calls = _draw(restart_sampler, model, (64, 2), sigmas, **options)
    b, _ = _draw(heun_sampler, model, (64, 2), sigmas)
    assert a.numpy().tobytes() == b.numpy().tobytes()
    assert calls[-1]["nfe"] == 2 * 10 - 1


def test_restart_on_dpmpp_2m_without_a_restart_is_dpmpp_2m_to_the_byte(mixture):
    sigmas = karras_sigmas(80.0, 0.01, 10)
    model = OracleModel(mixture)
    a, calls = _draw(restart_sampler, model, (64, 2), sigmas, solver="dpmpp_2m", restarts=0)
    b, _ = _draw(dpmpp_2m_sampler, model, (64, 2), sigmas)
    assert a.numpy().tobytes() == b.numpy().tobytes() and calls[-1]["nfe"] == 10


def test_restart_on_dpmpp_2m_restarts_the_multistep_history(mixture):
    """Main ladder to σ_j, K times (noise to t_max, M steps back), then the ladder from σ_j on:
    three solves of DPM-Solver++(2M), each starting first order."""
    sigmas = karras_sigmas(80.0, 0.01, 11)
    model = OracleModel(mixture)
    a, calls = _draw(restart_sampler, model, (64, 2), sigmas, **RESTART_2M)
    g = torch.Generator().manual_seed(0)
    x = 80.0 * torch.randn(64, 2, generator=g)
    j = next(j for j, s in enumerate(sigmas) if 0 < s <= RESTART_2M["t_min"])
    x = dpmpp_2m_sampler(model, x.shape, sigmas[: j + 1], generator=g, x=x)
    inner = [10.0, *karras_sigmas(10.0, sigmas[j], 5)[1:-2], sigmas[j]]
    for _ in range(2):
        x = x + math.sqrt(10.0**2 - sigmas[j] ** 2) * torch.randn(x.shape, generator=g)
        x = dpmpp_2m_sampler(model, x.shape, inner, generator=g, x=x)
    x = dpmpp_2m_sampler(model, x.shape, sigmas[j:], generator=g, x=x)
    assert a.numpy().tobytes() == x.numpy().tobytes()
    assert [c["nfe"] for c in calls] == list(range(1, 20))  # one evaluation per step
    steps = [(c["i"], c["step"]) for c in calls]
    assert steps[j - 1 : j + 9] == [*((j - 1, k) for k in range(9)), (j, 0)]  # then on from σ_j


def test_restart_refuses_an_unknown_solver(mixture):
    with pytest.raises(NCSNError, match="restart solver 'euler': expected one of heun, dpmpp_2m"):
        _draw(restart_sampler, OracleModel(mixture), (8, 2), karras_sigmas(80.0, 0.01, 4),
              solver="euler")  # fmt: skip


def test_restart_is_reproducible_and_its_noise_comes_from_the_generator(mixture):
    sigmas = karras_sigmas(80.0, 0.01, 10)
    model = OracleModel(mixture)
    start = 80.0 * torch.randn(64, 2, generator=torch.Generator().manual_seed(9))
    a, b, c = (
        _draw(restart_sampler, model, (64, 2), sigmas, seed=s, x=start.clone(), **RESTART)[0]
        for s in (5, 5, 6)
    )
    assert a.numpy().tobytes() == b.numpy().tobytes()
    assert not torch.equal(a, c)  # same start: only the restarts' noise differs


@pytest.mark.parametrize("n", [1, 2, 5])
def test_each_sampler_counts_the_stated_nfe(mixture, n):
    model = OracleModel(mixture)
    sigmas = karras_sigmas(80.0, 0.01, n)
    for sampler in (ipndm_sampler, dpmpp_2m_sampler, dpmpp_2m_sde_sampler, unipc_sampler):
        _, calls = _draw(sampler, model, (8, 2), sigmas)
        assert [c["nfe"] for c in calls] == list(range(1, n + 1))
    options = dict(RESTART, t_min=80.0, t_max=100.0)  # restart at σ₁ whatever n is
    _, calls = _draw(restart_sampler, model, (8, 2), sigmas, **options)
    restarted = n > 1
    assert calls[-1]["nfe"] == 2 * n - 1 + (2 * 1 * 4 if restarted else 0)


def test_denoiser_calls_match_the_reported_nfe(mixture):
    calls = {"n": 0}

    class Counted(OracleModel):
        def denoise(self, x, sigma):
            calls["n"] += 1
            return super().denoise(x, sigma)

    model = Counted(mixture)
    for sampler, sigmas, options, nfe in CASES.values():
        calls["n"] = 0
        _draw(sampler, model, (8, 2), sigmas, **options)
        assert calls["n"] == nfe


SCHED = schedule.Schedule(
    sigmas=schedule.geometric_sigmas(80.0, 0.01, 10),
    step_size=0.0,
    steps_per_level=1,
    data_mean=[3.0, 3.0],
)
FAST = ("ipndm", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "restart")


@pytest.mark.parametrize("name", FAST)
def test_same_seed_same_bytes_through_run_draw(name, mixture):
    def draw(seed, **options):
        opts = run.options(name, **options)
        return run.draw(OracleModel(mixture), SCHED, 100, (2,), seed=seed, batch_size=64,
                        sampler=name, steps=8, opts=opts)  # fmt: skip

    a, info = draw(5)
    b, _ = draw(5)
    c, _ = draw(6)
    assert a.numpy().tobytes() == b.numpy().tobytes() and not torch.equal(a, c)
    nfe = {"restart": 2 * 8 - 1 + 2 * 2 * 4}.get(name, 8)  # restart defaults: K = 2, M = 4
    assert info["nfe"] == nfe and info["num_levels"] == 9
    d, info = draw(5, schedule="loguniform")
    assert not torch.equal(a, d) and "log-uniform σ" in info["description"]
    if name == "restart":  # on DPM-Solver++(2M): N + K·M
        e, info = draw(5, solver="dpmpp_2m")
        assert info["nfe"] == 8 + 2 * 4 and "DPM-Solver++(2M)" in info["description"]
        assert e.numpy().tobytes() == draw(5, solver="dpmpp_2m")[0].numpy().tobytes()


def test_loguniform_ladder_is_uniform_in_log_sigma_and_ends_at_zero():
    sigmas = loguniform_sigmas(80.0, 0.01, 6)
    assert sigmas[0] == pytest.approx(80.0) and sigmas[-2] == pytest.approx(0.01)
    assert sigmas[-1] == 0.0 and loguniform_sigmas(5.0, 0.1, 1) == [5.0, 0.0]
    steps = np.diff(np.log(sigmas[:-1]))
    assert np.allclose(steps, steps[0])
    assert schedule.step_sigmas("karras", 80.0, 0.01, 6, 7.0) == karras_sigmas(80.0, 0.01, 6)
