import pytest
import torch

from ncsn.config import ModelConfig
from ncsn.errors import NCSNError
from ncsn.model import ScoreModel, build_model, count_parameters
from ncsn.nets.mlp import MLP
from ncsn.nets.unet import UNet


@pytest.mark.parametrize("parameterization", ["noise", "score_sigma", "denoiser"])
def test_denoise_is_tweedie_of_score(parameterization):
    torch.manual_seed(0)
    model = ScoreModel(MLP(3, 16, 2, 8), parameterization)
    x = torch.randn(4, 3)
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0])
    expected = x + sigma[:, None] ** 2 * model.score(x, sigma)
    assert torch.allclose(model.denoise(x, sigma), expected, atol=1e-6)


def test_scalar_sigma_broadcasts_to_every_example():
    torch.manual_seed(0)
    model = ScoreModel(MLP(2, 16, 2, 8))
    x = torch.randn(5, 2)
    assert torch.allclose(model.score(x, 0.3), model.score(x, torch.full((5,), 0.3)))


def test_unconditional_network_ignores_sigma_except_through_the_division():
    torch.manual_seed(0)
    model = ScoreModel(MLP(2, 16, 2, 8), "score_sigma", input_scaling=False, conditional=False)
    x = torch.randn(3, 2)
    assert torch.allclose(model.score(x, 0.5) * 0.5, model.score(x, 2.0) * 2.0, atol=1e-6)


@pytest.mark.parametrize("size", [7, 8, 28, 32])
def test_unet_keeps_shape_for_any_size(size):
    net = UNet(
        3,
        size,
        channels=8,
        channel_mult=(1, 2, 2),
        num_res_blocks=1,
        attention_resolutions=(size // 2,),
        groups=4,
        embedding_dim=8,
    )
    x = torch.randn(2, 3, size, size)
    assert net(x, torch.tensor([0.1, 2.0])).shape == x.shape


def test_unet_output_depends_on_sigma():
    torch.manual_seed(0)
    net = UNet(1, 8, channels=8, num_res_blocks=1, groups=4, embedding_dim=8)
    for p in net.parameters():  # zero-initialised output layers would hide the dependence
        p.data.normal_(0, 0.1)
    x = torch.randn(1, 1, 8, 8)
    assert not torch.allclose(net(x, torch.tensor([0.05])), net(x, torch.tensor([5.0])))


def test_build_model_checks_data_shape():
    with pytest.raises(NCSNError, match="mlp"):
        build_model(ModelConfig(net="unet"), (2,))
    with pytest.raises(NCSNError, match="unet"):
        build_model(ModelConfig(net="mlp"), (1, 8, 8))
    model = build_model(ModelConfig(net="mlp", hidden=32, layers=2, embedding_dim=8), (2,))
    assert count_parameters(model) > 0
