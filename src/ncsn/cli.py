"""The ``ncsn`` command: one function per subcommand.

Errors caused by the user (NCSNError) are printed as ``ncsn: error: …`` and exit with status 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path

import torch

from ncsn import config
from ncsn.errors import NCSNError

PRESETS = Path(__file__).resolve().parent / "configs"


def _config_path(name: str | None) -> Path | None:
    """A config file path, or a preset name such as ``digits`` (from ncsn/configs)."""
    if name is None:
        return None
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    preset = PRESETS / f"{name}.yaml"
    if preset.exists():
        return preset
    known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
    raise NCSNError(f"--config {name!r}: no such file, nor a preset (presets: {known})")


def _load_config(args) -> config.Config:
    overrides = list(args.set or [])
    if getattr(args, "run_dir", None):
        overrides.append(f"run_dir={args.run_dir}")
    return config.load(_config_path(args.config), overrides)


def cmd_train(args) -> None:
    from ncsn.distributed import world
    from ncsn.train import train

    cfg = _load_config(args)
    summary = train(cfg, progress=not args.no_progress)
    if world().main:
        print(f"trained to step {summary['step']}; run directory: {summary['run_dir']}")


def cmd_schedule(args) -> None:
    from ncsn import schedule
    from ncsn.data import load_dataset

    cfg = _load_config(args)
    needs_data = cfg.schedule.sigma_max == "auto" or cfg.schedule.num_levels == "auto"
    data = load_dataset(cfg.data, seed=cfg.train.seed) if needs_data else None
    if data is not None:
        print(f"data: {data.name}, {len(data)} examples of shape {data.shape}")
    sched = schedule.resolve(cfg.schedule, data.as_float() if data is not None else None)
    print(sched.describe())
    if args.list:
        print("sigmas: " + ", ".join(f"{s:.6g}" for s in sched.sigmas))


def cmd_info(args) -> None:
    import csv

    from ncsn import checkpoint, train_state

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise NCSNError(f"{run_dir}: run directory not found")
    found = checkpoint.latest(run_dir / "checkpoints", check=train_state.check_meta)
    if found is None:
        raise NCSNError(f"{run_dir}: no usable checkpoint in {run_dir / 'checkpoints'}")
    _, meta, path = found
    cfg, sched = train_state.parse_meta(meta, path)
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
    print(f"objective: {cfg.train.objective}, λ(σ) = σ^{cfg.train.loss_power}")
    print(sched.describe())
    last = None
    metrics = run_dir / "metrics.csv"
    if metrics.exists():
        with open(metrics, newline="", errors="replace") as f:
            try:
                for row in csv.DictReader(f):
                    try:  # a crash can leave a half-written last row: keep the last whole one
                        last = (int(row["step"]), float(row["loss"]), float(row["steps_per_s"]))
                    except (KeyError, TypeError, ValueError):
                        continue
            except csv.Error:
                pass
    if last is not None:
        print(f"last logged: step {last[0]}, loss {last[1]:.5g}, {last[2]:.2f} steps/s")
    if args.json:
        print(json.dumps(meta, indent=1))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ncsn",
        description="Noise Conditional Score Networks: train a score model with denoising score "
        "matching and sample it with annealed Langevin dynamics.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_config_args(q):
        q.add_argument(
            "--config",
            "-c",
            help="YAML config file, or a preset name: "
            + ", ".join(sorted(x.stem for x in PRESETS.glob("*.yaml")))
            + " (default: built-in defaults, the digits data)",
        )
        q.add_argument(
            "--set",
            "-s",
            action="append",
            metavar="KEY=VALUE",
            help="override a config value, e.g. --set train.steps=2000 (repeatable; "
            "values are parsed as YAML)",
        )

    q = sub.add_parser(
        "train",
        help="train a model (resumes from the run's latest checkpoint)",
        description="Train an NCSN. If the run directory already has checkpoints, "
        "training resumes from the latest one (same data/model/schedule settings "
        "required); raise train.steps to train longer.",
    )
    add_config_args(q)
    q.add_argument("--run-dir", help="where checkpoints, previews and logs go (config run_dir)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_train)

    from ncsn.sampling_cli import add_parsers as add_sampling_parsers

    add_sampling_parsers(sub)

    q = sub.add_parser(
        "schedule",
        help="print the noise ladder and step size a config gives",
        description="Resolve σ₁, γ, L and ε (automatic rules of NCSNv2 where the "
        "config says 'auto') and say how each was obtained.",
    )
    add_config_args(q)
    q.add_argument("--list", action="store_true", help="also print every σ of the ladder")
    q.set_defaults(func=cmd_schedule)

    from ncsn.evaluate_cmd import add_parser as add_evaluate_parser
    from ncsn.toy_experiment import add_parser as add_toy_parser

    add_toy_parser(sub)
    add_evaluate_parser(sub)

    q = sub.add_parser(
        "info",
        help="summarise a run directory",
        description="Print what a run holds: latest checkpoint and step, data, "
        "model and parameter count, objective, noise ladder and step size, and the "
        "last logged loss and speed.",
    )
    q.add_argument("run_dir", help="run directory written by `ncsn train`")
    q.add_argument("--json", action="store_true", help="also print the checkpoint metadata")
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
    return p


def cmd_bands(args) -> None:
    from ncsn.data import load_dataset
    from ncsn.devices import resolve_device
    from ncsn.nets.experts import per_level_loss, split_by_loss
    from ncsn.train_state import load_run

    if args.experts < 2:
        raise NCSNError(f"--experts {args.experts}: expected 2 or more")
    if args.examples < 1:
        raise NCSNError(f"--examples {args.examples}: expected a positive number")
    model, sched, cfg, _ = load_run(args.run_dir, device=resolve_device(args.device))
    data = load_dataset(cfg.data, seed=cfg.train.seed)
    gen = torch.Generator().manual_seed(args.seed)
    index = torch.randperm(len(data), generator=gen)[: args.examples]
    x = data.batch(index, generator=gen, dequantize=cfg.data.dequantize, hflip=False)
    x = x.to(next(model.parameters()).device)
    with torch.inference_mode():
        losses = per_level_loss(model, x, sched.sigmas, generator=gen, power=cfg.train.loss_power)
    starts = split_by_loss(losses, args.experts)
    total = sum(losses)
    for i, (sigma, loss) in enumerate(zip(sched.sigmas, losses, strict=True)):
        band = sum(i >= s for s in starts) - 1
        print(
            f"level {i:3d}  σ = {sigma:<10.4g} loss {loss:10.4g} ({loss / total:6.1%}) band {band}"
        )
    print(f"model.expert_bands={starts}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except NCSNError as e:
        print(f"ncsn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ncsn: interrupted", file=sys.stderr)
        return 130
    except (torch.OutOfMemoryError, MemoryError):
        print(
            "ncsn: error: out of memory: lower train.batch_size (or --batch-size when sampling)",
            file=sys.stderr,
        )
        return 2
    except OSError as e:  # the file system refused: say which file and why, no traceback
        where = f" {e.filename}" if e.filename else ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            print(
                f"ncsn: error: disk full while writing{where}: free space and rerun "
                "(training resumes from the last checkpoint)",
                file=sys.stderr,
            )
        else:
            print(f"ncsn: error: cannot access{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
