"""log p(x) through the probability-flow ODE (ncsn.likelihood) against closed forms: a shifted
Gaussian, the paper's two-component mixture, and the uniform density on the unit cube (8-bit
levels dequantized: 8 bits/dim)."""

import json
import math

import numpy as np
import pytest
import torch
from tiny import TINY_UNET, as_cli

from ncsn.cli import main
from ncsn.data.toy import GaussianMixture, OracleModel, make_toy
from ncsn.errors import NCSNError
from ncsn.likelihood import (
    bits_per_dim,
    dequantize,
    gaussian_log_prob,
    log_likelihood,
    score_examples,
)

SIGMA_MIN, SIGMA_MAX = 0.01, 200.0  # σ₁ dwarfs the data's spread: the prior gap is ≈ 1e-7 nats


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def shifted():
    """N(m, 0.5² I) in 4-D with m far from 0 (3, −2, 1, 0.5): a prior centred at 0 would miss it."""
    mean = torch.tensor([3.0, -2.0, 1.0, 0.5])
    g = GaussianMixture.isotropic([1.0], mean[None], 0.5)
    return g, mean, g.sample(64, _gen(0))


@pytest.fixture(scope="module")
def mixture():
    mix = make_toy("mixture")  # 0.2 N((−5, −5), I) + 0.8 N((5, 5), I)
    mean = (mix.weights[:, None] * mix.means).sum(0).float()
    return mix, mean, mix.sample(200, _gen(1))


def _ll(model, x, mean, **options):
    options.setdefault("solver", "heun")
    return log_likelihood(
        model, x, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, mean=mean, generator=_gen(5), **options
    )


def test_shifted_gaussian_matches_its_closed_form_in_the_right_direction(shifted):
    g, mean, x = shifted
    r = _ll(OracleModel(g), x, mean, divergence="exact", steps=200)
    true = g.log_prob(x.double(), SIGMA_MIN).double()
    assert float((r.log_p - true).abs().max()) / 4 < 0.01  # worst example; 0.01 at 100 steps
    # The other direction (the integral added, as one gets integrating from σ₁ down) is far off:
    assert float((r.prior + r.integral - true).abs().min()) / 4 > 1.0
    # and cannot be asked for: the API only integrates from σ_min up to σ₁.
    with pytest.raises(NCSNError, match="0 < σ_min < σ₁"):
        log_likelihood(
            OracleModel(g), x, sigma_min=SIGMA_MAX, sigma_max=SIGMA_MIN, generator=_gen()
        )


def test_mixture_matches_its_closed_form_exact_divergence(mixture):
    mix, mean, x = mixture
    true = mix.log_prob(x.double(), SIGMA_MIN).double()
    heun = _ll(OracleModel(mix), x, mean, divergence="exact", steps=100)
    assert float((heun.log_p - true).abs().mean()) / 2 < 0.01  # measured 0.0039 nats/dim
    assert heun.nfe == 200
    rk45 = _ll(OracleModel(mix), x, mean, divergence="exact", solver="rk45")
    assert float((rk45.log_p - true).abs().mean()) / 2 < 0.01
    assert 0 < rk45.nfe < 1000


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_within_its_standard_error(mixture, probe):
    mix, mean, x = mixture
    true = mix.log_prob(x.double(), SIGMA_MIN).double()
    r = _ll(OracleModel(mix), x, mean, probes=2, probe=probe, steps=100)
    err = r.log_p - true
    se = float(err.std() / math.sqrt(len(err)))
    assert se > 0  # the estimator is random
    assert abs(float(err.mean())) < 3 * se + 0.01 * 2
    assert _ll(OracleModel(mix), x, mean, probes=2, probe=probe, steps=100).log_p.equal(r.log_p)


def test_fixed_steps_are_the_same_for_every_example_and_batch(mixture):
    """What makes DDP safe (crowsonkb/k-diffusion#79): Heun's NFE never depends on the data,
    and each example's value does not depend on the batch it was scored in."""
    mix, mean, x = mixture
    model = OracleModel(mix)
    far = x * 3 + 7  # a very different "rank"
    a, b = (
        _ll(model, x[:50], mean, divergence="exact", steps=7),
        _ll(model, far[:50], mean, divergence="exact", steps=7),
    )
    assert a.nfe == b.nfe == 14
    alone = _ll(model, x[:1], mean, divergence="exact", steps=7)
    assert torch.allclose(alone.log_p, a.log_p[:1], rtol=0, atol=1e-9)


class UniformCube(torch.nn.Module):
    """The exact score of U[0, 1]^D ∗ N(0, σ² I): p_σ(x) = Π_d [Φ((1 − x_d)/σ) − Φ(−x_d/σ)],
    s_d = [φ(x_d/σ) − φ((1 − x_d)/σ)] / (σ [Φ((1 − x_d)/σ) − Φ(−x_d/σ)])."""

    def score(self, x, sigma):
        s = sigma.double().reshape(-1, *([1] * (x.dim() - 1)))
        x64 = x.double()
        a, b = -x64 / s, (1 - x64) / s
        log_mass = torch.special.log_ndtr(b) + torch.log1p(
            -torch.exp(torch.special.log_ndtr(a) - torch.special.log_ndtr(b))
        )
        log_phi = lambda t: -0.5 * t * t - 0.5 * math.log(2 * math.pi)  # noqa: E731
        score = (torch.exp(log_phi(a) - log_mass) - torch.exp(log_phi(b) - log_mass)) / s
        return score.to(x.dtype)


def test_dequantized_uniform_levels_give_eight_bits_per_dim():
    levels = torch.randint(0, 256, (200, 1, 2, 2), generator=_gen(3)).float() / 255
    scores = score_examples(
        UniformCube(),
        levels,
        sigma_min=1e-3,
        sigma_max=50.0,
        mean=torch.full((1, 2, 2), 0.5),
        levels=256,
        dequantizations=2,
        batch_size=100,
        seed=0,
        divergence="exact",
        solver="rk45",
    )
    bpd = scores.bits_per_dim
    se = float(bpd.std() / math.sqrt(len(bpd)))
    assert abs(float(bpd.mean()) - 8.0) < 3 * se + 0.01, (float(bpd.mean()), se)
    # Without dequantization there are no bits/dim to report (they could be negative).
    assert (
        score_examples(
            UniformCube(),
            levels,
            sigma_min=1e-3,
            sigma_max=50.0,
            levels=256,
            dequantizations=0,
            solver="rk45",
            divergence="exact",
        ).bits_per_dim
        is None
    )


def test_bits_per_dim_and_dequantization_formulas():
    # uniform density 1 on [0, 1]^D is 8 bits/dim for 256 levels; 2^D density is 7
    assert float(bits_per_dim(torch.tensor([0.0]), 10)) == pytest.approx(8.0)
    assert float(bits_per_dim(torch.tensor([10 * math.log(2)]), 10)) == pytest.approx(7.0)
    x = torch.tensor([0.0, 1.0, 128 / 255])
    d = dequantize(x, 256, _gen())
    assert torch.equal(torch.floor(d * 256), torch.tensor([0.0, 255.0, 128.0]))
    assert float(gaussian_log_prob(torch.zeros(1, 3), None, 1.0)) == pytest.approx(
        -1.5 * math.log(2 * math.pi)
    )


def test_same_seed_same_value_other_seed_another(mixture):
    mix, mean, x = mixture
    kw = {"sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "mean": mean, "steps": 5,
          "solver": "heun"}  # fmt: skip
    a = score_examples(OracleModel(mix), x[:20], seed=4, batch_size=8, **kw)
    b = score_examples(OracleModel(mix), x[:20], seed=4, batch_size=8, **kw)
    c = score_examples(OracleModel(mix), x[:20], seed=5, batch_size=8, **kw)
    assert a.nats.equal(b.nats) and not a.nats.equal(c.nats)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"probes": 0}, "at least 1 Hutchinson probe"),
        ({"steps": 0, "solver": "heun"}, "at least 1 Heun step"),
        ({"solver": "euler"}, "solver 'euler'"),
        ({"divergence": "exact"}, "one backward pass"),
        ({"probe": "sphere"}, "probe 'sphere'"),
    ],
)
def test_bad_settings_are_refused_before_any_work(options, message):
    calls = []

    class Counting(torch.nn.Module):
        def score(self, x, sigma):
            calls.append(1)
            return -x

    with pytest.raises(NCSNError, match=message):
        log_likelihood(
            Counting(),
            torch.zeros(2, 300),
            sigma_min=0.01,
            sigma_max=1.0,
            generator=_gen(),
            **options,
        )
    assert not calls


# --- the command line -------------------------------------------------------------------------

TINY = as_cli([*TINY_UNET, "schedule.num_levels=4", "train.steps=2", "train.batch_size=8"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--config", "digits", *TINY, "--run-dir", str(run), "--no-progress"]) == 0
    return run


def test_cli_prints_bits_per_dim_and_writes_json_and_csv(run, tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", images=images)
    out, csv_path = tmp_path / "ll.json", tmp_path / "each.csv"
    argv = [
        "likelihood",
        str(run),
        "--data",
        str(tmp_path / "x.npz"),
        "--solver",
        "heun",
        "--steps",
        "3",
        "--out",
        str(out),
        "--per-example",
        str(csv_path),
        "--no-progress",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "bits/dim" in text and "NFE 6 per example" in text
    result = json.loads(out.read_text())
    assert result["n"] == 6 and result["dims"] == 64 and result["bits_per_dim"] is not None
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "index,nats,bits_per_dim" and len(rows) == 7
    per = [float(r.split(",")[2]) for r in rows[1:]]
    assert np.mean(per) == pytest.approx(result["bits_per_dim"], rel=1e-6)
    assert main(argv) == 0  # same seed, same value
    assert json.loads(out.read_text())["bits_per_dim"] == result["bits_per_dim"]
    # a config's data, a seeded subset
    assert (
        main(
            [
                "likelihood",
                str(run),
                "--data",
                "digits",
                "--n",
                "3",
                "--solver",
                "heun",
                "--steps",
                "2",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["n"] == 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--probes", "0"], "--probes 0"),
        (["--steps", "0"], "--steps 0"),
        (["--dequantize", "-1"], "--dequantize -1"),
        (["--rtol", "0"], "--rtol 0"),
        (["--sigma-min", "100"], "--sigma-min 100"),
    ],
)
def test_cli_bad_flags_exit_2_naming_them(run, tmp_path, capsys, extra, message):
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 8, 8, 1), np.uint8))
    assert main(["likelihood", str(run), "--data", str(tmp_path / "x.npz"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_wrong_shape_and_refinenet_exit_2(run, tmp_path, capsys):
    np.savez(tmp_path / "big.npz", images=np.zeros((2, 28, 28, 1), np.uint8))
    assert main(["likelihood", str(run), "--data", str(tmp_path / "big.npz")]) == 2
    err = capsys.readouterr().err
    assert "examples of shape (1, 28, 28), but the run models (1, 8, 8)" in err
    paper = tmp_path / "paper"
    assert (
        main(
            [
                "train",
                "--config",
                "digits",
                "--set",
                "model.net=refinenet",
                "--set",
                "model.ngf=4",
                "--set",
                "schedule.num_levels=4",
                "--set",
                "train.steps=1",
                "--set",
                "train.batch_size=4",
                "--set",
                "train.preview_every=0",
                "--run-dir",
                str(paper),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 8, 8, 1), np.uint8))
    assert main(["likelihood", str(paper), "--data", str(tmp_path / "x.npz")]) == 2
    assert "RefineNet" in capsys.readouterr().err
