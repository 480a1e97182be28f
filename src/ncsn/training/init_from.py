"""A run that starts from another run (``train.init_from``): that run's EMA weights as this
run's first weights, and, for ``train.ect_pair = teacher`` (``ncsn distill``), as the frozen
teacher whose ODE steps make the consistency-distillation pairs (ncsn.consistency)."""

from __future__ import annotations

import torch

from ncsn.errors import NCSNError
from ncsn.training import state


def _load(source: str, shape, log, device="cpu"):
    model, _, _, meta = state.load_run(source, ema=True, device=device, log=log)
    if tuple(meta["data_shape"]) != tuple(shape):
        raise NCSNError(
            f"train.init_from = {source!r}: trained on examples of shape "
            f"{tuple(meta['data_shape'])}, this run's data has {tuple(shape)}"
        )
    return model, meta


def load_initial(source: str, shape, model, ema, log) -> None:
    """Load the EMA weights of run ``source`` into ``model`` and ``ema``: the same network
    (model.net and its sizes); the parameterization may differ (edm → consistency for
    ``ncsn distill``)."""
    initial, meta = _load(source, shape, log)
    weights = initial.state_dict()
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if expected != {k: tuple(v.shape) for k, v in weights.items()}:
        raise NCSNError(
            f"train.init_from = {source!r}: its network differs from this run's model "
            "(model.net and its sizes must be the same)"
        )
    model.load_state_dict(weights)
    ema.load_state_dict(weights)
    log(f"initialised from {meta['path']} (step {meta['step']}, EMA weights)")


def teacher(t, shape, device, layout, log) -> torch.nn.Module | None:
    """The frozen teacher of ``train.ect_pair = teacher`` (None for ``noise``): the EMA weights
    of ``train.init_from`` (``t`` is the TrainConfig), loaded at every start, resumes included,
    in eval mode."""
    if t.ect_pair != "teacher":  # (ncsn.limits refuses it without train.init_from)
        return None
    model, meta = _load(t.init_from, shape, log, device)
    log(f"teacher of the ECT pairs: {meta['path']} (step {meta['step']}, EMA weights)")
    model = model.to(memory_format=layout).eval().requires_grad_(False)
    if t.compile_teacher:  # its no-grad forwards are most of a distillation step's work
        model.net = torch.compile(model.net)  # the C++ compiler was checked in train()
    return model
