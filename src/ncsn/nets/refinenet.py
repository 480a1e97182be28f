"""The NCSN paper's network: a dilated RefineNet with conditional instance normalization++.

Song & Ermon 2019, Appendix B.1: a four-stage RefineNet (Lin et al. 2017) whose encoder is a
stack of pre-activation residual blocks, the last two stages with dilated convolutions (dilation 2
and 4) instead of further downsampling; a cascade of RefineBlocks (residual conv units,
multi-resolution fusion, chained residual pooling with average pooling) decodes back to the input
size. Every normalization is CondInstanceNorm++ conditioned on the noise-level *index* i, and the
non-linearity is ELU. Width ``ngf`` (64 for MNIST, 128 for CIFAR-10 / CelebA in the paper).

Because it is conditioned on the index, the network holds its training ladder (buffer ``sigmas``)
and maps each queried σ to the nearest level in log space; a σ farther than 1e-3 in log σ from
every level is refused (design.md §2: such a network only serves the ladder it was trained on).

Input: the network maps its input x ∈ [0, 1] to 2x − 1 first, as the paper's code does for data
without a logit transform.

Speed on the CPU (issue 19; same equations, docs/benchmarks.md): CondInstanceNorm++ is one fused
normalization kernel and the 5×5 mean pooling a depthwise convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ncsn.errors import NCSNError

LADDER_TOLERANCE = 1e-3  # largest |log σ − log σ_i| still mapped to level i


class CondInstanceNormPP(nn.Module):
    """Conditional instance normalization++ (Song & Ermon 2019, App. B.1):

    z_k = γ[i, k] (x_k − μ_k)/s_k + β[i, k] + α[i, k] (μ_k − m)/v,

    μ_k, s_k the spatial mean and standard deviation of channel k, m and v the mean and standard
    deviation of the μ_k over channels, i the noise-level index. The α term keeps the channel
    means (colour / brightness) that plain instance normalization would erase.
    """

    def __init__(self, channels: int, num_levels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Embedding(num_levels, channels)
        self.alpha = nn.Embedding(num_levels, channels)
        self.beta = nn.Embedding(num_levels, channels)
        # The paper's code starts the scales at N(1, 0.02²) and the shift at 0.
        nn.init.normal_(self.gamma.weight, 1.0, 0.02)
        nn.init.normal_(self.alpha.weight, 1.0, 0.02)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        # The α term needs only the channel means μ_k (in fp32 also under bf16 autocast); the
        # rest is one fused instance normalization with a per-example affine: x viewed as one
        # example of N·C channels, each its own group, scaled by γ[i, k] and shifted by
        # β[i, k] + α[i, k] (μ_k − m)/v: about 5× faster forward + backward on the CPU than
        # separate mean / var / divide kernels (issue 19).
        n, c, h, w = x.shape
        mu = x.mean(dim=(2, 3), dtype=torch.float32)
        v_squared, m = torch.var_mean(mu, dim=1, keepdim=True, unbiased=False)
        v = torch.sqrt(v_squared + self.eps)
        shift = self.beta(level) + self.alpha(level) * (mu - m) / v
        z = F.group_norm(
            x.reshape(1, n * c, h, w),
            n * c,
            self.gamma(level).reshape(-1),
            shift.reshape(-1),
            self.eps,
        )
        return z.view(n, c, h, w)


def _mean_pool5(x: torch.Tensor) -> torch.Tensor:
    """``F.avg_pool2d(x, 5, stride=1, padding=2)`` (zero padding counted in the mean), written as a
    depthwise convolution with a 5×5 box of ones, then ÷ 25: on the CPU the convolution runs it
    5–6× faster than the pooling kernel, forward + backward, fp32 and bf16 (issue 19)."""
    box = x.new_ones(x.shape[1], 1, 5, 5)
    return F.conv2d(x, box, padding=2, groups=x.shape[1]) / 25.0


def _conv3x3(c_in: int, c_out: int, dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=bias)


class _ResidualBlock(nn.Module):
    """Pre-activation residual block: (norm → ELU → conv) twice, plus a shortcut.

    ``down``: the second conv is followed by 2×2 mean pooling (halving H and W) unless the block
    is dilated; the paper's dilated stages keep the resolution and grow the receptive field.
    """

    def __init__(self, c_in: int, c_out: int, num_levels: int, down: bool = False, dilation=1):
        super().__init__()
        self.pool = down and dilation == 1
        self.norm1 = CondInstanceNormPP(c_in, num_levels)
        self.conv1 = _conv3x3(c_in, c_in if down else c_out, dilation)
        self.norm2 = CondInstanceNormPP(c_in if down else c_out, num_levels)
        self.conv2 = _conv3x3(c_in if down else c_out, c_out, dilation)
        self.shortcut = None
        if c_in != c_out or down:
            kernel = 1 if self.pool else 3
            padding = (kernel // 2) * dilation
            self.shortcut = nn.Conv2d(c_in, c_out, kernel, padding=padding, dilation=dilation)

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.elu(self.norm1(x, level)))
        h = self.conv2(F.elu(self.norm2(h, level)))
        skip = x if self.shortcut is None else self.shortcut(x)
        if self.pool:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        return skip + h


class _RCU(nn.Module):
    """Residual conv units: ``blocks`` × [x + (norm → ELU → conv) twice] (RefineNet's RCU)."""

    def __init__(self, channels: int, num_levels: int, blocks: int):
        super().__init__()
        self.norms = nn.ModuleList(
            CondInstanceNormPP(channels, num_levels) for _ in range(2 * blocks)
        )
        self.convs = nn.ModuleList(
            _conv3x3(channels, channels, bias=False) for _ in range(2 * blocks)
        )

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        for b in range(0, len(self.convs), 2):
            h = x
            for j in (b, b + 1):
                h = self.convs[j](F.elu(self.norms[j](h, level)))
            x = x + h
        return x


class _CRP(nn.Module):
    """Chained residual pooling: x = ELU(x); path ← conv(avgpool₅(norm(path))); x += path, twice."""

    def __init__(self, channels: int, num_levels: int, stages: int = 2):
        super().__init__()
        self.norms = nn.ModuleList(CondInstanceNormPP(channels, num_levels) for _ in range(stages))
        self.convs = nn.ModuleList(_conv3x3(channels, channels, bias=False) for _ in range(stages))

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        x = F.elu(x)
        path = x
        for norm, conv in zip(self.norms, self.convs, strict=True):
            path = conv(_mean_pool5(norm(path, level)))
            x = x + path
        return x


class _RefineBlock(nn.Module):
    """RefineNet block: RCUs on each input, multi-resolution fusion (norm → conv → bilinear
    resize to the finest input, summed), chained residual pooling, output RCUs."""

    def __init__(self, in_channels: list[int], channels: int, num_levels: int, end: bool = False):
        super().__init__()
        self.adapt = nn.ModuleList(_RCU(c, num_levels, 2) for c in in_channels)
        self.fuse_norms = nn.ModuleList()
        self.fuse_convs = nn.ModuleList()
        if len(in_channels) > 1:
            self.fuse_norms.extend(CondInstanceNormPP(c, num_levels) for c in in_channels)
            self.fuse_convs.extend(_conv3x3(c, channels) for c in in_channels)
        self.crp = _CRP(channels, num_levels)
        self.out = _RCU(channels, num_levels, 3 if end else 1)

    def forward(self, xs: list[torch.Tensor], level: torch.Tensor) -> torch.Tensor:
        hs = [rcu(x, level) for rcu, x in zip(self.adapt, xs, strict=True)]
        if len(hs) == 1:
            h = hs[0]
        else:
            size = xs[0].shape[-2:]
            h = sum(
                F.interpolate(conv(norm(x, level)), size=size, mode="bilinear", align_corners=True)
                for norm, conv, x in zip(self.fuse_norms, self.fuse_convs, hs, strict=True)
            )
        return self.out(self.crp(h, level), level)


class RefineNet(nn.Module):
    """x (N, C, H, W) in [0, 1], σ (N,) on the ladder → (N, C, H, W); H, W ≥ 2.

    The layout of the paper's code (``CondRefineNetDilated``).

    Encoder: conv → 2 residual blocks at ``ngf`` → 2 at 2·``ngf``, the first halving H and W →
    2 dilated (2) → 2 dilated (4). Decoder: RefineBlocks from the deepest stage back to the first,
    then CondInstanceNorm++ → ELU → conv.
    """

    def __init__(self, in_channels: int, sigmas: torch.Tensor | list[float], ngf: int = 64):
        super().__init__()
        # Checked as plain floats: the model may be built on the meta device (shape checks).
        values = [float(s) for s in torch.as_tensor(sigmas, device="cpu").flatten()]
        if not values or min(values) <= 0:
            raise NCSNError(f"RefineNet needs a ladder of positive σ values, got {values}")
        self.register_buffer("sigmas", torch.tensor(values, dtype=torch.float32))
        n, c2 = len(sigmas), 2 * ngf
        self.begin = nn.Conv2d(in_channels, ngf, 3, padding=1)
        self.stage1 = nn.ModuleList([_ResidualBlock(ngf, ngf, n), _ResidualBlock(ngf, ngf, n)])
        self.stage2 = nn.ModuleList(
            [_ResidualBlock(ngf, c2, n, down=True), _ResidualBlock(c2, c2, n)]
        )
        self.stage3 = nn.ModuleList(
            [
                _ResidualBlock(c2, c2, n, down=True, dilation=2),
                _ResidualBlock(c2, c2, n, dilation=2),
            ]
        )
        self.stage4 = nn.ModuleList(
            [
                _ResidualBlock(c2, c2, n, down=True, dilation=4),
                _ResidualBlock(c2, c2, n, dilation=4),
            ]
        )
        self.refine4 = _RefineBlock([c2], c2, n)
        self.refine3 = _RefineBlock([c2, c2], c2, n)
        self.refine2 = _RefineBlock([c2, c2], ngf, n)
        self.refine1 = _RefineBlock([ngf, ngf], ngf, n, end=True)
        self.norm_out = CondInstanceNormPP(ngf, n)
        self.end = nn.Conv2d(ngf, in_channels, 3, padding=1)

    def level_index(self, sigma: torch.Tensor) -> torch.Tensor:
        """Index of the ladder level nearest to each σ in log space; off-ladder σ is refused."""
        distance = (torch.log(sigma.float())[:, None] - torch.log(self.sigmas)[None, :]).abs()
        nearest, index = distance.min(dim=1)
        worst = int(nearest.argmax())
        if float(nearest[worst]) > LADDER_TOLERANCE:
            raise NCSNError(
                f"σ = {float(sigma[worst]):.6g} is not on this RefineNet's training ladder "
                f"({len(self.sigmas)} levels from {float(self.sigmas[0]):.6g} to "
                f"{float(self.sigmas[-1]):.6g}): RefineNet is conditioned on the level index and "
                "only serves its training ladder; use a continuous-σ network (model.net = unet) "
                "for samplers that query other σ"
            )
        return index

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        level = self.level_index(sigma)
        h = self.begin(2.0 * x - 1.0)
        skips = []
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4):
            for block in stage:
                h = block(h, level)
            skips.append(h)
        h = self.refine4([skips[3]], level)
        h = self.refine3([skips[2], h], level)
        h = self.refine2([skips[1], h], level)
        h = self.refine1([skips[0], h], level)
        return self.end(F.elu(self.norm_out(h, level)))
