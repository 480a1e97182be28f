"""A noise-conditional MLP for vector data (N, D), e.g. the 2-D toy distributions."""

from __future__ import annotations

import torch
from torch import nn

from ncsn.nets.embedding import SigmaEmbedding


class MLP(nn.Module):
    """x (N, D), σ (N,) → (N, D). Each hidden layer adds a projection of the σ embedding."""

    def __init__(self, dim: int, hidden: int = 256, layers: int = 3, embedding_dim: int = 128):
        super().__init__()
        self.embed = SigmaEmbedding(embedding_dim)
        self.inp = nn.Linear(dim, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.cond = nn.ModuleList(nn.Linear(self.embed.out_dim, hidden) for _ in range(layers))
        self.out = nn.Linear(hidden, dim)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        emb = self.act(self.embed(sigma))
        h = self.act(self.inp(x) + self.cond[0](emb))
        for layer, cond in zip(self.hidden, self.cond[1:], strict=True):
            h = self.act(layer(h) + cond(emb))
        return self.out(h)
