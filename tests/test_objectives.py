import math

import pytest
import torch
from torch import nn

from ncsn.model import ScoreModel
from ncsn.objectives import dsm_loss, ssm_loss


class Scale(nn.Module):
    """net(x, σ) = a·x + b·log σ: simple enough to compute the loss by hand."""

    def __init__(self, a=0.7, b=0.3):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x, sigma):
        return self.a * x + self.b * torch.log(sigma).view(-1, *([1] * (x.dim() - 1)))


X = torch.tensor([[0.2, -0.4, 1.0], [1.5, 0.3, -0.2]])
SIGMAS = torch.tensor([2.0, 0.5, 0.1])


def _draws(seed):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(3, (2,), generator=g)
    z = torch.randn(X.shape, generator=g)
    return index, z


@pytest.mark.parametrize("parameterization", ["noise", "score_sigma", "denoiser"])
@pytest.mark.parametrize("input_scaling", [True, False])
@pytest.mark.parametrize("power", [2.0, 0.0])
def test_dsm_loss_equals_hand_computation(parameterization, input_scaling, power):
    model = ScoreModel(Scale(), parameterization, input_scaling=input_scaling, sigma_data=0.5)
    loss = dsm_loss(model, X, SIGMAS, generator=torch.Generator().manual_seed(3), power=power)
    index, z = _draws(3)
    total = 0.0
    for n in range(2):
        sigma = SIGMAS[index[n]].item()
        c_in = 1 / math.sqrt(sigma**2 + 0.25) if input_scaling else 1.0
        x_noisy = [X[n, d].item() + sigma * z[n, d].item() for d in range(3)]
        out = [0.7 * c_in * v + 0.3 * math.log(sigma) for v in x_noisy]
        if parameterization == "noise":
            score = [-o / sigma for o in out]
        elif parameterization == "score_sigma":
            score = [o / sigma for o in out]
        else:
            score = [(o - v) / sigma**2 for o, v in zip(out, x_noisy, strict=True)]
        sq = sum((score[d] + z[n, d].item() / sigma) ** 2 for d in range(3))
        total += sigma**power * 0.5 * sq
    assert loss.item() == pytest.approx(total / 2, rel=1e-5)


def test_noise_parameterization_with_sigma_squared_weight_is_noise_regression():
    model = ScoreModel(Scale(), "noise", input_scaling=False)
    loss = dsm_loss(model, X, SIGMAS, generator=torch.Generator().manual_seed(5))
    index, z = _draws(5)
    sigma = SIGMAS[index][:, None]
    predicted = 0.7 * (X + sigma * z) + 0.3 * torch.log(sigma)
    assert loss.item() == pytest.approx(
        (0.5 * (predicted - z).pow(2).sum(1)).mean().item(), rel=1e-5
    )


class Linear(nn.Module):
    """s(x) = −x / c exactly, so ∇ₓ·s = −D/c and the SSM objective is known in closed form."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x, sigma):
        return -x / self.c


def test_ssm_loss_equals_closed_form_for_a_linear_score():
    c = 2.0
    g = torch.Generator().manual_seed(0)
    loss = ssm_loss(Linear(c), X, SIGMAS, generator=g, power=0.0, projections=3)
    g = torch.Generator().manual_seed(0)
    index = torch.randint(3, (2,), generator=g)
    z = torch.randn(X.shape, generator=g)
    vs = [torch.randn(X.shape, generator=g) for _ in range(3)]
    x_noisy = X + SIGMAS[index][:, None] * z
    trace = sum(-(v * v).sum(1) / c for v in vs) / 3  # vᵀ ∇(vᵀ s) v = −‖v‖²/c
    expected = (trace + 0.5 * (x_noisy / c).pow(2).sum(1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_ssm_gradient_reaches_network_parameters():
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, sigma):
            return self.net(x)

    model = ScoreModel(Net(), "noise")
    loss = ssm_loss(model, X, SIGMAS, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("loss_fn", [dsm_loss, ssm_loss])
def test_shards_of_a_global_batch_average_to_the_global_loss(loss_fn):
    torch.manual_seed(0)
    model = ScoreModel(Scale(), "noise")
    x = torch.randn(8, 3)
    whole = loss_fn(model, x, SIGMAS, generator=torch.Generator().manual_seed(4))
    parts = [
        loss_fn(
            model, x.chunk(2)[r], SIGMAS, generator=torch.Generator().manual_seed(4), shard=(r, 2)
        )
        for r in range(2)
    ]
    assert whole.item() == pytest.approx(sum(p.item() for p in parts) / 2, rel=1e-6)
