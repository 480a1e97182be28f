"""Upper bounds on every size a user can ask for, checked before any work starts.

One table, :data:`BOUNDS`, holds the largest value each config field accepts; the command-line
flags of the same meaning share these bounds (:func:`check`). The bounds are far above any
sensible run and far below what would exhaust this library's data structures or a machine's
memory before the first step. Seeds are integers in [0, 2⁶² − 1] (torch's generators take 64
bits, and the training loop derives per-rank and per-stream seeds by addition). Config text is
YAML of at most :data:`MAX_CONFIG_BYTES` without aliases (``*name``), so a small file cannot
expand into a huge document ("billion laughs").
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import reprlib
from typing import Any

import yaml

from ncsn.errors import NCSNError
from ncsn.noise_levels import weighting

MAX_CONFIG_BYTES = 1 << 20
MAX_SEED = 2**62 - 1
MAX_ECT_GRID = 64  # train.ect_grid's levels (a 2-NFE sampler needs one)
MAX_EMA_STD = math.sqrt(1 / 12)  # σ_rel of the plain running mean (EDM2 Eq. 4 at γ = 0)
MAX_IMAGE_BYTES = 256 << 20  # an image file read by a loader or a command
MAX_IMAGE_PIXELS = 64 << 20  # width × height of one image, checked before decoding it

BOUNDS = {
    "schedule.num_levels": 100_000,
    "schedule.steps_per_level": 1_000_000,
    "schedule.exact_distance_limit": 1_000_000,
    "train.steps": 10**9,
    "train.batch_size": 1 << 20,
    "train.grad_accum": 4096,
    "train.checkpoint_every": 10**9,
    "train.keep_last": 10_000,
    "train.log_every": 10**9,
    "train.preview_every": 10**9,
    "train.preview_n": 1024,
    "train.warmup": 10**9,
    "train.ssm_projections": 1024,
    "train.nonfinite_patience": 10**6,
    "train.fp_examples": 1 << 16,
    "train.fp_probes": 1024,
    "train.ema_snapshot_every": 10**9,
    "train.holdout": 10**7,
    "train.per_sigma_levels": 1024,
    "train.ect_stage_steps": 10**9,
    "train.ect_teacher_steps": 64,  # 2 teacher evaluations each, per example and step
    "train.seed": MAX_SEED,
    "model.channels": 4096,
    "model.ngf": 4096,
    "model.num_res_blocks": 64,
    "model.groups": 4096,
    "model.hidden": 1 << 16,
    "model.layers": 256,
    "model.embedding_dim": 1 << 16,
    "model.experts": 64,
    "model.num_classes": 100_000,
    "model.channel_mult": 64,  # each entry; at most 16 entries
    "data.toy_n": 10**7,
    "data.image_size": 4096,
    "sample.n": 10**9,
    "sample.batch_size": 1 << 16,
    "sample.gif_frames": 10_000,
    "sample.seed": MAX_SEED,
    "sample.steps": 1_000_000,  # ald: T; the others: N levels
}
MAX_CHANNEL_MULT_ENTRIES = 16
FLAG_BOUNDS = {  # command-line sizes that are no config field
    "sample.levels": BOUNDS["schedule.num_levels"],
    "sample.correctors": 1000,
    "sample.grid": 10_000,
    "bands.experts": BOUNDS["model.experts"],
    "bands.examples": 1 << 20,
    "classifier.steps": 10**7,
    "distill.minutes": 10**6,
    "classifier.width": 1024,
    "classifier.hidden": 1 << 16,
    "classifier.holdout": 10**8,
    "evaluate.k": 1000,
    "evaluate.kid_subsets": 100_000,
    "evaluate.kid_subset_size": 1_000_000,
    "toy.particles": 10**7,
    "likelihood.probes": 10_000,
    "likelihood.dequantize": 10_000,
}


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 8, 8, 80, 80


def short(value: Any) -> str:
    """``repr(value)`` cut to a line: error messages never print a huge value back."""
    return _REPR.repr(value)


def check(name: str, value: int | None, *, flag: str | None = None, least: int = 1) -> None:
    """An NCSNError naming ``flag`` (or the config field ``name``) unless ``value`` lies in
    [least, BOUNDS[name]]; None passes (not given)."""
    if value is None:
        return
    top = BOUNDS[name] if name in BOUNDS else FLAG_BOUNDS[name]
    if not least <= value <= top:
        what = f"{flag} {short(value)}" if flag else f"{name} = {short(value)}"
        raise NCSNError(f"{what}: expected an integer from {least} to {top:,}")


def check_memory(flag: str, count: int, shape: tuple[int, ...], copies: int = 8) -> None:
    """Refuse ``flag`` (``count`` examples of ``shape`` held at once, float32, about ``copies``
    working copies: the sampler's state, noise, score, network activations) before any work
    when that estimate exceeds half of this machine's memory."""
    need = count * math.prod(shape) * 4 * copies
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > total // 2:
        raise NCSNError(
            f"{flag} {count:,}: {count:,} examples of shape {tuple(shape)} at once need about "
            f"{need / 2**30:,.1f} GiB and this machine has {total / 2**30:,.1f} GiB: ask for fewer"
        )


def seed(value: int | None, flag: str) -> int | None:
    """``value`` if it is a seed in [0, MAX_SEED], else an NCSNError naming ``flag``."""
    if value is not None and not 0 <= value <= MAX_SEED:
        raise NCSNError(f"{flag} {short(value)}: expected a seed from 0 to 2**62 - 1")
    return value


_RAISE = object()


def load_yaml(text: str, source: str, *, invalid: Any = _RAISE) -> Any:
    """YAML text (at most MAX_CONFIG_BYTES, no aliases) as plain data; ``source`` names it.
    Text that is not valid YAML is an NCSNError, or gives ``invalid`` when one is passed (a
    ``--set`` value is then kept as plain text); size and aliases are refused either way."""
    if len(text) > MAX_CONFIG_BYTES:
        raise NCSNError(f"{source}: {len(text):,} characters of YAML; at most {MAX_CONFIG_BYTES:,}")
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise NCSNError(
                    f"{source}: YAML alias *{event.anchor} (line {event.start_mark.line + 1}): "
                    "configs may not use aliases; write the value out"
                )
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        if invalid is not _RAISE:
            return invalid
        raise NCSNError(f"{source}: not valid YAML ({short(str(e))})") from None


def _section_name(cfg, section: Any) -> str:
    return next(f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) is section) + "."


def check_config(cfg, blame=lambda name: "config") -> None:
    """Range checks of a Config that types alone do not express, the upper bounds of
    :data:`BOUNDS` included; ``blame(field)`` says where a bad value came from."""

    def fail(name: str, value: Any, expected: str) -> None:
        raise NCSNError(f"{blame(name)}: {name} = {short(value)}: expected {expected}")

    s, t, m, d, smp = cfg.schedule, cfg.train, cfg.model, cfg.data, cfg.sample
    for section in (s, t, m, d, smp):
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                fail(_section_name(cfg, section) + f.name, value, "a finite number")
            if isinstance(value, str) and "\x00" in value:
                fail(_section_name(cfg, section) + f.name, value, "text without NUL characters")
    if not cfg.run_dir or "\x00" in cfg.run_dir:
        fail("run_dir", cfg.run_dir, "a directory path")
    if not s.sigma_min > 0:
        fail("schedule.sigma_min", s.sigma_min, "a positive number")
    if s.sigma_max != "auto" and not s.sigma_max > s.sigma_min:
        fail("schedule.sigma_max", s.sigma_max, f"greater than schedule.sigma_min = {s.sigma_min}")
    if s.num_levels != "auto" and s.num_levels < 1:
        fail("schedule.num_levels", s.num_levels, "at least 1 (or 'auto')")
    if not 0 < s.overlap < 1:
        fail("schedule.overlap", s.overlap, "a number strictly between 0 and 1")
    if s.step_size != "auto" and not s.step_size > 0:
        fail("schedule.step_size", s.step_size, "a positive number (or 'auto')")
    for name, value in [
        ("schedule.steps_per_level", s.steps_per_level),
        ("schedule.exact_distance_limit", s.exact_distance_limit),
        ("train.steps", t.steps),
        ("train.batch_size", t.batch_size),
        ("train.grad_accum", t.grad_accum),
        ("train.checkpoint_every", t.checkpoint_every),
        ("train.keep_last", t.keep_last),
        ("train.log_every", t.log_every),
        ("train.preview_n", t.preview_n),
        ("train.ssm_projections", t.ssm_projections),
        ("train.nonfinite_patience", t.nonfinite_patience),
        ("train.ect_stage_steps", t.ect_stage_steps),
        ("model.channels", m.channels),
        ("model.ngf", m.ngf),
        ("model.num_res_blocks", m.num_res_blocks),
        ("model.groups", m.groups),
        ("model.hidden", m.hidden),
        ("model.layers", m.layers),
        ("model.embedding_dim", m.embedding_dim),
        ("model.experts", m.experts),
        ("train.fp_examples", t.fp_examples),
        ("train.fp_probes", t.fp_probes),
        ("data.toy_n", d.toy_n),
        ("sample.n", smp.n),
        ("sample.batch_size", smp.batch_size),
        ("sample.gif_frames", smp.gif_frames),
    ]:
        if value < 1:
            fail(name, value, "a positive integer")
    if smp.steps is not None and smp.steps < 1:
        fail("sample.steps", smp.steps, "a positive integer (or null: the sampler's default)")
    for name, value in [("train.preview_every", t.preview_every), ("train.warmup", t.warmup)]:
        if value < 0:
            fail(name, value, "zero or a positive integer")
    for name, top in BOUNDS.items():
        section, _, key = name.partition(".")
        value = getattr(getattr(cfg, section), key)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, int) and v > top for v in values):
            fail(name, value, f"at most {top:,}" + (" each" if isinstance(value, list) else ""))
    for name in ("train.seed", "sample.seed"):
        section, _, key = name.partition(".")
        if getattr(getattr(cfg, section), key) < 0:
            fail(name, getattr(getattr(cfg, section), key), "a seed from 0 to 2**62 - 1")
    if len(m.channel_mult) > MAX_CHANNEL_MULT_ENTRIES:
        fail("model.channel_mult", m.channel_mult, f"at most {MAX_CHANNEL_MULT_ENTRIES} entries")
    if not t.lr > 0:
        fail("train.lr", t.lr, "a positive number")
    if not 0 <= t.ema < 1:
        fail("train.ema", t.ema, "a number in [0, 1)")
    if t.grad_clip < 0:
        fail("train.grad_clip", t.grad_clip, "zero (off) or a positive number")
    if not (0 <= t.beta1 < 1 and 0 <= t.beta2 < 1):
        fail("train.beta1/beta2", (t.beta1, t.beta2), "numbers in [0, 1)")
    if t.weight_decay < 0:
        fail("train.weight_decay", t.weight_decay, "zero or a positive number")
    if t.fp_weight < 0:
        fail("train.fp_weight", t.fp_weight, "zero (off) or a positive number")
    if t.band is not None and not 0 <= t.band < m.experts:
        fail("train.band", t.band, f"an expert index in [0, model.experts = {m.experts})")
    if m.expert_bands != "equal" and len(m.expert_bands) != m.experts:
        fail("model.expert_bands", m.expert_bands, f"'equal' or {m.experts} level indices")
    if not 0 < t.nonfinite_lr_factor < 1:
        fail(
            "train.nonfinite_lr_factor", t.nonfinite_lr_factor, "a number strictly between 0 and 1"
        )
    if not m.channel_mult or min(m.channel_mult) < 1:
        fail("model.channel_mult", m.channel_mult, "a non-empty list of positive integers")
    if m.channels % m.groups:
        fail("model.channels", m.channels, f"a multiple of model.groups = {m.groups}")
    if m.net == "refinenet" and not m.conditional:
        fail(
            "model.conditional",
            m.conditional,
            "true for model.net = 'refinenet' (it is conditioned on the level index)",
        )
    if m.embedding_dim % 2:
        fail("model.embedding_dim", m.embedding_dim, "an even number")
    if not 0 <= m.dropout < 1:
        fail("model.dropout", m.dropout, "a number in [0, 1)")
    if m.num_classes < 0:
        fail("model.num_classes", m.num_classes, "0 (unconditional) or the number of classes")
    if m.num_classes and m.net == "refinenet":
        fail(
            "model.num_classes",
            m.num_classes,
            "0 for model.net = 'refinenet' (the paper's "
            "network has no class input; use unet or mlp)",
        )
    if not 0 <= t.label_dropout < 1:
        fail("train.label_dropout", t.label_dropout, "a probability in [0, 1)")
    if t.label_dropout and not m.num_classes:
        fail("train.label_dropout", t.label_dropout, "0 unless model.num_classes > 0")
    if m.num_classes and t.fp_weight > 0:
        fail(
            "train.fp_weight",
            t.fp_weight,
            "0 with model.num_classes > 0 (the Fokker–Planck term is unconditional)",
        )
    if m.sigma_data != "auto" and not m.sigma_data > 0:
        fail("model.sigma_data", m.sigma_data, "a positive number (or 'auto')")
    if not t.p_std > 0:
        fail("train.p_std", t.p_std, "a positive number (the standard deviation of ln σ)")
    if t.sigma_distribution != "ladder" and (
        m.net == "refinenet" or m.experts > 1 or t.objective == "ssm" or t.fp_weight > 0
    ):
        fail(
            "train.sigma_distribution",
            t.sigma_distribution,
            "'ladder' with model.net = refinenet, model.experts > 1, train.objective = ssm or "
            "train.fp_weight > 0 (they work on the ladder's levels)",
        )
    if t.objective == "ssm" and weighting(t.loss_weight, m.parameterization) == "edm":
        fail("train.loss_weight", t.loss_weight, "'power' with train.objective = ssm (σ^p only)")
    if (t.objective == "ect") != (m.parameterization == "consistency"):
        fail(
            "train.objective" if t.objective == "ect" else "model.parameterization",
            t.objective if t.objective == "ect" else m.parameterization,
            "train.objective = ect together with model.parameterization = consistency (a "
            "consistency model is trained by ECT, and ECT trains only one; `ncsn distill` sets "
            "both)",
        )
    if t.objective == "ect":
        if m.net == "refinenet" or m.experts > 1 or t.fp_weight > 0:
            fail(
                "train.objective",
                t.objective,
                "dsm or ssm with model.net = refinenet, model.experts > 1 or train.fp_weight > 0 "
                "(ECT draws σ off the ladder)",
            )
        if not t.ect_q > 1:
            fail("train.ect_q", t.ect_q, "a number above 1 (Δt shrinks by q each stage)")
        if not t.ect_k >= 0:
            fail("train.ect_k", t.ect_k, "a number ≥ 0")
        for name, value in [("train.ect_b", t.ect_b), ("train.ect_c", t.ect_c)]:
            if value != "auto" and not value >= 0:
                fail(name, value, "a number ≥ 0 (or 'auto')")
        if t.ect_teacher_steps < 1 or (t.ect_teacher_steps > 1 and t.ect_pair != "teacher"):
            fail("train.ect_teacher_steps", t.ect_teacher_steps, "a positive integer (Heun steps "
                 "of the teacher from t to r), and 1 unless train.ect_pair = teacher")  # fmt: skip
        top = s.sigma_max if s.sigma_max != "auto" else math.inf  # (auto: consistency.py checks)
        levels = [top, *t.ect_grid, s.sigma_min]
        if len(t.ect_grid) > MAX_ECT_GRID or any(
            not (math.isfinite(low) and high > low) for high, low in itertools.pairwise(levels)
        ):
            fail("train.ect_grid", t.ect_grid, f"at most {MAX_ECT_GRID} σ levels, descending, "
                 "strictly between schedule.sigma_min and σ₁ (or [] for ECT's continuous "
                 "t)")  # fmt: skip
        if not 0 <= t.ect_rollout <= 1 or (t.ect_rollout > 0 and not t.ect_grid):
            fail("train.ect_rollout", t.ect_rollout, "a number in [0, 1], and 0 unless "
                 "train.ect_grid is set (the pairs below σ₁ it moves are the grid's)")  # fmt: skip
        if t.ect_pair == "teacher" and t.init_from is None:
            fail("train.ect_pair", t.ect_pair, "'noise' without train.init_from (the teacher's "
                 "run directory, which ncsn distill sets)")  # fmt: skip
    if t.compile_teacher and (t.objective != "ect" or t.ect_pair != "teacher"):
        fail("train.compile_teacher", t.compile_teacher, "false unless there is a teacher "
             "(train.objective = ect with train.ect_pair = teacher)")  # fmt: skip
    if t.init_from is not None and (not t.init_from or "\x00" in t.init_from):
        fail("train.init_from", t.init_from, "a run directory (or null)")
    if any(not 0 < v <= MAX_EMA_STD for v in t.ema_stds) or len(t.ema_stds) > 8:
        fail("train.ema_stds", t.ema_stds, f"at most 8 values σ_rel, 0 < σ_rel ≤ {MAX_EMA_STD:.4f}")
    for name, value in [
        ("train.ema_snapshot_every", t.ema_snapshot_every),
        ("train.holdout", t.holdout),
        ("train.per_sigma_levels", t.per_sigma_levels),
    ]:
        if value < 0:
            fail(name, value, "zero or a positive integer")
    if d.subset is not None and (len(d.subset) != 2 or not 0 <= d.subset[0] < d.subset[1]):
        fail("data.subset", d.subset, "[start, stop] with 0 <= start < stop")
    if d.image_size is not None and d.image_size < 1:
        fail("data.image_size", d.image_size, "a positive integer")
    if d.channels is not None and d.channels not in (1, 3):
        fail("data.channels", d.channels, "1 (grey) or 3 (RGB)")
    if d.name in ("mnist", "cifar10", "folder", "npz", "npy") and not d.root:
        fail("data.root", d.root, f"a path (data.name = {d.name!r} reads files from it)")
    if d.name == "folder" and d.image_size is None:
        fail("data.image_size", d.image_size, "a positive integer for data.name = 'folder'")
