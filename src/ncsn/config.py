"""Configuration as data: dataclasses, YAML load/save, ``--set a.b=c`` overrides, validation.

Validated once here, at the edge; the rest of the package takes plain values. Every error names
the file and field at fault and what was expected (unknown keys come with a did-you-mean).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

import ncsn.limits as limits
from ncsn.errors import NCSNError

Auto = Literal["auto"]


@dataclass
class DataConfig:
    """Which data set to train on and how batches are prepared (images in [0, 1])."""

    name: Literal["digits", "mnist", "cifar10", "folder", "npz", "npy", "toy"] = "digits"
    root: str | None = None  # directory (mnist, cifar10, folder) or file (npz, npy)
    split: Literal["train", "test"] = "train"
    subset: list[int] | None = None  # [start, stop): use only these examples
    image_size: int | None = None  # folder: side of the square the images are cropped/resized to
    channels: int | None = None  # folder: 1 (grey) or 3 (RGB, default)
    toy: str = "mixture"  # toy: preset name (see ncsn.data.toy)
    toy_n: int = 10000  # toy: number of training examples drawn
    dequantize: bool = False  # uniform dequantization of discrete intensities
    hflip: bool = False  # random horizontal flips
    download: bool = False  # mnist, cifar10: fetch into root when missing


@dataclass
class ScheduleConfig:
    """The noise ladder σ₁ > … > σ_L and the Langevin step size (design.md §1)."""

    sigma_max: float | Auto = "auto"  # auto: largest pairwise distance of the training data
    sigma_min: float = 0.01
    num_levels: int | Auto = "auto"  # auto: Gaussian-overlap rule with target `overlap`
    overlap: float = 0.5  # target C(γ) of NCSNv2 technique 2
    step_size: float | Auto = "auto"  # ε, official convention; auto: NCSNv2 technique 4 for T
    steps_per_level: int = 5  # T, Langevin steps at each level
    exact_distance_limit: int = 60000  # above this many examples σ₁ is estimated (documented)


@dataclass
class ModelConfig:
    """Network and parameterization. ``score(x, σ)`` and ``denoise(x, σ)`` exist for all."""

    net: Literal["unet", "mlp", "refinenet"] = "unet"
    parameterization: Literal["noise", "score_sigma", "denoiser", "edm", "consistency"] = "noise"
    channels: int = 64  # unet: base width
    ngf: int = 64  # refinenet: base width (the paper: 64 for MNIST, 128 for CIFAR-10/CelebA)
    channel_mult: list[int] = field(default_factory=lambda: [1, 2])
    num_res_blocks: int = 2
    attention_resolutions: list[int] = field(default_factory=list)
    dropout: float = 0.0
    groups: int = 8  # GroupNorm groups
    hidden: int = 256  # mlp: width
    layers: int = 3  # mlp: hidden layers
    embedding_dim: int = 128  # log σ embedding width
    input_scaling: bool = True  # feed x / sqrt(σ² + σ_data²) to the network
    conditional: bool = True  # false: the network is not told σ (NCSNv2 with score_sigma)
    sigma_data: float | Auto = 0.5  # input scaling and edm; auto: the data's pixel std, recorded
    experts: int = 1  # > 1: that many networks, each owning a band of the ladder (nets/experts.py)
    expert_bands: list[int] | Literal["equal"] = "equal"  # first level index of each band
    num_classes: int = 0  # > 0: class-conditional s_θ(x, σ, y), labels 0…num_classes−1


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping for ``ncsn train``."""

    objective: Literal["dsm", "ssm", "ect"] = "dsm"  # ect: consistency tuning (ncsn distill)
    loss_power: float = 2.0  # λ(σ) = σ^p (loss_weight = power)
    sigma_distribution: Literal["ladder", "loguniform", "lognormal"] = "ladder"  # noise_levels.py
    p_mean: float | Auto = "auto"  # lognormal: mean of ln σ; auto: −1.2 + ln(σ_data / 0.5)
    p_std: float = 1.2  # lognormal: standard deviation of ln σ
    loss_weight: Literal["auto", "power", "edm"] = (
        "auto"  # auto: edm for model.parameterization edm
    )
    ssm_projections: int = 1
    steps: int = 10000
    batch_size: int = 128  # global: split over torchrun processes and grad_accum micro-steps
    grad_accum: int = 1  # micro-steps per optimizer step (same global batch, less memory)
    lr: float = 2e-4
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    warmup: int = 0  # linear learning-rate warm-up steps
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    ema: float = 0.999
    ema_warmup: bool = False  # decay min(ema, (1 + step)/(10 + step)) early on (TF's EMA rule)
    ema_stds: list[float] = field(default_factory=list)  # power-function EMA profiles (σ_rel)
    ema_snapshot_every: int = 0  # steps between power-EMA snapshots; 0: at each checkpoint
    holdout: int = 0  # the data set's last N examples are not trained on: per-σ diagnostics
    per_sigma_levels: int = 12  # levels of the held-out per-σ loss at each checkpoint; 0: off
    checkpoint_every: int = 1000
    keep_last: int = 3  # checkpoints kept in run_dir/checkpoints
    preview_every: int = 1000  # sample grid of the EMA model; 0 disables
    preview_n: int = 64
    log_every: int = 50
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:1, mps
    precision: Literal["fp32", "bf16", "auto"] = "fp32"  # bf16: autocast the forward pass;
    # auto: bf16 on a CPU with AMX, else fp32 (ncsn.devices.auto_precision)
    deterministic: bool = False
    nonfinite_patience: int = 5  # consecutive non-finite steps before rolling back
    nonfinite_lr_factor: float = 0.5  # learning rate × this at each rollback
    band: int | None = None  # with model.experts: train only this expert, on its band's levels
    fp_weight: float = 0.0  # Fokker–Planck consistency regulariser weight (fokker_planck.py)
    fp_examples: int = 16  # examples of each batch the regulariser is estimated on
    fp_probes: int = 1  # Hutchinson probe vectors per example
    channels_last: bool = False  # torch.channels_last memory format for image networks
    compile: bool = False  # torch.compile the network for training
    label_dropout: float = 0.0  # conditional: P(label → "no label"), for classifier-free guidance
    init_from: str | None = None  # a run directory: a new run starts from its EMA weights
    # objective ect (Geng et al. 2024; consistency.py): Δt = t·(1 + k·sigmoid(−b·t))/q^(stage+1)
    ect_q: float = 2.0  # Δt shrinks by q each stage
    ect_k: float = 8.0
    ect_b: float | Auto = "auto"  # auto: ECT's 1 in units of the data, 0.5/σ_data
    ect_c: float | Auto = "auto"  # pseudo-Huber c; auto: 0.00054·√D·σ_data/0.5 (iCT's)
    ect_stage_steps: int = 200  # steps per stage
    ect_pair: Literal["noise", "teacher"] = "noise"  # x_r: x + r·z, or init_from's Heun step
    ect_teacher_steps: int = 1  # ect_pair teacher: Heun steps from t to r (ρ = 7 ladder)
    compile_teacher: bool = False  # ect_pair teacher: torch.compile the frozen teacher's network
    ect_weight: Literal["inverse_gap", "uniform"] = "inverse_gap"  # λ(t, r): 1/(t − r) or 1
    ect_distance: Literal["pseudo_huber", "l1"] = "pseudo_huber"  # d(f_t, f_r), per example
    ect_grid: list[float] = field(default_factory=list)  # [] or CD's grid: t, r adjacent levels
    ect_rollout: float = 0.0  # grid: share of the pairs below σ₁ on the student's own draws


@dataclass
class SampleConfig:
    """Defaults for ``ncsn sample`` (each can be overridden on the command line)."""

    # what `ncsn sample` (and evaluate, Run.sample) runs without --sampler, and its --steps
    # (None: that sampler's default); names as ncsn.samplers.run.SAMPLERS
    sampler: Literal[
        "ald",
        "pc",
        "ode",
        "churn",
        "ipndm",
        "dpmpp_2m",
        "dpmpp_2m_sde",
        "unipc",
        "restart",
        "consistency",
    ] = "ald"
    steps: int | None = None
    n: int = 64
    batch_size: int = 500
    init: Literal["uniform", "gaussian"] = "uniform"
    denoise_final: bool = True
    seed: int = 0
    gif_frames: int = 40


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    run_dir: str = "runs/default"


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config (what is saved as YAML/JSON)."""
    return dataclasses.asdict(cfg)


def from_dict(
    data: dict, source: str = "config", overrides: dict[str, str] | None = None
) -> Config:
    """A validated Config from plain data; errors name ``source``, or the ``--set`` item (from
    ``overrides``, key → item) that set the offending field."""
    overrides = overrides or {}

    def blame(name: str) -> str:
        return f"--set {overrides[name]}" if name in overrides else source

    cfg = _build(Config, data, blame, "")
    limits.check_config(cfg, blame)
    return cfg


def load(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Load a YAML config (defaults when ``path`` is None) and apply ``key=value`` overrides."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        path = Path(path)
        if path.is_dir():
            raise NCSNError(f"{path}: is a directory; expected a YAML config file")
        try:
            if path.stat().st_size > limits.MAX_CONFIG_BYTES:
                raise NCSNError(
                    f"{path}: {path.stat().st_size:,} bytes; a config is at most "
                    f"{limits.MAX_CONFIG_BYTES:,}"
                )
            text = path.read_text()
        except FileNotFoundError:
            raise NCSNError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise NCSNError(f"{path}: cannot read config file ({e})") from None
        data = limits.load_yaml(text, source) or {}
        if not isinstance(data, dict):
            raise NCSNError(f"{path}: expected a mapping of sections at the top level")
    return with_overrides(data, overrides, source)


def with_overrides(data: dict, overrides: list[str], source: str = "config") -> Config:
    """A validated Config from plain ``data`` (changed in place) with ``key=value`` overrides;
    errors name ``source`` or the ``--set`` item that set the offending field."""
    given = {}
    for item in overrides:
        given[_apply_override(data, item)] = item
    return from_dict(data, source, given)


def dumps(cfg: Config) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(dumps(cfg))


def _apply_override(data: dict, item: str) -> str:
    """Set ``key=value`` in ``data`` (value parsed as YAML, else kept as text); returns key."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise NCSNError(f"--set {limits.short(item)}: expected key=value, e.g. train.steps=1000")
    value = limits.load_yaml(raw, f"--set {item}", invalid=raw) if raw != "" else None
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise NCSNError(f"--set {item!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value
    return key


def _build(cls: type, data: Any, blame, prefix: str) -> Any:
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "top level"
        raise NCSNError(f"{blame(where)}: {where}: expected a mapping, got {limits.short(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            hint = difflib.get_close_matches(str(key), names, n=1)
            known = ", ".join(names)
            extra = f"; did you mean '{prefix}{hint[0]}'?" if hint else f"; known keys: {known}"
            raise NCSNError(f"{blame(prefix + str(key))}: unknown key '{prefix}{key}'{extra}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, blame, f"{prefix}{key}.")
        else:
            kwargs[key] = _check(value, tp, blame, f"{prefix}{key}")
    return cls(**kwargs)


def _check(value: Any, tp: Any, blame, name: str) -> Any:
    """Return ``value`` coerced to ``tp`` or raise an NCSNError naming the field."""
    ok, out = _coerce(value, tp)
    if not ok:
        raise NCSNError(f"{blame(name)}: {name} = {limits.short(value)}: expected {_describe(tp)}")
    return out


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, out = _coerce(value, arg)
            if ok:
                return True, out
        return False, None
    if origin is Literal:
        return (value in typing.get_args(tp)), value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            return False, None
        (item,) = typing.get_args(tp)
        out = []
        for v in value:
            ok, o = _coerce(v, item)
            if not ok:
                return False, None
            out.append(o)
        return True, out
    if tp is type(None):
        return value is None, None
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 2e-5 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                return False, None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False, None
        try:
            return True, float(value)
        except OverflowError:  # an integer past float's range: not a number we can use
            return False, None
    if tp is str:
        return isinstance(value, str), value
    return False, None


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, str(tp)
    )
