"""A compact noise-conditional U-Net for images (N, C, H, W).

The DDPM/NCSN++ layout (Ho et al. 2020, App. B; Song et al. 2021): residual blocks with GroupNorm
and SiLU, the σ embedding added inside every block, self-attention at the resolutions listed in
``attention_resolutions``, skip connections from every down-path block to the up path. Any image
size works: the up path resizes to each skip's size, so odd sizes such as 7×7 are fine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ncsn.nets.embedding import LabelEmbedding, SigmaEmbedding


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class ResBlock(nn.Module):
    """GN → SiLU → conv, + embedding, GN → SiLU → dropout → conv, + skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = _norm(c_out, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over pixels, residual (Ho et al. 2020)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


class UNet(nn.Module):
    """x (N, C, H, W), σ (N,) [, labels (N,)] → (N, C, H, W); with ``num_classes`` > 0 a class
    embedding is added to the σ embedding (:class:`LabelEmbedding`)."""

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (),
        dropout: float = 0.0,
        groups: int = 8,
        embedding_dim: int = 128,
        num_classes: int = 0,
    ):
        super().__init__()
        self.embed = SigmaEmbedding(embedding_dim)
        emb_dim = self.embed.out_dim
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)

        def block(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(c_in, c_out, emb_dim, groups, dropout)

        self.down = nn.ModuleList()
        skips, c, size = [channels], channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                attn = Attention(channels * mult, groups) if size in attention_resolutions else None
                self.down.append(nn.ModuleList([block(c, channels * mult), attn]))
                c = channels * mult
                skips.append(c)
            if level < len(channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skips.append(c)
                size = (size + 1) // 2
        self.mid1, self.mid2 = block(c, c), block(c, c)
        self.mid_attn = Attention(c, groups) if size in attention_resolutions else nn.Identity()

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                attn = Attention(channels * mult, groups) if size in attention_resolutions else None
                self.up.append(nn.ModuleList([block(c + skips.pop(), channels * mult), attn]))
                c = channels * mult
            if level > 0:
                self.up.append(nn.ModuleList([nn.Conv2d(c, c, 3, padding=1)]))
                size = size * 2
        self.norm_out = _norm(c, groups)
        self.conv_out = nn.Conv2d(c, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.label_embed = LabelEmbedding(num_classes, emb_dim) if num_classes else None

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        emb = self.embed(sigma)
        emb = F.silu(emb if self.label_embed is None else self.label_embed(emb, labels))
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            if len(layer) == 1:  # downsample
                h = layer[0](h)
            else:
                h = layer[0](h, emb)
                if layer[1] is not None:
                    h = layer[1](h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for layer in self.up:
            if len(layer) == 1:  # upsample to the size of the next skip
                h = layer[0](F.interpolate(h, size=hs[-1].shape[-2:], mode="nearest"))
            else:
                h = layer[0](torch.cat([h, hs.pop()], dim=1), emb)
                if layer[1] is not None:
                    h = layer[1](h)
        return self.conv_out(F.silu(self.norm_out(h)))
