"""A noise-conditional MLP for vector data (N, D), e.g. the 2-D toy distributions."""

from __future__ import annotations

import torch
from torch import nn

from ncsn.nets.embedding import LabelEmbedding, SigmaEmbedding


class MLP(nn.Module):
    """x (N, D), σ (N,) [, labels (N,)] → (N, D). Each hidden layer adds a projection of the σ
    embedding (plus the class embedding when ``num_classes`` > 0)."""

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        layers: int = 3,
        embedding_dim: int = 128,
        num_classes: int = 0,
    ):
        super().__init__()
        self.embed = SigmaEmbedding(embedding_dim)
        self.inp = nn.Linear(dim, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.cond = nn.ModuleList(nn.Linear(self.embed.out_dim, hidden) for _ in range(layers))
        self.out = nn.Linear(hidden, dim)
        self.act = nn.SiLU()
        self.label_embed = LabelEmbedding(num_classes, self.embed.out_dim) if num_classes else None

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        emb = self.embed(sigma)
        emb = self.act(emb if self.label_embed is None else self.label_embed(emb, labels))
        h = self.act(self.inp(x) + self.cond[0](emb))
        for layer, cond in zip(self.hidden, self.cond[1:], strict=True):
            h = self.act(layer(h) + cond(emb))
        return self.out(h)
