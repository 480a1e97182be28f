"""Expert networks over noise bands: K networks, each owning a contiguous band of the σ ladder.

Expert k answers every σ of its band; a σ between two bands (the ODE samplers query σ off the
ladder) goes to the band whose edge is nearer in log σ: the edge between the last level of one
band, σ_a, and the first level of the next, σ_b, sits at √(σ_a σ_b). The K networks replace the
one network inside a ScoreModel, so parameterization, input scaling, every sampler and the
checkpoint format are unchanged (the weights are ``net.experts.k.…``). The idea of splitting the
noise range between networks is eDiff-I's (Balaji et al. 2022, §4).

Bands are given by the index of each band's first level (``model.expert_bands``, ladder order
σ₁ > … > σ_L, starting with 0), or ``equal`` for bands of ⌈L/K⌉ levels; ``ncsn bands`` suggests
starts that give every band the same share of a trained model's loss (``split_by_loss``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ncsn.errors import NCSNError


def band_starts(bands, num_experts: int, num_levels: int) -> list[int]:
    """The first level index of each band, checked against the ladder."""
    if bands == "equal":
        if num_experts > num_levels:
            raise NCSNError(
                f"model.experts = {num_experts}: more experts than noise levels ({num_levels}); "
                "each expert needs at least one level"
            )
        return [math.ceil(k * num_levels / num_experts) for k in range(num_experts)]
    starts = [int(b) for b in bands]
    ok = (
        len(starts) == num_experts
        and starts[0] == 0
        and all(a < b for a, b in zip(starts, starts[1:], strict=False))
        and starts[-1] < num_levels
    )
    if not ok:
        raise NCSNError(
            f"model.expert_bands = {list(bands)}: expected 'equal' or {num_experts} increasing "
            f"level indices starting with 0 and below the number of levels ({num_levels}), "
            "one per expert (model.experts)"
        )
    return starts


def band_slices(starts: list[int], num_levels: int) -> list[slice]:
    return [slice(a, b) for a, b in zip(starts, [*starts[1:], num_levels], strict=True)]


class ExpertNet(nn.Module):
    """``net(x, σ)`` routed per example to the expert whose band holds σ."""

    def __init__(self, experts: list[nn.Module], sigmas, starts: list[int]):
        super().__init__()
        self.experts = nn.ModuleList(experts)
        sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
        self.starts = list(starts)
        # log-σ edge between band k-1's last level and band k's first level, k = 1..K-1
        edges = [0.5 * (sigmas[s - 1].log() + sigmas[s].log()) for s in starts[1:]]
        self.register_buffer("log_edges", torch.tensor(edges, dtype=torch.float32), False)

    def expert_of(self, sigma: torch.Tensor) -> torch.Tensor:
        """Index of the expert that answers each σ (bands ordered from the largest σ down)."""
        edges = self.log_edges.to(sigma.device)
        return (sigma.log().unsqueeze(-1) < edges).sum(-1)

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Examples sorted by expert, one call per expert on its contiguous share, then put back
        in order. One host sync per call (the shares' sizes), whatever K is. ``labels`` (class-
        conditional experts) travel with their examples."""
        which = self.expert_of(sigma)
        order = which.argsort(stable=True)
        sizes = torch.bincount(which, minlength=len(self.experts)).tolist()
        shares = [x[order].split(sizes), sigma[order].split(sizes)]
        if labels is not None:
            shares.append(labels[order].split(sizes))
        parts = [
            expert(*share)
            for expert, n, *share in zip(self.experts, sizes, *shares, strict=True)
            if n
        ]
        return torch.cat(parts).index_select(0, order.argsort())


def split_by_loss(losses, num_experts: int) -> list[int]:
    """Band starts that cut the per-level losses (ladder order) into ``num_experts`` contiguous
    bands of nearly equal total loss: band k starts at the first level where the cumulative loss
    passes k/K of the total (each band keeps at least one level)."""
    losses = [float(v) for v in losses]
    if num_experts > len(losses):
        raise NCSNError(f"{num_experts} experts need at least as many levels (got {len(losses)})")
    if any(not math.isfinite(v) or v < 0 for v in losses):
        raise NCSNError(f"per-level losses must be finite and ≥ 0, got {losses}")
    total = sum(losses) or 1.0
    cumulative, acc = [], 0.0
    for v in losses:
        cumulative.append(acc)  # loss of the levels before this one
        acc += v
    starts = [0]
    for k in range(1, num_experts):
        target = k * total / num_experts
        i = next((i for i, c in enumerate(cumulative) if c >= target), len(losses) - 1)
        i = max(i, starts[-1] + 1)  # non-empty bands
        i = min(i, len(losses) - (num_experts - k))  # room for the bands still to come
        starts.append(i)
    return starts
