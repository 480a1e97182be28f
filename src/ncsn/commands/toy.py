"""``ncsn toy``: train an MLP on a 2-D toy and draw learned-vs-exact score fields, errors per σ,
particles and weights (the work is :func:`ncsn.lab.toy.run_toy`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

import ncsn.limits as limits
from ncsn.data.toy import TOY_NAMES
from ncsn.lab.toy import DEFAULT_STEPS, run_toy


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run on one intra-op thread: the toy MLP gains nothing from more, and on a shared CPU
    spinning threads can make training several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def add_parsers(sub) -> None:
    """Register the ``toy`` subcommand on the CLI's subparsers."""
    q = sub.add_parser(
        "toy",
        help="train on a 2-D toy and compare the learned score with the exact one",
        description="Train a small MLP NCSN on a 2-D toy distribution (under a minute on one "
        "CPU core for the mixtures, about 80 s for the sample-only presets), then draw: "
        "density.png (exact log-density, or a histogram of samples), "
        "score_field.png (learned score field next to the exact one at 4 noise levels), "
        "score_error.png/.json (relative error E|s_θ − s*|²/E|s*|² at every level), "
        "langevin.gif and samples.png (annealed Langevin particles, noise to data), and "
        "weights.png/.json (mixture weights recovered by the particles next to the true "
        "ones). Pictures that need the exact score are skipped for the sample-only presets. "
        "Rerunning with the same --out reuses the trained run (a larger --steps resumes it).",
    )
    q.add_argument(
        "--preset",
        default="mixture",
        help="toy distribution: " + ", ".join(TOY_NAMES) + " (the last two are sample-only; "
        "default: mixture)",
    )
    q.add_argument(
        "--steps",
        type=int,
        help="training steps (default: "
        + ", ".join(f"{n} for {name}" for name, n in DEFAULT_STEPS.items())
        + "); a larger value resumes a finished run",
    )
    q.add_argument(
        "--objective",
        choices=["dsm", "ssm"],
        default="dsm",
        help="denoising (default) or sliced score matching",
    )
    q.add_argument(
        "--seed", type=int, default=0, help="seed of data, weights and sampling (default 0)"
    )
    q.add_argument(
        "--particles", type=int, default=2000, help="Langevin particles to draw (default 2000)"
    )
    q.add_argument("--out", help="output folder; the run goes to OUT/run (default runs/toy-PRESET)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=_cmd_toy)


def _cmd_toy(args) -> None:
    limits.check("train.steps", args.steps, flag="--steps")
    limits.check("toy.particles", args.particles, flag="--particles")
    limits.seed(args.seed, "--seed")
    out = Path(args.out) if args.out else Path("runs") / f"toy-{args.preset}"
    with _one_thread():
        paths = run_toy(
            args.preset,
            out,
            steps=args.steps,
            objective=args.objective,
            seed=args.seed,
            particles=args.particles,
            progress=not args.no_progress,
        )
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
