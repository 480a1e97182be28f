"""The optimizer and the EMA of the weights, both gated by the non-finite guard's ``skip`` flag.

Fused Adam takes the flag as ``found_inf`` (the protocol GradScaler uses), so its kernel leaves
weights, moments and step count untouched on a skipped step; the EMA moves by (1 − ema)·(1 − skip),
so not at all then. Both stay on the device: no host sync per step
(:mod:`ncsn.training.guard` sets the flag and counts what was skipped).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ncsn.config import TrainConfig


def adam(params: Iterable[torch.nn.Parameter], t: TrainConfig) -> torch.optim.Adam:
    """Adam with ``t``'s hyper-parameters, fused where the device has the kernel."""
    params = list(params)
    kwargs = {"lr": t.lr, "betas": (t.beta1, t.beta2), "weight_decay": t.weight_decay}
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except RuntimeError:  # no fused kernel for this device
        return torch.optim.Adam(params, **kwargs)


def optimizer_step(opt: torch.optim.Optimizer, skip: torch.Tensor) -> None:
    """``opt.step()`` unless ``skip`` (a 0-dim float tensor, 1.0 = skip) is set."""
    if opt.defaults.get("fused"):
        opt.found_inf = skip  # read by the fused kernel on the device
        opt.step()
    elif not skip.item():
        opt.step()


@torch.no_grad()
def ema_update(
    ema_params: list[torch.Tensor],
    params: list[torch.Tensor],
    rate: torch.Tensor,
    skip: torch.Tensor,
) -> None:
    """ema ← lerp(ema, θ, rate·(1 − skip)), with ``rate`` = 1 − train.ema on the device.

    The weight is a device scalar, which only the list form of ``_foreach_lerp_`` accepts: on
    the CPU it costs about what the scalar form does; on CUDA it runs one small kernel per
    parameter tensor instead of a fused multi-tensor kernel (still asynchronous).
    """
    weight = rate - rate * skip
    torch._foreach_lerp_(ema_params, params, [weight] * len(ema_params))
