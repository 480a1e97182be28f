"""The RefineNet's layers as they were before issue 19, kept as the reference for speed and
equality checks (not part of the package).

Two forward methods, verbatim from the former `ncsn.nets.refinenet`: CondInstanceNorm++ (Song &
Ermon 2019, App. B.1) as separate mean / var / sqrt / divide kernels, and chained residual pooling
with ``F.avg_pool2d``. Inside ``with reference_layers():`` every RefineNet runs them instead of
today's; parameters, initialization and state dicts are the same.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ncsn.nets import refinenet


def cond_instance_norm_pp(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """z_k = γ[i, k] (x_k − μ_k)/s_k + β[i, k] + α[i, k] (μ_k − m)/v, term by term."""
    mu = x.mean(dim=(2, 3), keepdim=True)
    s = torch.sqrt(x.var(dim=(2, 3), keepdim=True, unbiased=False) + self.eps)
    m = mu.mean(dim=1, keepdim=True)
    v = torch.sqrt(mu.var(dim=1, keepdim=True, unbiased=False) + self.eps)

    def per_level(table: nn.Embedding) -> torch.Tensor:
        return table(level)[:, :, None, None]

    return (
        per_level(self.gamma) * (x - mu) / s
        + per_level(self.beta)
        + per_level(self.alpha) * (mu - m) / v
    )


def chained_residual_pooling(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """x = ELU(x); path ← conv(avgpool₅(norm(path))); x += path, per stage."""
    x = F.elu(x)
    path = x
    for norm, conv in zip(self.norms, self.convs, strict=True):
        path = conv(F.avg_pool2d(norm(path, level), 5, stride=1, padding=2))
        x = x + path
    return x


@contextlib.contextmanager
def reference_layers():
    """Run every RefineNet with the former layers while inside; today's again after."""
    today = refinenet.CondInstanceNormPP.forward, refinenet._CRP.forward
    refinenet.CondInstanceNormPP.forward = cond_instance_norm_pp
    refinenet._CRP.forward = chained_residual_pooling
    try:
        yield
    finally:
        refinenet.CondInstanceNormPP.forward, refinenet._CRP.forward = today
