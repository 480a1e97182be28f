import math

import torch

from ncsn.samplers.langevin import annealed_langevin, initial_noise, langevin


class Quadratic:
    """Exact score of N(0, (1 + σ²) I): s(x, σ) = −x / (1 + σ²)."""

    def score(self, x, sigma):
        return -x / (1 + sigma.view(-1, 1) ** 2)


def test_one_annealed_step_equals_the_formula_under_a_fixed_generator():
    sigmas, eps = [2.0, 0.5], 1e-3
    x0 = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    out = annealed_langevin(
        Quadratic(),
        x0.shape,
        sigmas[:1] + [0.5],
        generator=torch.Generator().manual_seed(7),
        eps=eps,
        n_steps_each=1,
        denoise_final=False,
        x=x0.clone(),
        callback=None,
    )
    g = torch.Generator().manual_seed(7)
    x = x0.clone()
    for sigma in sigmas:  # α_i = ε σ_i² / σ_L², x ← x + α s + √(2α) z
        alpha = eps * sigma**2 / sigmas[-1] ** 2
        z = torch.randn(x.shape, generator=g)
        x = x + alpha * (-x / (1 + sigma**2)) + math.sqrt(2 * alpha) * z
    assert torch.allclose(out, x, atol=1e-6)


def test_final_denoising_step_is_tweedie_at_sigma_min():
    x0 = torch.tensor([[1.0, -2.0]])
    a = annealed_langevin(
        Quadratic(),
        x0.shape,
        [0.5],
        generator=torch.Generator().manual_seed(0),
        eps=1e-3,
        n_steps_each=3,
        denoise_final=False,
        x=x0.clone(),
    )
    b = annealed_langevin(
        Quadratic(),
        x0.shape,
        [0.5],
        generator=torch.Generator().manual_seed(0),
        eps=1e-3,
        n_steps_each=3,
        denoise_final=True,
        x=x0.clone(),
    )
    assert torch.allclose(b, a + 0.25 * (-a / 1.25), atol=1e-6)


def test_same_seed_gives_identical_samples_and_another_seed_does_not():
    def run(seed):
        return annealed_langevin(
            Quadratic(),
            (16, 2),
            [3.0, 1.0, 0.1],
            generator=torch.Generator().manual_seed(seed),
            eps=1e-4,
            n_steps_each=5,
        )

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_callback_sees_every_step_and_counts_network_evaluations():
    states = []
    annealed_langevin(
        Quadratic(),
        (4, 2),
        [1.0, 0.5, 0.1],
        generator=torch.Generator().manual_seed(0),
        eps=1e-4,
        n_steps_each=4,
        callback=states.append,
    )
    assert [s["nfe"] for s in states] == list(range(1, 14))
    assert [s["i"] for s in states[:-1]] == [0] * 4 + [1] * 4 + [2] * 4


def test_initial_noise_uniform_and_gaussian():
    g = torch.Generator().manual_seed(0)
    u = initial_noise((2000, 2), 5.0, generator=g, init="uniform")
    n = initial_noise((2000, 2), 5.0, generator=g, init="gaussian")
    assert 0 <= u.min() and u.max() <= 1
    assert abs(n.std().item() - 5.0) < 0.3


def test_langevin_at_one_level_reaches_the_stationary_gaussian():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(4000, 2)
    out = langevin(Quadratic(), x, 1.0, generator=g, eps=0.05, n_steps=400)
    assert abs(out.var().item() - 2.0) < 0.2  # N(0, (1 + σ²) I) at σ = 1
