"""The score Fokker–Planck residual: ~0 for an exact score, shrinking as the levels get closer,
clearly larger for a perturbed score; the regulariser trains and resumes."""

import itertools

import pytest
import torch
from tiny import TINY_UNET

from ncsn import checkpoint, config
from ncsn.data.toy import GaussianMixture, OracleModel
from ncsn.fokker_planck import regulariser, residual
from ncsn.training.loop import train
from ncsn.training.state import load_run


def product_mixture() -> GaussianMixture:
    """2 × 2 grid: the product of two 1-D two-component mixtures (isotropic components), so the
    score's Jacobian is diagonal and Hutchinson's divergence is exact with Rademacher probes."""
    a, b = [(-1.0, 0.3), (1.5, 0.7)], [(-0.5, 0.6), (2.0, 0.4)]
    means = [[ma, mb] for (ma, _), (mb, _) in itertools.product(a, b)]
    weights = [wa * wb for (_, wa), (_, wb) in itertools.product(a, b)]
    covs = torch.stack([0.25 * torch.eye(2)] * 4)
    return GaussianMixture(weights, means, covs)


class Scaled(torch.nn.Module):
    """The exact score times a constant: a score of no density family, inconsistent across σ."""

    def __init__(self, oracle, factor):
        super().__init__()
        self.oracle, self.factor = oracle, factor

    def forward(self, x, sigma):
        return self.factor * self.oracle(x, sigma)


def relative_residual(model, mixture, sigma, gap, n=2000):
    """E‖r‖² / E‖∂s/∂σ‖² at σ with neighbouring levels σ ± gap/2 (double precision)."""
    gen = torch.Generator().manual_seed(0)
    x0 = mixture.sample(n, generator=gen).double()
    sa, sb = torch.full((n,), sigma + gap / 2).double(), torch.full((n,), sigma - gap / 2).double()
    r, sm = residual(model, x0, sa, sb, generator=gen, create_graph=False)
    # reference scale: the exact ∂s/∂σ by a fine central difference, at the same points
    x = x0 + sm.view(-1, 1) * torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
    h = 1e-4
    ds = (mixture.score(x, sigma + h) - mixture.score(x, sigma - h)) / (2 * h)
    return (r.pow(2).sum(1).mean() / ds.pow(2).sum(1).mean()).item()


@pytest.mark.parametrize("sigma", [0.3, 1.0])
def test_exact_score_has_vanishing_residual_that_shrinks_with_the_gap(sigma):
    mixture = product_mixture()
    oracle = OracleModel(mixture)
    coarse = relative_residual(oracle, mixture, sigma, gap=0.4 * sigma)
    fine = relative_residual(oracle, mixture, sigma, gap=0.1 * sigma)
    assert coarse < 0.05, coarse
    assert fine < 1e-3, fine
    # central difference: error O(gap²), so ‖r‖² falls like gap⁴ (here 4× → 256×; allow ≥ 30×)
    assert fine < coarse / 30, (coarse, fine)


def test_perturbed_score_has_a_clearly_larger_residual():
    mixture = product_mixture()
    exact = relative_residual(OracleModel(mixture), mixture, 0.5, gap=0.05)
    scaled = relative_residual(Scaled(OracleModel(mixture), 1.2), mixture, 0.5, gap=0.05)
    assert scaled > 0.01 and scaled > 100 * exact, (exact, scaled)


def test_regulariser_is_differentiable():
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.SiLU(), torch.nn.Linear(16, 2))

    def model(x, sigma):
        return net(torch.cat([x, sigma.log().unsqueeze(1)], 1)) / sigma.unsqueeze(1)

    gen = torch.Generator().manual_seed(0)
    value = regulariser(model, torch.randn(8, 2), torch.tensor([2.0, 1.0, 0.5]), generator=gen)
    value.backward()
    grads = [p.grad for p in net.parameters()]
    assert value.item() > 0 and all(g is not None and g.abs().sum() > 0 for g in grads)


def _run(tmp_path, name, extra):
    sets = [
        *TINY_UNET,
        "data.name=digits",
        "schedule.num_levels=6",
        "train.steps=6",
        "train.batch_size=8",
        "train.checkpoint_every=3",
        "train.log_every=1",
        f"run_dir={tmp_path / name}",
        *extra,
    ]
    return config.load(None, sets)


def test_zero_weight_leaves_training_unchanged(tmp_path):
    """fp_weight = 0 with the other FP settings changed trains the same bytes as the defaults:
    the term is neither computed nor allowed to draw from the training noise generator."""
    train(_run(tmp_path, "zero", ["train.fp_weight=0", "train.fp_examples=4", "train.fp_probes=3"]),
          progress=False, log=lambda m: None)  # fmt: skip
    train(_run(tmp_path, "plain", []), progress=False, log=lambda m: None)
    a = checkpoint.load(checkpoint.path_for(tmp_path / "zero" / "checkpoints", 6))[0]
    b = checkpoint.load(checkpoint.path_for(tmp_path / "plain" / "checkpoints", 6))[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_with_the_regulariser_resumes_exactly(tmp_path):
    extra = ["train.fp_weight=0.1", "train.fp_examples=4"]
    cfg = _run(tmp_path, "straight", extra)
    train(cfg, progress=False, log=lambda m: None)
    part = _run(tmp_path, "resumed", [*extra, "train.steps=3"])
    train(part, progress=False, log=lambda m: None)
    train(_run(tmp_path, "resumed", extra), progress=False, log=lambda m: None)
    a, *_ = load_run(tmp_path / "straight", log=lambda m: None)
    b, *_ = load_run(tmp_path / "resumed", log=lambda m: None)
    plain = _run(tmp_path, "plain", [])
    train(plain, progress=False, log=lambda m: None)
    c, *_ = load_run(tmp_path / "plain", log=lambda m: None)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    pairs = zip(a.parameters(), c.parameters(), strict=True)
    assert any(not torch.equal(pa, pc) for pa, pc in pairs)  # the regulariser did something
    losses = (tmp_path / "straight" / "metrics.csv").read_text()
    assert "nan" not in losses


def test_regulariser_refuses_a_single_level(tmp_path):
    from ncsn.errors import NCSNError

    cfg = _run(tmp_path, "one", ["train.fp_weight=0.1", "schedule.num_levels=1"])
    with pytest.raises(NCSNError, match="fp_weight"):
        train(cfg, progress=False, log=lambda m: None)


@pytest.mark.parametrize("sampler", ["ald", "pc", "ode", "churn"])
def test_every_sampler_runs_on_a_regularised_model(tmp_path, sampler):
    import numpy as np

    from ncsn.cli import main

    cfg = _run(tmp_path, "run", ["train.fp_weight=0.1", "train.fp_examples=4", "train.steps=2"])
    train(cfg, progress=False, log=lambda m: None)
    out = tmp_path / sampler
    argv = ["sample", str(tmp_path / "run"), "--sampler", sampler, "--n", "3", "--steps", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (3, 8, 8, 1)
