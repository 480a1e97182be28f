"""The ``ncsn`` command: one function per subcommand.

Errors caused by the user (NCSNError) are printed as ``ncsn: error: …`` and exit with status 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
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
    from ncsn.train import train

    cfg = _load_config(args)
    summary = train(cfg, progress=not args.no_progress)
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


def cmd_sample(args) -> None:
    from ncsn.samplers.langevin import annealed_langevin
    from ncsn.train import load_run, resolve_device
    from ncsn.viz import make_grid, save_gif, save_grid, save_scatter, scatter_frame, to_uint8

    device = resolve_device(args.device)
    model, sched, cfg, meta = load_run(args.run_dir, ema=not args.raw_weights, device=device)
    s = cfg.sample
    n = args.n if args.n is not None else s.n
    seed = args.seed if args.seed is not None else s.seed
    steps = args.steps if args.steps is not None else sched.steps_per_level
    eps = args.eps if args.eps is not None else sched.step_size
    batch = args.batch_size or s.batch_size
    init = args.init or s.init
    for name, value in [("--n", n), ("--steps", steps), ("--batch-size", batch)]:
        if value < 1:
            raise NCSNError(f"{name} {value}: expected a positive integer")
    if not eps > 0:
        raise NCSNError(f"--eps {eps}: expected a positive number")
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples"
    out.mkdir(parents=True, exist_ok=True)
    shape = tuple(meta["data_shape"])
    is_image = len(shape) == 3

    total_steps = len(sched.sigmas) * steps
    every = max(1, total_steps // s.gif_frames)
    frames: list[np.ndarray] = []
    lim = 1.2 * sched.sigma_max

    def record(state: dict) -> None:
        if state["nfe"] % every == 0 or state["nfe"] > total_steps:
            x = state["x"][:64]
            frames.append(make_grid(x) if is_image else scatter_frame(x, lim=_toy_lim(x, lim)))

    gen = torch.Generator(device).manual_seed(seed)
    chunks, nfe = [], 0
    start = time.perf_counter()
    for i in range(0, n, batch):
        m = min(batch, n - i)
        if i == 0:
            first = initial_frame = None
            from ncsn.samplers.langevin import initial_noise

            first = initial_noise((m, *shape), sched.sigma_max, generator=gen, init=init)
            initial_frame = make_grid(first[:64]) if is_image else None
            if initial_frame is not None:
                frames.append(initial_frame)
        else:
            first = None
        x = annealed_langevin(
            model,
            (m, *shape),
            sched.sigmas,
            generator=gen,
            callback=record if i == 0 else None,
            eps=eps,
            n_steps_each=steps,
            init=init,
            denoise_final=not args.no_denoise,
            x=first,
        )
        nfe = total_steps + (0 if args.no_denoise else 1)
        chunks.append(x.float().cpu())
    elapsed = time.perf_counter() - start
    x = torch.cat(chunks)
    from ncsn.checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    if is_image:
        np.savez(buf, images=to_uint8(x))
        save_grid(x[: args.grid], out / "grid.png")
    else:
        np.savez(buf, samples=x.numpy())
        save_scatter(x, out / "scatter.png")
    atomic_write_bytes(out / "samples.npz", buf.getvalue())
    save_gif(frames, out / "chain.gif")
    print(
        f"{n} samples, sampler ald (L = {len(sched.sigmas)}, T = {steps}, ε = {eps:.4g}), "
        f"NFE {nfe} per sample, {elapsed:.1f} s on {device}"
    )
    names = ["grid.png" if is_image else "scatter.png", "chain.gif", "samples.npz"]
    print("wrote " + ", ".join(str(out / f) for f in names))


def _toy_lim(x: torch.Tensor, lim: float) -> float:
    return min(lim, 1.1 * float(x.abs().max()) + 1e-6) if x.numel() else lim


def cmd_info(args) -> None:
    from ncsn import checkpoint

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise NCSNError(f"{run_dir}: run directory not found")
    found = checkpoint.latest(run_dir / "checkpoints")
    if found is None:
        raise NCSNError(f"{run_dir}: no usable checkpoint in {run_dir / 'checkpoints'}")
    _, meta, path = found
    from ncsn.schedule import Schedule

    sched = Schedule(**meta["schedule"])
    cfg = meta["config"]
    print(f"run directory: {run_dir}")
    print(f"latest checkpoint: {path} (step {meta['step']} of {cfg['train']['steps']})")
    print(f"data: {meta['data_name']}, examples of shape {tuple(meta['data_shape'])}")
    m = cfg["model"]
    print(
        f"model: {m['net']}, parameterization {m['parameterization']}, "
        f"{meta['parameters']:,} parameters"
    )
    print(f"objective: {cfg['train']['objective']}, λ(σ) = σ^{cfg['train']['loss_power']}")
    print(sched.describe())
    metrics = run_dir / "metrics.csv"
    if metrics.exists():
        lines = metrics.read_text().strip().splitlines()
        if len(lines) > 1:
            last = dict(zip(lines[0].split(","), lines[-1].split(","), strict=False))
            print(
                f"last logged: step {last['step']}, loss {float(last['loss']):.5g}, "
                f"{float(last['steps_per_s']):.2f} steps/s"
            )
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

    q = sub.add_parser(
        "sample",
        help="draw samples from a trained run",
        description="Sample with annealed Langevin dynamics from the EMA weights of "
        "the run's latest checkpoint; writes grid.png (scatter.png for vectors), "
        "chain.gif (noise to data) and samples.npz (key 'images', uint8 N×H×W×C).",
    )
    q.add_argument("run_dir", help="run directory written by `ncsn train`")
    q.add_argument("--n", type=int, help="number of samples (default: sample.n of the run)")
    q.add_argument("--seed", type=int, help="random seed (same seed, same samples)")
    q.add_argument("--steps", type=int, help="Langevin steps per noise level T")
    q.add_argument(
        "--eps", type=float, help="step size ε, official convention (default: the run's)"
    )
    q.add_argument("--init", choices=["uniform", "gaussian"], help="starting noise")
    q.add_argument("--no-denoise", action="store_true", help="skip the final denoising step")
    q.add_argument("--batch-size", type=int, help="samples per batch")
    q.add_argument("--grid", type=int, default=100, help="samples shown in grid.png (default 100)")
    q.add_argument("--out", help="output folder (default RUN_DIR/samples)")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, … (default auto)")
    q.add_argument("--raw-weights", action="store_true", help="use the raw weights, not the EMA")
    q.set_defaults(func=cmd_sample)

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
    return p


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
    except torch.OutOfMemoryError:
        print(
            "ncsn: error: out of memory: lower train.batch_size (or --batch-size when sampling)",
            file=sys.stderr,
        )
        return 2
    except OSError as e:
        if e.errno == errno.ENOSPC:
            print(
                f"ncsn: error: disk full while writing {e.filename or ''}: free space and rerun "
                "(training resumes from the last checkpoint)",
                file=sys.stderr,
            )
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
