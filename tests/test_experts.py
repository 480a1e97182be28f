"""Expert networks over noise bands: routing, identical experts = one network, band-wise
training, checkpoints, and every sampler on an expert model."""

import ast
import copy

import numpy as np
import pytest
import torch
from tiny import TINY_UNET

from ncsn import config
from ncsn.errors import NCSNError
from ncsn.model import build_model
from ncsn.nets.experts import ExpertNet, band_slices, band_starts, split_by_loss
from ncsn.objectives import dsm_per_level
from ncsn.training.loop import train
from ncsn.training.state import load_run

SIGMAS = torch.logspace(0, -2, 9).tolist()  # 1 … 0.01, ratio 10^(1/4) between neighbours


def test_band_starts_equal_and_explicit():
    assert band_starts("equal", 3, 9) == [0, 3, 6]
    assert band_starts("equal", 4, 9) == [0, 3, 5, 7]
    assert band_starts([0, 2, 7], 3, 9) == [0, 2, 7]
    assert [(s.start, s.stop) for s in band_slices([0, 2, 7], 9)] == [(0, 2), (2, 7), (7, 9)]
    for bad in ([1, 2, 7], [0, 7, 2], [0, 2, 9], [0, 2]):
        with pytest.raises(NCSNError, match="expert_bands"):
            band_starts(bad, 3, 9)
    with pytest.raises(NCSNError, match="more experts than noise levels"):
        band_starts("equal", 10, 9)


def test_routing_follows_the_bands_on_and_off_the_ladder():
    net = ExpertNet([torch.nn.Identity()] * 3, SIGMAS, [0, 2, 7])
    on_ladder = net.expert_of(torch.tensor(SIGMAS))
    assert on_ladder.tolist() == [0, 0, 1, 1, 1, 1, 1, 2, 2]
    # the edge between σ₂ and σ₃ (indices 1, 2) is their geometric mean
    edge = (SIGMAS[1] * SIGMAS[2]) ** 0.5
    off = net.expert_of(torch.tensor([5.0, edge * 1.01, edge / 1.01, 1e-4]))
    assert off.tolist() == [0, 0, 1, 2]


class Tagged(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x, sigma):
        return torch.full_like(x, float(self.k)) + 0 * sigma.view(-1, 1)


def test_each_example_goes_to_its_expert():
    net = ExpertNet([Tagged(k) for k in range(3)], SIGMAS, [0, 2, 7])
    sigma = torch.tensor([SIGMAS[i] for i in (8, 0, 3, 1, 7)])
    out = net(torch.zeros(5, 2), sigma)
    assert out[:, 0].tolist() == [2, 0, 1, 0, 2]


def _model_cfg(extra=()):
    cfg = config.load(None, [*TINY_UNET, "model.dropout=0.0", *extra])
    return cfg.model


def test_identical_experts_equal_the_single_network():
    torch.manual_seed(0)
    single = build_model(_model_cfg(), (1, 8, 8), SIGMAS).eval()
    with torch.no_grad():  # the output layer starts at zero: give every weight a random value
        for p in single.parameters():
            p.normal_(0.0, 0.2)
    experts = build_model(_model_cfg(["model.experts=3"]), (1, 8, 8), SIGMAS).eval()
    for expert in experts.net.experts:
        expert.load_state_dict(single.net.state_dict())
    x = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor(SIGMAS + [3.0, 0.2, 0.005])
    with torch.no_grad():
        torch.testing.assert_close(experts(x, sigma), single(x, sigma), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            experts.denoise(x, 0.3), single.denoise(x, 0.3), rtol=1e-5, atol=1e-5
        )
    assert single(x, sigma).abs().mean() > 0.1  # not a comparison of zeros
    # one changed expert changes exactly its band's outputs
    with torch.no_grad():
        experts.net.experts[1].conv_out.bias.add_(1.0)
        changed = (experts(x, sigma) != single(x, sigma)).flatten(1).any(1)
    assert changed.tolist() == (experts.net.expert_of(sigma) == 1).tolist()


def test_split_by_loss():
    assert split_by_loss([1.0] * 8, 4) == [0, 2, 4, 6]
    assert split_by_loss([6.0, 1, 1, 1, 1, 1, 1], 2) == [0, 1]
    assert split_by_loss([0, 0, 0, 0, 5.0, 5.0], 2) == [0, 5]
    assert split_by_loss([10.0, 0, 0], 3) == [0, 1, 2]  # every band keeps a level
    with pytest.raises(NCSNError):
        split_by_loss([1.0, float("nan")], 2)


def test_dsm_per_level_of_the_exact_denoiser_is_the_irreducible_one():
    """For data at a single point the exact score is −(x − μ)/σ², whose DSM loss is 0."""
    mu = torch.zeros(64, 3)

    def exact(x, sigma):
        return -(x - mu) / sigma.view(-1, 1) ** 2

    losses = dsm_per_level(exact, mu, [2.0, 1.0], generator=torch.Generator().manual_seed(0))
    assert max(losses) < 1e-10


def _cfg(tmp_path, name, extra=()):
    sets = [
        *TINY_UNET,
        "data.name=digits",
        "schedule.num_levels=6",
        "model.experts=2",
        "train.batch_size=8",
        "train.steps=4",
        "train.checkpoint_every=2",
        f"run_dir={tmp_path / name}",
        *extra,
    ]
    return config.load(None, sets)


def test_band_training_changes_only_that_expert_and_resumes(tmp_path):
    quiet = {"progress": False, "log": lambda m: None}
    train(_cfg(tmp_path, "run", ["train.band=0", "train.steps=2"]), **quiet)
    after0, *_ = load_run(tmp_path / "run", ema=False, log=lambda m: None)
    train(_cfg(tmp_path, "run", ["train.band=1", "train.steps=4"]), **quiet)
    after1, *_ = load_run(tmp_path / "run", ema=False, log=lambda m: None)
    e0 = lambda m, k: torch.cat([p.flatten() for p in m.net.experts[k].parameters()])  # noqa: E731
    assert torch.equal(e0(after0, 0), e0(after1, 0))  # expert 0 untouched by band 1
    assert not torch.equal(e0(after0, 1), e0(after1, 1))
    # joint training resumed from a checkpoint equals a straight run
    train(_cfg(tmp_path, "straight"), **quiet)
    train(_cfg(tmp_path, "resumed", ["train.steps=2"]), **quiet)
    train(_cfg(tmp_path, "resumed"), **quiet)
    a, *_ = load_run(tmp_path / "straight", log=lambda m: None)
    b, *_ = load_run(tmp_path / "resumed", log=lambda m: None)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("sampler", ["ald", "pc", "ode", "churn"])
def test_every_sampler_runs_on_an_expert_model(tmp_path, sampler, capsys):
    from ncsn.cli import main

    run = tmp_path / "run"
    train(_cfg(tmp_path, "run", ["train.steps=2"]), progress=False, log=lambda m: None)
    out = tmp_path / sampler
    args = ["sample", str(run), "--sampler", sampler, "--n", "4", "--steps", "2", "--out", str(out)]
    assert main(args) in (0, None)
    first = (out / "samples.npz").read_bytes()
    assert np.load(out / "samples.npz")["images"].shape[0] == 4
    main(args)
    assert (out / "samples.npz").read_bytes() == first  # same seed, same bytes


def test_expert_model_is_one_checkpoint(tmp_path):
    train(_cfg(tmp_path, "run", ["train.steps=2"]), progress=False, log=lambda m: None)
    model, sched, cfg, meta = load_run(tmp_path / "run", log=lambda m: None)
    assert cfg.model.experts == 2 and len(model.net.experts) == 2
    ref = copy.deepcopy(model)
    assert sum(p.numel() for p in ref.parameters()) == meta["parameters"]


def test_bands_command_prints_equal_loss_starts(tmp_path, capsys):
    from ncsn.cli import main

    single = _cfg(tmp_path, "single", ["model.experts=1", "train.steps=2"])
    train(single, progress=False, log=lambda m: None)
    assert main(["bands", str(tmp_path / "single"), "--experts", "3", "--examples", "16"]) == 0
    out = capsys.readouterr().out
    line = [w for w in out.splitlines() if w.startswith("model.expert_bands=")][0]
    starts = ast.literal_eval(line.split("=", 1)[1])
    assert len(starts) == 3 and starts[0] == 0 and starts == sorted(set(starts))
    assert out.count("level ") == 6
    assert main(["bands", str(tmp_path / "single"), "--experts", "1"]) == 2
