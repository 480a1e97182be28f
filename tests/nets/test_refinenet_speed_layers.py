"""Issue 19: the fast RefineNet layers compute what the former ones did (benchmarks/
refinenet_reference.py keeps those): same outputs and gradients in fp32 on fixed inputs, and the
same short training loss curve within bf16 tolerance."""

import contextlib
import copy
import runpy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ncsn.config import ModelConfig
from ncsn.model import build_model
from ncsn.nets.refinenet import CondInstanceNormPP, RefineNet, _mean_pool5
from ncsn.objectives import dsm_loss
from ncsn.schedule import geometric_sigmas

REFERENCE = runpy.run_path(
    str(Path(__file__).resolve().parents[2] / "benchmarks" / "refinenet_reference.py")
)
SIGMAS = torch.tensor(geometric_sigmas(1.0, 0.01, 10))


def _grads(tensors):
    return [t.grad.clone() for t in tensors]


def test_cond_instance_norm_pp_has_the_reference_output_and_gradients():
    torch.manual_seed(0)
    norm = CondInstanceNormPP(6, 3)
    for table in (norm.gamma, norm.alpha, norm.beta):
        table.weight.data.normal_()
    x = (3.0 * torch.randn(4, 6, 7, 7) + torch.randn(1, 6, 1, 1)).requires_grad_()
    level = torch.tensor([2, 0, 1, 2])
    weight = torch.randn(4, 6, 7, 7)
    results = []
    for layers in (contextlib.nullcontext, REFERENCE["reference_layers"]):
        x.grad = None
        norm.zero_grad()
        with layers():
            out = norm(x, level)
        (out * weight).sum().backward()
        results.append([out.detach(), x.grad.clone(), *_grads(norm.parameters())])
    for new, old in zip(*results, strict=True):
        torch.testing.assert_close(new, old, rtol=1e-4, atol=1e-5)


def test_mean_pool5_is_the_5x5_average_pool_with_its_gradient():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    weight = torch.randn(2, 3, 9, 9)
    outs = []
    for pool in (_mean_pool5, lambda x: F.avg_pool2d(x, 5, stride=1, padding=2)):
        x.grad = None
        out = pool(x)
        (out * weight).sum().backward()
        outs.append((out.detach(), x.grad.clone()))
    for new, old in zip(*outs, strict=True):
        torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-6)


def test_refinenet_has_the_reference_output_and_gradients():
    torch.manual_seed(0)
    net = RefineNet(1, SIGMAS, ngf=8)
    for p in net.parameters():  # away from the near-identity initial scales
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.rand(3, 1, 12, 12)
    sigma = SIGMAS[[0, 4, 9]]
    results = []
    for layers in (contextlib.nullcontext, REFERENCE["reference_layers"]):
        net.zero_grad()
        with layers():
            out = net(x, sigma)
        out.square().mean().backward()
        results.append([out.detach(), *_grads(net.parameters())])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def _loss_curve(model, precision: str, steps: int = 6) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 12, 12, generator=gen)
    curve = []
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = dsm_loss(model, x, SIGMAS, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(float(loss.detach()))
    return curve


def test_short_training_loss_curve_matches_the_reference_within_bf16_tolerance():
    torch.manual_seed(0)
    cfg = ModelConfig(net="refinenet", ngf=8, input_scaling=False)
    model = build_model(cfg, (1, 12, 12), SIGMAS.tolist())
    with REFERENCE["reference_layers"]():
        old_fp32 = _loss_curve(copy.deepcopy(model), "fp32")
    new_fp32 = _loss_curve(copy.deepcopy(model), "fp32")
    new_bf16 = _loss_curve(model, "bf16")
    assert new_fp32 == pytest.approx(old_fp32, rel=1e-4)
    assert new_bf16 == pytest.approx(old_fp32, rel=3e-2)
