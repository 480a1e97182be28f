"""Training state ↔ checkpoint contents, and the checks that make a checkpoint safe to use.

A training checkpoint holds tensors ``model.*``, ``ema.*``, ``optim.<i>.<name>`` and ``rng.*``
(data order, training noise, the global CPU generator, and CUDA's when training on a GPU), and
metadata: ``step``, ``config``, ``schedule`` (with ``data_mean``, the training data's mean, in
runs trained since issue 14), ``data_shape``, ``data_name``, ``parameters``, ``param_groups``
(Adam's hyper-parameters) and ``nonfinite`` (the guard's counters and the learning-rate scale it
has applied; see docs/conventions.md, "Failures and recovery").

The metadata is checked field by field before anything is built from it, and a model is first
built on the ``meta`` device to compare tensor shapes, so a tampered or foreign checkpoint ends
in an NCSNError, never in a traceback or a huge allocation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

import ncsn.checkpoint as checkpoint
import ncsn.config as config
import ncsn.schedule as schedule
from ncsn.errors import NCSNError
from ncsn.model import ScoreModel, build_model

_RESTORE_ERRORS = (KeyError, ValueError, RuntimeError, TypeError, IndexError)


def collect(model, ema, opt, data_gen, noise_gen) -> tuple[dict[str, torch.Tensor], dict]:
    """All training state as (tensors, JSON-able metadata)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    opt_state = opt.state_dict()
    for i, s in opt_state["state"].items():
        tensors |= {f"optim.{i}.{k}": torch.as_tensor(v) for k, v in s.items()}
    tensors["rng.data"] = data_gen.get_state()
    tensors["rng.noise"] = noise_gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if noise_gen.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(noise_gen.device)
    return tensors, {"param_groups": opt_state["param_groups"]}


def restore(tensors, meta, path: Path, model, ema, opt, data_gen, noise_gen) -> None:
    """Load ``tensors``/``meta`` (from :func:`collect`) into the live objects."""

    def part(prefix: str) -> dict:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    fused = [group.get("fused") for group in opt.param_groups]
    try:
        model.load_state_dict(part("model."))
        ema.load_state_dict(part("ema."))
        state: dict[int, dict] = {}
        for k, v in part("optim.").items():
            i, name = k.split(".", 1)
            state.setdefault(int(i), {})[name] = v
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        data_gen.set_state(tensors["rng.data"])
        noise_gen.set_state(tensors["rng.noise"])
        torch.set_rng_state(tensors["rng.torch"])
        if noise_gen.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], noise_gen.device)
    except _RESTORE_ERRORS as e:
        raise NCSNError(
            f"{path}: the checkpoint's state does not fit this model and optimizer "
            f"({type(e).__name__}: {str(e)[:300]})"
        ) from None
    for group, flag in zip(opt.param_groups, fused, strict=True):
        group["fused"] = flag  # the implementation is this machine's choice, not the file's


def parse_meta(meta: Any, path: Path) -> tuple[config.Config, schedule.Schedule]:
    """The config and schedule of a training checkpoint; NCSNError if any field is malformed."""

    def bad(what: str) -> NCSNError:
        return NCSNError(f"{path}: checkpoint metadata {what}: the file is damaged or not ours")

    if not isinstance(meta, dict):
        raise bad(f"is a {type(meta).__name__}, not a mapping")
    missing = [k for k in ("step", "config", "schedule", "data_shape") if k not in meta]
    if missing:
        raise bad(f"lacks {', '.join(missing)}")
    if not _is_int(meta["step"]) or meta["step"] < 0:
        raise bad(f"has step = {meta['step']!r}")
    shape = meta["data_shape"]
    if not (
        isinstance(shape, list)
        and len(shape) in (1, 3)
        and all(_is_int(n) and 0 < n < 2**31 for n in shape)
    ):
        raise bad(f"has data_shape = {shape!r}")
    if not isinstance(meta["config"], dict):
        raise bad("has no config mapping")
    cfg = config.from_dict(meta["config"], source=f"{path} (config in the checkpoint)")
    s = meta["schedule"]
    if not (
        isinstance(s, dict)
        and set(s) <= {"sigmas", "step_size", "steps_per_level", "how", "step_rule", "data_mean"}
        and isinstance(s.get("sigmas"), list)
        and len(s["sigmas"]) > 0
        and all(_is_positive(v) for v in s["sigmas"])
        and _is_positive(s.get("step_size"))
        and _is_int(s.get("steps_per_level"))
        and s["steps_per_level"] > 0
        and isinstance(s.get("how", {}), dict)
        and isinstance(s.get("step_rule", False), bool)
    ):
        raise bad("has a malformed schedule")
    mean = s.get("data_mean")
    if mean is not None and not (
        isinstance(mean, list) and len(mean) == math.prod(shape) and all(map(_is_finite, mean))
    ):
        raise bad(
            f"has a malformed schedule.data_mean (expected {math.prod(shape)} finite numbers)"
        )
    for key in ("param_groups", "nonfinite"):
        if key in meta and not isinstance(meta[key], (list if key == "param_groups" else dict)):
            raise bad(f"has a malformed {key}")
    sched = schedule.Schedule(
        [float(v) for v in s["sigmas"]],
        float(s["step_size"]),
        s["steps_per_level"],
        {str(k): str(v) for k, v in s.get("how", {}).items()},
        s.get("step_rule", False),
        None if mean is None else [float(v) for v in mean],
    )
    return cfg, sched


def check_meta(meta: Any, path: Path) -> None:
    """:func:`parse_meta` as a check for :func:`ncsn.checkpoint.latest`."""
    parse_meta(meta, path)


def check_compatible(cfg: config.Config, meta: dict, data_shape: tuple, path: Path) -> None:
    """Resuming needs the same data, model and schedule settings, and data of the same shape."""
    saved = meta["config"]
    now = config.to_dict(cfg)
    # A field added to the config after the checkpoint was written counts as its default.
    default = config.to_dict(config.Config())
    diffs = [
        f"{section}.{k}: checkpoint {saved[section].get(k, default[section][k])!r}, config {v!r}"
        for section in ("data", "model", "schedule")
        for k, v in now[section].items()
        if saved[section].get(k, default[section][k]) != v
    ]
    if tuple(meta["data_shape"]) != tuple(data_shape):
        diffs.append(
            f"data shape: checkpoint {tuple(meta['data_shape'])}, data now {tuple(data_shape)}"
        )
    if diffs:
        raise NCSNError(
            f"{path}: checkpoint was trained with a different config ("
            + "; ".join(diffs)
            + "); use a new run_dir or restore those settings"
        )


def model_for(
    cfg: config.Config,
    shape: tuple[int, ...],
    sigmas: list[float],
    tensors: dict,
    prefix: str,
    path: Path,
) -> ScoreModel:
    """A model built from ``cfg`` holding the ``prefix`` weights of a checkpoint.

    Shapes are compared on the ``meta`` device first, so a checkpoint whose config promises a
    different architecture is refused before any memory is allocated.
    """
    weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    with torch.device("meta"):
        skeleton = build_model(cfg.model, shape, sigmas)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise NCSNError(
            f"{path}: weights do not fit the model its config describes "
            f"(first differences, name and shape: {diff})"
        )
    # the network's initial weights, overwritten below, are drawn from a fork of the global
    # generator: loading a run must not move the generator that training checkpoints record
    # (a resumed distillation loads its teacher after the restore)
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.model, shape, sigmas)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise NCSNError(f"{path}: weights do not fit the model ({str(e)[:300]})") from None
    return model


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    """A JSON number that is a finite float (an integer too large for a float is not)."""
    if _is_int(v):
        return abs(v) < 2**1023
    return isinstance(v, float) and math.isfinite(v)


def _is_positive(v: Any) -> bool:
    return _is_finite(v) and v > 0


def latest_good(ckpt_dir: Path, log, *, required: bool):
    """(tensors, meta, path) of the newest checkpoint in ``ckpt_dir`` that loads and whose metadata
    checks out; each newer one passed over is logged. None for a folder without checkpoints,
    unless ``required``; an NCSNError when there are checkpoints but none is usable."""
    files = checkpoint.list_checkpoints(ckpt_dir)
    skipped: list[str] = []
    found = checkpoint.latest(ckpt_dir, warn=skipped.append, check=check_meta)
    details = "".join(f"\n  {w}" for w in skipped)
    if found is None and files and not required:
        raise NCSNError(
            f"{ckpt_dir}: none of its {len(files)} checkpoints is usable: move them away to "
            "start this run afresh" + details
        )
    if found is None and required:
        raise NCSNError(f"{ckpt_dir}: no usable checkpoint" + details)
    for w in skipped:
        log(w)
    return found


def load_run(
    run_dir: str | Path, *, ema: bool = True, device: str | torch.device = "cpu", log=print
):
    """Model (EMA weights by default), schedule, config and metadata of the latest checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NCSNError(f"{run_dir}: run directory not found")
    tensors, meta, path = latest_good(run_dir / "checkpoints", log, required=True)
    cfg, sched = parse_meta(meta, path)
    shape = tuple(meta["data_shape"])
    model = model_for(cfg, shape, sched.sigmas, tensors, "ema." if ema else "model.", path)
    model.to(device).eval()
    return model, sched, cfg, meta | {"path": str(path)}


def resume_point(
    cfg: config.Config, data_shape: tuple, ckpt_dir: Path, log, set_aside: bool = True
):
    """The checkpoint to resume from (None for a new run); newer unusable ones are set aside
    (renamed ``*.corrupt``) when ``set_aside``."""
    found = latest_good(ckpt_dir, log, required=False)
    if found is None:
        return None
    paths = [p for _, p in checkpoint.list_checkpoints(ckpt_dir)]
    later = paths[paths.index(found[2]) + 1 :]
    for p in later if set_aside else []:
        p.replace(p.with_name(p.name + ".corrupt"))
        log(f"warning: set aside unusable checkpoint {p} as {p.name}.corrupt")
    check_compatible(cfg, found[1], data_shape, found[2])
    return found
