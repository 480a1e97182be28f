"""Issue 15: the edm parameterization, the σ distributions and their loss weights."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from ncsn.data.toy import GaussianMixture
from ncsn.model import ScoreModel
from ncsn.noise_levels import NoiseLevels, auto_p_mean, data_std
from ncsn.objectives import dsm_loss

SIGMA_DATA = 0.37


class Recorder(nn.Module):
    """A network that returns a fixed function of its input and records what it was given."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.seen = fn, []

    def forward(self, x, sigma):
        self.seen.append((x.clone(), sigma.clone()))
        return self.fn(x, sigma)


def test_edm_preconditioning_is_the_formulas_on_a_fixed_input():
    x = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64)
    sigma = torch.tensor([0.2, 5.0], dtype=torch.float64)
    net = Recorder(lambda u, s: torch.sin(3 * u) + s[:, None])
    model = ScoreModel(net, "edm", sigma_data=SIGMA_DATA)
    d = model.denoise(x, sigma)
    for i in range(2):  # Karras et al. 2022, Table 1, written out by hand
        s, sd = float(sigma[i]), SIGMA_DATA
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / math.sqrt(s**2 + sd**2)
        c_in = 1 / math.sqrt(s**2 + sd**2)
        f = torch.sin(3 * c_in * x[i]) + s
        assert torch.allclose(d[i], c_skip * x[i] + c_out * f, atol=1e-14, rtol=0)
        assert torch.allclose(net.seen[0][0][i], c_in * x[i], atol=1e-15, rtol=0)
    assert torch.equal(net.seen[0][1], sigma)  # the network embeds ln σ itself
    score = model.score(x, sigma)
    assert torch.allclose(score, (d - x) / sigma[:, None] ** 2, atol=1e-13, rtol=0)


def _exact_target(parameterization, mixture, sigma_data, input_scaling=True):
    """The F that makes ``parameterization`` give the mixture's exact score, from the network's
    (scaled) input: every parameterization's formula inverted."""

    def fn(u, sigma):
        s = sigma[:, None]
        c_in = torch.rsqrt(s * s + sigma_data**2) if input_scaling else 1.0
        x = u / c_in
        score = mixture.score(x, sigma)
        if parameterization == "noise":
            return -s * score
        if parameterization == "score_sigma":
            return s * score
        denoised = x + s * s * score
        if parameterization == "denoiser":
            return denoised
        c_skip = sigma_data**2 / (s * s + sigma_data**2)
        c_out = s * sigma_data * torch.rsqrt(s * s + sigma_data**2)
        return (denoised - c_skip * x) / c_out

    return fn


@pytest.mark.parametrize("parameterization", ["noise", "score_sigma", "denoiser", "edm"])
def test_every_parameterization_of_the_exact_mixture_score_gives_it_back(parameterization):
    mixture = GaussianMixture(
        [0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]], np.stack([np.eye(2) * 0.1, np.eye(2) * 0.3])
    )
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=gen, dtype=torch.float64) * 2
    sigma = torch.exp(torch.linspace(math.log(0.01), math.log(20.0), 64, dtype=torch.float64))
    net = Recorder(_exact_target(parameterization, mixture, SIGMA_DATA))
    model = ScoreModel(net, parameterization, sigma_data=SIGMA_DATA)
    exact = mixture.score(x, sigma)
    scale = exact.abs().max()
    assert (model.score(x, sigma) - exact).abs().max() / scale < 1e-12
    expected = mixture.denoise(x, sigma)
    assert (model.denoise(x, sigma) - expected).abs().max() < 1e-12


def _levels(distribution, **kw):
    sigmas = torch.tensor(np.geomspace(16.0, 0.01, 95), dtype=torch.float32)
    return NoiseLevels(sigmas, distribution, **kw)


def test_the_ladder_draws_each_level_uniformly():
    levels = _levels("ladder")
    drawn = levels.draw(95_000, torch.Generator().manual_seed(0))
    index = {float(s): i for i, s in enumerate(levels.sigmas)}
    counts = np.bincount([index[float(s)] for s in drawn], minlength=95)
    assert stats.chisquare(counts).pvalue > 1e-3
    assert set(counts.nonzero()[0]) == set(range(95))


@pytest.mark.parametrize(
    "distribution, law",
    [
        ("loguniform", stats.uniform(math.log(0.01), math.log(16.0) - math.log(0.01))),
        ("lognormal", stats.norm(-1.68, 1.2)),
    ],
)
def test_continuous_sigma_laws_pass_a_kolmogorov_smirnov_test_on_ln_sigma(distribution, law):
    levels = _levels(distribution, p_mean=-1.68, p_std=1.2)
    ln_sigma = levels.draw(20_000, torch.Generator().manual_seed(1)).double().log().numpy()
    assert stats.kstest(ln_sigma, law.cdf).statistic < 1.63 / math.sqrt(20_000)  # α = 1 %
    wrong = stats.norm(-1.2, 1.2) if distribution == "lognormal" else stats.norm(-1.0, 2.5)
    assert stats.kstest(ln_sigma, wrong.cdf).statistic > 5 / math.sqrt(20_000)


def test_the_loss_weights_are_the_stated_ones():
    sigma = torch.tensor([0.01, 0.3, 4.0, 16.0], dtype=torch.float64)
    power = _levels("ladder", power=2.0)
    assert torch.allclose(power.weight(sigma), sigma**2)
    edm = _levels("lognormal", weighting="edm", sigma_data=SIGMA_DATA)
    # EDM's λ = (σ² + σ_d²)/(σσ_d)² on ‖D − x‖², and our ℓ = ½‖D − x‖²/σ⁴
    lam = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
    assert torch.allclose(edm.weight(sigma), lam * sigma**4, rtol=1e-12)


def test_edm_loss_is_half_the_squared_error_of_the_network_output_at_unit_weight():
    """With the edm parameterization and its weight, λ(σ)·ℓ = ½‖F − F_target‖² (EDM §5)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(32, 5, generator=gen, dtype=torch.float64)
    out = torch.randn(32, 5, generator=gen, dtype=torch.float64)
    model = ScoreModel(Recorder(lambda u, s: out), "edm", sigma_data=SIGMA_DATA)
    levels = _levels("lognormal", weighting="edm", sigma_data=SIGMA_DATA)
    levels = NoiseLevels(levels.sigmas.double(), "lognormal", weighting="edm",
                         sigma_data=SIGMA_DATA)  # fmt: skip
    loss = dsm_loss(model, x, levels, generator=torch.Generator().manual_seed(3))
    replay = torch.Generator().manual_seed(3)  # the same draws: σ, then z
    sigma = levels.draw(32, replay)[:, None]
    z = torch.randn(32, 5, generator=replay, dtype=torch.float64)
    sd2 = SIGMA_DATA**2
    c_skip, c_out = sd2 / (sigma**2 + sd2), sigma * SIGMA_DATA / (sigma**2 + sd2).sqrt()
    target = (x - c_skip * (x + sigma * z)) / c_out
    expected = 0.5 * (out - target).pow(2).sum(1).mean()
    assert torch.allclose(loss, expected, rtol=1e-9)  # cancellation in (D − x̃)/σ² + z/σ


def test_p_mean_auto_moves_edms_value_to_the_datas_scale():
    assert auto_p_mean(0.5) == pytest.approx(-1.2)
    assert auto_p_mean(0.25) == pytest.approx(-1.2 - math.log(2))
    x = torch.tensor([[0, 255], [255, 0]], dtype=torch.uint8)
    assert data_std(x, lambda t: t.float() / 255) == pytest.approx(0.5)
