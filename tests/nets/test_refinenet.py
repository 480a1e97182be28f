"""RefineNet (Song & Ermon 2019, App. B.1): shapes, level conditioning, the ladder guard."""

import pytest
import torch

from ncsn import config
from ncsn.config import ModelConfig
from ncsn.errors import NCSNError
from ncsn.model import build_model, count_parameters
from ncsn.nets.refinenet import CondInstanceNormPP, RefineNet
from ncsn.objectives import dsm_loss
from ncsn.schedule import geometric_sigmas

SIGMAS = torch.tensor(geometric_sigmas(1.0, 0.01, 10))


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_output_has_the_input_shape(channels, size):
    torch.manual_seed(0)
    net = RefineNet(channels, SIGMAS, ngf=4)
    x = torch.rand(2, channels, size, size)
    assert net(x, SIGMAS[[0, 9]]).shape == x.shape


def test_output_depends_on_the_level():
    torch.manual_seed(0)
    net = RefineNet(1, SIGMAS, ngf=4)
    for p in net.parameters():  # the N(1, 0.02) initial scales hardly differ between levels
        p.data.normal_(0, 0.3)
    x = torch.rand(1, 1, 8, 8)
    assert not torch.allclose(net(x, SIGMAS[[0]]), net(x, SIGMAS[[5]]))


def test_sigma_within_tolerance_maps_to_its_level():
    net = RefineNet(1, SIGMAS, ngf=4)
    sigma = torch.tensor([float(SIGMAS[3]) * (1 + 5e-4), float(SIGMAS[7])])
    assert net.level_index(sigma).tolist() == [3, 7]


def test_sigma_off_the_ladder_is_refused():
    net = RefineNet(1, SIGMAS, ngf=4)
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(NCSNError, match="only serves its training ladder"):
        net(x, torch.tensor([float(SIGMAS[2]), 0.05]))


def test_cond_instance_norm_pp_matches_the_paper_equation():
    torch.manual_seed(0)
    norm = CondInstanceNormPP(3, 2)
    for table in (norm.gamma, norm.alpha, norm.beta):
        table.weight.data.normal_()
    x = torch.randn(2, 3, 5, 5)
    level = torch.tensor([1, 0])
    mu = x.mean((2, 3), keepdim=True)
    s = x.std((2, 3), unbiased=False, keepdim=True)
    m, v = mu.mean(1, keepdim=True), mu.std(1, unbiased=False, keepdim=True)
    g, a, b = (t.weight[level][:, :, None, None] for t in (norm.gamma, norm.alpha, norm.beta))
    expected = g * (x - mu) / s + b + a * (mu - m) / v
    assert torch.allclose(norm(x, level), expected, atol=1e-3)


def test_build_model_needs_the_ladder_and_counts_parameters(capsys):
    cfg = ModelConfig(net="refinenet", ngf=64, input_scaling=False)
    with pytest.raises(NCSNError, match="needs the training ladder"):
        build_model(cfg, (1, 28, 28))
    model = build_model(cfg, (1, 28, 28), SIGMAS.tolist())
    n = count_parameters(model)
    print(f"RefineNet, ngf 64, 10 levels, MNIST: {n:,} parameters")
    assert "parameters" in capsys.readouterr().out
    assert 5_000_000 < n < 10_000_000


def test_config_refuses_an_unconditional_refinenet():
    from ncsn.config import from_dict

    with pytest.raises(NCSNError, match="model.conditional"):
        from_dict({"model": {"net": "refinenet", "conditional": False}})
    assert from_dict({"model": {"net": "refinenet", "ngf": 8}}).model.ngf == 8


def test_a_training_step_updates_the_weights():
    torch.manual_seed(0)
    cfg = ModelConfig(net="refinenet", ngf=4, input_scaling=False)
    model = build_model(cfg, (1, 8, 8), SIGMAS.tolist())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(4, 1, 8, 8)
    gen = torch.Generator().manual_seed(0)
    before = [p.detach().clone() for p in model.parameters()]
    loss = dsm_loss(model, x, SIGMAS, generator=gen)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_train_and_load_run_keep_the_ladder(tmp_path):
    from ncsn.samplers.langevin import annealed_langevin
    from ncsn.training.loop import train
    from ncsn.training.state import load_run

    cfg = config.from_dict(
        {
            "data": {"name": "digits"},
            "schedule": {"sigma_max": 1.0, "num_levels": 3, "step_size": 1e-5},
            "model": {"net": "refinenet", "ngf": 4, "input_scaling": False},
            "train": {"steps": 2, "batch_size": 8, "preview_every": 0, "log_every": 1},
            "run_dir": str(tmp_path / "run"),
        }
    )
    train(cfg, progress=False, log=lambda *_: None)
    model, sched, _, _ = load_run(tmp_path / "run", log=lambda *_: None)
    assert model.net.sigmas.tolist() == pytest.approx(sched.sigmas)
    gen = torch.Generator().manual_seed(0)
    x = annealed_langevin(
        model, (2, 1, 8, 8), sched.sigmas, generator=gen, eps=1e-5, n_steps_each=1
    )
    assert torch.isfinite(x).all()
