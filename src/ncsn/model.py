"""ScoreModel: a network plus a parameterization, exposing ``score(x, σ)`` and ``denoise(x, σ)``.

Every parameterization writes the same s_θ differently (design.md §1); with F the raw network
output on the scaled input c_in·x:
- ``noise`` (default): F predicts the noise z of x̃ = x + σz, s = −F/σ (λ = σ² makes the DSM
  loss ½‖F − z‖², Song & Ermon 2019 §4.2 with Vincent 2011);
- ``score_sigma``: s = F/σ, NCSNv2 technique 3 (there with an unconditional F; set
  ``conditional=False`` to reproduce that);
- ``denoiser``: F predicts the clean data, s = (F − x)/σ² (Tweedie: D(x, σ) = x + σ² s);
- ``edm``: the preconditioned denoiser of Karras et al. 2022 (EDM, Eq. 7 and Table 1),
  D = c_skip·x + c_out·F(c_in·x) with c_skip = σ_d²/(σ² + σ_d²), c_out = σσ_d/√(σ² + σ_d²),
  c_in = 1/√(σ² + σ_d²) (always on), and s = (D − x)/σ². EDM's c_noise = ¼ ln σ is our
  networks' own embedding of ln σ (nets/embedding.py: sinusoids of ln σ and an MLP), which an
  affine map of ln σ would only rescale.
- ``consistency``: a consistency function f(x, σ) = c_skip·x + c_out·F(c_in·x) (Song et al. 2023,
  "Consistency Models", §3 and App. C) with c_skip = σ_d²/((σ − σ_min)² + σ_d²),
  c_out = (σ − σ_min)σ_d/√(σ² + σ_d²): f(x, σ_min) = x exactly (the boundary condition), and for
  σ ≫ σ_min these are EDM's, so a trained edm network starts it (``ncsn distill``, ECT).
  σ_min is the training ladder's σ_L. ``denoise`` returns f (where the consistency sampler
  jumps); ``score`` is (f − x)/σ², defined but not a score the ODE samplers should follow.
Input scaling (on by default): the network sees c_in·x with c_in = 1/√(σ² + σ_data²)
(Karras et al. 2022, Eq. 7), so its input has roughly unit variance at every level.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ncsn.errors import NCSNError
from ncsn.nets.experts import ExpertNet, band_starts
from ncsn.nets.mlp import MLP
from ncsn.nets.refinenet import RefineNet
from ncsn.nets.unet import UNet
from ncsn.schedule import append_dims, sigma_batch

PARAMETERIZATIONS = ("noise", "score_sigma", "denoiser", "edm", "consistency")
PRECONDITIONED = ("edm", "consistency")  # D (or f) = c_skip·x + c_out·F(c_in·x)


class ScoreModel(nn.Module):
    """Wraps a network ``net(x, σ)`` into the score s_θ(x, σ) ≈ ∇ₓ log p_σ(x)."""

    def __init__(
        self,
        net: nn.Module,
        parameterization: str = "noise",
        *,
        input_scaling: bool = True,
        sigma_data: float = 0.5,
        conditional: bool = True,
        num_classes: int = 0,
        sigma_min: float = 0.0,
    ):
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise NCSNError(
                f"model.parameterization = {parameterization!r}: "
                f"expected one of {PARAMETERIZATIONS}"
            )
        self.net = net
        self.parameterization = parameterization
        self.input_scaling = input_scaling
        self.sigma_data = sigma_data
        self.conditional = conditional
        self.num_classes = num_classes
        self.sigma_min = sigma_min  # the consistency boundary σ_min

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | float, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.score(x, sigma, labels)

    def score(
        self, x: torch.Tensor, sigma: torch.Tensor | float, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """s_θ(x, σ) or, for a class-conditional model (``num_classes`` > 0), s_θ(x, σ, y) with
        ``labels`` y (N,) in 0…K−1, K meaning "no label" (also what None means); ``sigma`` is a
        scalar or one value per example, shape (N,)."""
        sigma = sigma_batch(sigma, x)
        s = append_dims(sigma, x.dim())
        if self.parameterization in PRECONDITIONED:
            return (self._edm_denoise(x, sigma, s, labels) - x) / (s * s)
        out = self._network(x, sigma, s, labels)
        if self.parameterization == "noise":
            return -out / s
        if self.parameterization == "score_sigma":
            return out / s
        return (out - x) / (s * s)

    def denoise(
        self, x: torch.Tensor, sigma: torch.Tensor | float, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """D(x, σ) = x + σ² s_θ(x, σ), the posterior mean E[x₀ | x̃ = x] (Tweedie's formula);
        the edm parameterization returns its D directly, the consistency one f(x, σ)."""
        sigma = sigma_batch(sigma, x)
        s = append_dims(sigma, x.dim())
        if self.parameterization in PRECONDITIONED:
            return self._edm_denoise(x, sigma, s, labels)
        return x + s * s * self.score(x, sigma, labels)

    def _edm_denoise(self, x, sigma, s, labels) -> torch.Tensor:
        """D = c_skip·x + c_out·F(c_in·x) (Karras et al. 2022, Eq. 7; Table 1's c_skip, c_out);
        for a consistency model σ − σ_min in c_skip's and c_out's numerators (Song et al. 2023,
        App. C), so that c_skip(σ_min) = 1 and c_out(σ_min) = 0."""
        d2 = self.sigma_data**2
        u = s - self.sigma_min if self.parameterization == "consistency" else s
        c_skip = d2 / (u * u + d2)
        c_out = u * self.sigma_data * torch.rsqrt(s * s + d2)
        return c_skip * x + c_out * self._network(x, sigma, s, labels, scale=True)

    def _network(self, x, sigma, s, labels, scale: bool = False) -> torch.Tensor:
        """F, the network's output on c_in·x (c_in = 1/√(σ² + σ_data²) with input scaling)."""
        c_in = torch.rsqrt(s * s + self.sigma_data**2) if scale or self.input_scaling else 1.0
        net_sigma = sigma if self.conditional else torch.ones_like(sigma)
        if self.num_classes:
            return self.net(x * c_in, net_sigma, labels)
        if labels is not None:
            raise NCSNError("labels given, but the model is not class-conditional "
                            "(model.num_classes = 0)")  # fmt: skip
        return self.net(x * c_in, net_sigma)


def build_model(cfg, data_shape: tuple[int, ...], sigmas=None) -> ScoreModel:
    """The ScoreModel a ModelConfig describes, for examples of shape (C, H, W) or (D,).

    ``sigmas`` is the training ladder; ``model.net = 'refinenet'`` needs it (it is conditioned on
    the level index and only serves that ladder), and so do ``model.experts`` > 1 (the bands are
    level ranges); the other networks ignore it.
    """
    if cfg.sigma_data == "auto":
        raise NCSNError(
            "model.sigma_data = 'auto': measured from the training data when training starts; "
            "build_model needs the number (see ncsn.training.data_prep.resolve_sigma_data)"
        )
    if cfg.experts > 1:
        if sigmas is None:
            raise NCSNError("model.experts > 1: build_model needs the training ladder (sigmas)")
        starts = band_starts(cfg.expert_bands, cfg.experts, len(sigmas))
        net = ExpertNet([_network(cfg, data_shape, sigmas) for _ in starts], sigmas, starts)
    else:
        net = _network(cfg, data_shape, sigmas)
    return ScoreModel(
        net,
        cfg.parameterization,
        input_scaling=cfg.input_scaling,
        sigma_data=cfg.sigma_data,
        conditional=cfg.conditional,
        num_classes=cfg.num_classes,
        sigma_min=_boundary(cfg, sigmas),
    )


def _boundary(cfg, sigmas) -> float:
    """σ_min of a consistency model: the training ladder's smallest level (0 otherwise)."""
    if cfg.parameterization != "consistency":
        return 0.0
    if sigmas is None:
        raise NCSNError("model.parameterization = 'consistency': build_model needs the ladder "
                        "(sigmas), whose σ_L is the boundary σ_min")  # fmt: skip
    return float(min(sigmas))


def _network(cfg, data_shape: tuple[int, ...], sigmas) -> nn.Module:
    if cfg.net == "mlp":
        if len(data_shape) != 1:
            raise NCSNError(
                f"model.net = 'mlp' needs vector data (N, D); the data set has examples of shape "
                f"{tuple(data_shape)}: use model.net = 'unet' for images"
            )
        net = MLP(data_shape[0], cfg.hidden, cfg.layers, cfg.embedding_dim, cfg.num_classes)
    elif cfg.net == "unet":
        if len(data_shape) != 3:
            raise NCSNError(
                f"model.net = 'unet' needs images (N, C, H, W); the data set has examples of shape "
                f"{tuple(data_shape)}: use model.net = 'mlp' for vectors"
            )
        c, h, w = data_shape
        net = UNet(
            c,
            min(h, w),
            cfg.channels,
            tuple(cfg.channel_mult),
            cfg.num_res_blocks,
            tuple(cfg.attention_resolutions),
            cfg.dropout,
            cfg.groups,
            cfg.embedding_dim,
            cfg.num_classes,
        )
    elif cfg.net == "refinenet":
        if len(data_shape) != 3:
            raise NCSNError(
                f"model.net = 'refinenet' needs images (N, C, H, W); the data set has examples of "
                f"shape {tuple(data_shape)}: use model.net = 'mlp' for vectors"
            )
        if sigmas is None:
            raise NCSNError(
                "model.net = 'refinenet' is conditioned on the noise-level index: build_model "
                "needs the training ladder (sigmas)"
            )
        net = RefineNet(data_shape[0], sigmas, cfg.ngf)
    else:
        raise NCSNError(f"model.net = {cfg.net!r}: expected 'unet', 'refinenet' or 'mlp'")
    return net


def check_training_memory(cfg, data_shape: tuple[int, ...], num_levels: int, device) -> int:
    """The parameter count of the model ``cfg`` describes (built on the ``meta`` device, so
    nothing is allocated); an NCSNError when training it plainly cannot fit: weights, gradients,
    EMA and Adam's two moments take 5 × 4 bytes per parameter, before any activation."""
    sigmas = [1.0] * num_levels  # the ladder's values do not change the architecture
    with torch.device("meta"):
        n = count_parameters(build_model(cfg, data_shape, sigmas))
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if 20 * n > total:
        raise NCSNError(
            f"model: {n:,} parameters need about {20 * n / 2**30:,.1f} GiB to train (weights, "
            f"gradients, EMA, Adam moments) and {device} has {total / 2**30:,.1f} GiB: lower "
            "model.channels (or model.ngf, model.hidden, model.layers, model.experts)"
        )
    return n


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
