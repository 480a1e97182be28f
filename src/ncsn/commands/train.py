"""``ncsn train``, ``ncsn schedule``, ``ncsn info`` and ``ncsn bands``: a run and its ladder."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import textwrap
from pathlib import Path

import torch

import ncsn.config as config
import ncsn.consistency as consistency
import ncsn.limits as limits
import ncsn.noise_levels as noise_levels
import ncsn.schedule as schedule
from ncsn.commands.common import add_config_args, load_config
from ncsn.data import load_dataset
from ncsn.devices import resolve_device
from ncsn.errors import NCSNError
from ncsn.nets.experts import split_by_loss
from ncsn.objectives import dsm_per_level
from ncsn.training import per_sigma, power_ema, state
from ncsn.training.distributed import world
from ncsn.training.loop import train


def cmd_train(args) -> None:
    cfg = load_config(args)
    summary = train(cfg, progress=not args.no_progress)
    if world().main:
        print(f"trained to step {summary['step']}; run directory: {summary['run_dir']}")


def cmd_schedule(args) -> None:
    cfg = load_config(args)
    if schedule.needs_data(cfg.schedule):  # as training resolves it, with the mean it records
        data = load_dataset(cfg.data, seed=cfg.train.seed)
        print(f"data: {data.name}, {len(data)} examples of shape {data.shape}")
        sched = schedule.resolve_for_data(cfg.schedule, data.x, data.as_float)
    else:
        sched = schedule.resolve(cfg.schedule, None)
    print(sched.describe())
    if args.list:
        print("sigmas: " + ", ".join(f"{s:.6g}" for s in sched.sigmas))


def cmd_info(args) -> None:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise NCSNError(f"{run_dir}: run directory not found")
    _, meta, path = state.latest_good(run_dir / "checkpoints", print, required=True)
    cfg, sched = state.parse_meta(meta, path)
    print(f"run directory: {run_dir}")
    print(f"latest checkpoint: {path} (step {meta['step']} of {cfg.train.steps})")
    print(
        f"data: {meta.get('data_name', cfg.data.name)}, examples of shape "
        f"{tuple(meta['data_shape'])}"
    )
    params = meta.get("parameters")
    print(
        f"model: {cfg.model.net}, parameterization {cfg.model.parameterization}"
        + (f", {params:,} parameters" if isinstance(params, int) else "")
    )
    t = cfg.train
    data_std = meta.get("data_std")  # runs since issue 15; P_mean = auto is read from it
    levels = noise_levels.from_config(
        t, sched.tensor(), cfg.model.parameterization, cfg.model.sigma_data,
        data_std if isinstance(data_std, float) and data_std > 0 else noise_levels.EDM_SIGMA_DATA,
    )  # fmt: skip
    if t.objective == "ect":  # the consistency tuning's own σ law and constants
        dim = math.prod(meta["data_shape"])
        levels = consistency.from_config(t, sched.sigmas, cfg.model.sigma_data, dim)
    print(f"objective: {t.objective}; {levels.describe()}")
    if cfg.model.parameterization == "edm" or cfg.model.input_scaling:
        print(f"σ_data: {cfg.model.sigma_data:.6g}")
    snaps = power_ema.list_snapshots(run_dir)
    if snaps:
        print(
            f"power-EMA snapshots: {len(snaps)} (steps {snaps[0][0]}–{snaps[-1][0]}) of "
            f"σ_rel {t.ema_stds}: choose one after training with `ncsn ema {run_dir} --std S`"
        )
    print(sched.describe())
    if args.per_sigma:
        _print_per_sigma(run_dir)
    last = _last_logged(run_dir / "metrics.csv")
    if last is not None:
        print(f"last logged: step {last[0]}, loss {last[1]:.5g}, {last[2]:.2f} steps/s")
    if args.json:
        print(json.dumps(meta, indent=1))


def _print_per_sigma(run_dir: Path) -> None:
    """The per-σ loss table of RUN/per_sigma.csv: each level at the first and the latest
    measurement, and their ratio."""
    rows = per_sigma.read(run_dir / per_sigma.FILE)
    if not rows:
        raise NCSNError(
            f"{run_dir / per_sigma.FILE}: no per-σ diagnostics (written at each checkpoint when "
            "train.per_sigma_levels > 0, by runs trained since issue 15)"
        )
    steps = per_sigma.by_step(rows)
    first, last = min(steps), max(steps)
    held = "held-out" if rows[-1]["held_out"] else "training"
    print(f"per-σ DSM loss λ(σ)·ℓ on {rows[-1]['examples']} {held} examples (EMA weights):")
    print(f"{'σ':>10}  {'step ' + str(first):>12}  {'step ' + str(last):>12}  {'ratio':>7}")
    start = dict(steps[first])
    for sigma, loss in sorted(steps[last], reverse=True):
        before = start.get(sigma)
        ratio = f"{loss / before:7.3f}" if before else "      –"
        text = f"{before:12.5g}" if before is not None else f"{'–':>12}"
        print(f"{sigma:10.4g}  {text}  {loss:12.5g}  {ratio}")


def _last_logged(path: Path) -> tuple[int, float, float] | None:
    """(step, loss, steps/s) of the last whole row of metrics.csv (a crash can leave a
    half-written last row)."""
    last = None
    if path.exists():
        with open(path, newline="", errors="replace") as f:
            try:
                for row in csv.DictReader(f):
                    try:
                        last = (int(row["step"]), float(row["loss"]), float(row["steps_per_s"]))
                    except (KeyError, TypeError, ValueError):
                        continue
            except csv.Error:
                pass
    return last


def cmd_bands(args) -> None:
    limits.check("bands.experts", args.experts, flag="--experts", least=2)
    limits.check("bands.examples", args.examples, flag="--examples")
    limits.seed(args.seed, "--seed")
    device = resolve_device(args.device, "--device")
    model, sched, cfg, meta = state.load_run(args.run_dir, device=device)
    data = load_dataset(cfg.data, seed=cfg.train.seed)
    gen = torch.Generator().manual_seed(args.seed)
    index = torch.randperm(len(data), generator=gen)[: args.examples]
    x = data.batch(index, generator=gen, dequantize=cfg.data.dequantize, hflip=False)
    x = x.to(next(model.parameters()).device)
    with torch.inference_mode():
        levels = noise_levels.from_config(  # the run's own loss weight at each level
            cfg.train, sched.tensor(), cfg.model.parameterization, model.sigma_data,
            meta.get("data_std") or model.sigma_data,
        )  # fmt: skip
        losses = dsm_per_level(model, x, sched.sigmas, generator=gen, levels=levels)
    starts = split_by_loss(losses, args.experts)
    total = sum(losses)
    for i, (sigma, loss) in enumerate(zip(sched.sigmas, losses, strict=True)):
        band = sum(i >= s for s in starts) - 1
        print(
            f"level {i:3d}  σ = {sigma:<10.4g} loss {loss:10.4g} ({loss / total:6.1%}) band {band}"
        )
    print(f"model.expert_bands={starts}")


def _fields_help() -> str:
    """Every config field and its default, for ``ncsn train --help`` (meanings: docs/config.md)."""
    lines = ["config fields (--set section.field=value; defaults; docs/config.md explains each):"]
    for section in dataclasses.fields(config.Config):
        if section.name == "run_dir":
            continue
        items = [f"{f.name}={_default(f)}" for f in dataclasses.fields(section.default_factory())]
        lines.append(
            textwrap.fill(
                ", ".join(items), 79, initial_indent=f"  {section.name}: ", subsequent_indent="    "
            )  # fmt: skip
        )
    return "\n".join(lines)


def _default(f) -> str:
    """The default as YAML writes it (true, null, [1,2])."""
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return json.dumps(value).replace(" ", "").strip('"')


def add_parsers(sub) -> None:
    """Register train, schedule, info and bands."""
    q = sub.add_parser(
        "train",
        help="train a model (resumes from the run's latest checkpoint)",
        description="Train an NCSN. If the run directory already has checkpoints, "
        "training resumes from the latest one (same data/model/schedule settings "
        "required); raise train.steps to train longer.",
    )
    q.epilog = _fields_help()
    q.formatter_class = argparse.RawDescriptionHelpFormatter
    add_config_args(q)
    q.add_argument("--run-dir", help="where checkpoints, previews and logs go (config run_dir)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_train)

    q = sub.add_parser(
        "schedule",
        help="print the noise ladder and step size a config gives",
        description="Resolve σ₁, γ, L and ε (automatic rules of NCSNv2 where the "
        "config says 'auto') and say how each was obtained.",
    )
    add_config_args(q)
    q.add_argument("--list", action="store_true", help="also print every σ of the ladder")
    q.set_defaults(func=cmd_schedule)

    q = sub.add_parser(
        "info",
        help="summarise a run directory",
        description="Print what a run holds: latest checkpoint and step, data, "
        "model and parameter count, objective, noise ladder and step size, and the "
        "last logged loss and speed.",
    )
    q.add_argument("run_dir", help="run directory written by `ncsn train`")
    q.add_argument("--json", action="store_true", help="also print the checkpoint metadata")
    q.add_argument(
        "--per-sigma",
        action="store_true",
        help="print the held-out DSM loss per noise level at the first and the latest "
        "checkpoint (RUN/per_sigma.csv; plot in RUN/per_sigma.png)",
    )
    q.set_defaults(func=cmd_info)

    q = sub.add_parser(
        "bands",
        help="split the noise ladder into expert bands of equal loss",
        description="Measure a trained run's DSM loss at every level (EMA weights, --examples "
        "training examples, the same noise at every level) and print the band starts that "
        "give each of --experts networks an equal share of it, as a model.expert_bands "
        "setting for a new run with model.experts = K.",
    )
    q.add_argument("run_dir", help="run directory written by `ncsn train`")
    q.add_argument("--experts", type=int, required=True, help="number of bands K")
    q.add_argument("--examples", type=int, default=512, help="training examples (default 512)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, … (default auto)")
    q.set_defaults(func=cmd_bands)
