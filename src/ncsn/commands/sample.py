"""`ncsn sample`: draw samples from a trained run through :func:`ncsn.samplers.run.batches`
(what ``--steps`` means for each sampler, and its NFE, is said there).

Samples are written to ``samples.npz`` batch by batch (:func:`ncsn.files.npz_writer`), so ``--n``
is bounded by the disk, not by memory; a request the disk cannot hold is refused before sampling,
with the estimate. The grid shows the first ``--grid`` samples and the animation the first batch.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

import ncsn.limits as limits
import ncsn.samplers.gits as gits
from ncsn.commands.common import (
    add_class_args,
    add_sampler_args,
    class_request,
    load_run_for,
    run_args,
    sampler_options,
)
from ncsn.devices import compile_module
from ncsn.errors import NCSNError
from ncsn.files import npz_writer
from ncsn.samplers import run
from ncsn.viz import make_grid, save_gif, save_grid, save_scatter, scatter_frame, to_uint8

SCATTER_POINTS = 20_000  # vectors: points drawn in scatter.png


def cmd_sample(args) -> None:
    limits.check("sample.n", args.n, flag="--n")
    limits.check("sample.batch_size", args.batch_size, flag="--batch-size")
    limits.check("sample.grid", args.grid, flag="--grid")
    limits.seed(args.seed, "--seed")
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples"
    if out.exists() and not out.is_dir():
        raise NCSNError(f"--out {out}: is a file; expected a folder for the samples")
    model, sched, cfg, meta, device = load_run_for(args)
    n = args.n if args.n is not None else cfg.sample.n
    seed = args.seed if args.seed is not None else cfg.sample.seed
    batch_size = min(args.batch_size or cfg.sample.batch_size, n)
    opts = sampler_options(args, cfg)
    labels, guidance = class_request(args, model, n)
    shape = tuple(meta["data_shape"])
    is_image = len(shape) == 3
    key, dtype = ("images", np.uint8) if is_image else ("samples", np.float32)
    rows = (n, *shape[1:], shape[0]) if is_image else (n, *shape)
    _check_disk(out, int(np.prod(rows)) * np.dtype(dtype).itemsize)
    limits.check_memory("--batch-size", batch_size, shape)
    if args.compile:  # torch.compile of the network: 1.4× the NFE/s on this CPU (benchmarks)
        model.net = compile_module(model.net, device, "--compile")

    frames: list[np.ndarray] = []
    lim = 1.2 * sched.sigma_max

    def record(state: dict) -> None:
        x = state["x"][:64]
        frames.append(make_grid(x) if is_image else scatter_frame(x, lim=_lim(x, lim)))

    shown, keep = [], args.grid if is_image else SCATTER_POINTS
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        extra = {} if labels is None else {"labels": labels.numpy()}
        with npz_writer(out / "samples.npz", key, rows, dtype, extra=extra) as write:
            for batch in run.batches(
                model, sched, n, shape, seed=seed, batch_size=batch_size, sampler=args.sampler,
                steps=args.steps, opts=opts, callback=record, labels=labels, guidance=guidance,
            ):  # fmt: skip
                x = batch[0].float().cpu()
                write(to_uint8(x) if is_image else x.numpy())
                shown.append(x[:keep])
                keep -= len(shown[-1])
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # a failed run leaves no empty folder
        raise
    _, nfe, text = batch
    elapsed = time.perf_counter() - start
    x = torch.cat(shown)
    if not frames:  # the sampler took no step (e.g. pc with --steps 1): show the result
        record({"x": x})
    every = max(1, len(frames) // cfg.sample.gif_frames)
    frames = frames[::every] + ([frames[-1]] if (len(frames) - 1) % every else [])
    if is_image:
        per_row, names = _class_rows(args, labels, meta, len(x))
        save_grid(x, out / "grid.png", per_row, names)
    else:
        save_scatter(x, out / "scatter.png")
    save_gif(frames, out / "chain.gif")
    print(f"{n} samples, sampler {text}, NFE {nfe} per sample, {elapsed:.1f} s on {device}")
    names = ["grid.png" if is_image else "scatter.png", "chain.gif", "samples.npz"]
    print("wrote " + ", ".join(str(out / f) for f in names))


def _class_rows(args, labels, meta: dict, shown: int) -> tuple[int | None, list[str] | None]:
    """``--class all``: the grid's images per row (the samples of each class) and each row's
    class name (from the run's class table); otherwise the default grid."""
    if labels is None or args.classes != "all":
        return None, None
    names = meta.get("classes") or [str(i) for i in range(int(labels.max()) + 1)]
    counts = torch.bincount(labels, minlength=len(names))
    per_row = int(counts.max())
    if shown < len(labels) or int(counts.min()) != per_row:  # rows of unequal length
        return None, None
    return per_row, [names[k] for k in range(len(names)) if counts[k]]


def _check_disk(out: Path, nbytes: int) -> None:
    """Refuse, before sampling, a samples.npz larger than the free space where it goes."""
    folder = out
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise NCSNError(
            f"--n: samples.npz would take {nbytes / 2**30:,.1f} GiB and {folder} has "
            f"{free / 2**30:,.1f} GiB free: lower --n or choose another --out"
        )


def _lim(x: torch.Tensor, lim: float) -> float:
    return min(lim, 1.1 * float(x.abs().max()) + 1e-6) if x.numel() else lim


def cmd_steps(args) -> None:
    """``ncsn steps``: GITS schedules of the ``--steps`` sizes, stored in the run."""
    sizes = sorted({int(v) for v in _int_list(args.steps, "--steps")})
    limits.check("sample.steps", args.warmup, flag="--warmup", least=2)
    limits.check("sample.steps", args.grid, flag="--grid", least=3)
    limits.seed(args.seed, "--seed")
    for n in sizes:
        if not 2 <= n <= args.grid:
            raise NCSNError(f"--steps {n}: expected 2 to --grid {args.grid} levels")
    model, sched, cfg, meta, device = load_run_for(args)
    shape = tuple(meta["data_shape"])
    limits.check_memory("--warmup", min(args.warmup, args.batch_size), shape, copies=2 * args.grid)
    grid = gits.fine_grid(sched.sigma_max, sched.sigma_min, args.grid)
    start = time.perf_counter()
    gen = torch.Generator(device).manual_seed(args.seed)
    cost = gits.teacher_costs(
        model, (args.warmup, *shape), grid, generator=gen, mean=run.ode_mean(sched, (1, *shape)),
        batch_size=args.batch_size,
    )  # fmt: skip
    ladders = {n: gits.gits_sigmas(cost, grid, n) for n in sizes}
    how = {"warmup": args.warmup, "grid": args.grid, "seed": args.seed, "step": meta["step"],
           "teacher": f"Heun on the {args.grid}-level ρ = 7 grid", "seconds":
           round(time.perf_counter() - start, 1)}  # fmt: skip
    path = gits.save(args.run_dir, "gits", ladders, how)
    for n, ladder in ladders.items():
        print(f"gits N = {n}: σ = " + ", ".join(f"{s:.4g}" for s in ladder))
    print(
        f"{args.warmup} warm-up trajectories ({2 * args.grid - 2} NFE each), {how['seconds']} s; "
        f"wrote {path}; sample with --step-schedule gits --steps N"
    )


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise NCSNError(f"{flag} {text}: expected integers separated by commas") from None


def add_parsers(sub) -> None:
    """Register sample and steps."""
    q = sub.add_parser(
        "steps",
        help="step schedules optimised for a trained run (GITS), for --step-schedule gits",
        description="GITS (Chen et al. 2024): draw --warmup probability-flow trajectories with a "
        "fine Heun teacher, then choose by dynamic programming the N levels whose one-step "
        "(Euler) jumps stay closest to them. Stored in RUN_DIR/step_schedules.json; "
        "`ncsn sample RUN_DIR --sampler ipndm --step-schedule gits --steps N` uses them.",
    )
    q.add_argument("run_dir", help="run directory written by `ncsn train`")
    q.add_argument("--steps", default="4,6,8,10", help="levels N, comma-separated (4,6,8,10)")
    q.add_argument("--warmup", type=int, default=256, help="warm-up trajectories (256)")
    q.add_argument("--grid", type=int, default=64, help="levels of the fine grid (64)")
    q.add_argument("--batch-size", type=int, default=128, help="trajectories per batch (128)")
    q.add_argument("--seed", type=int, default=0, help="seed of the warm-up trajectories (0)")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, … (default auto)")
    q.add_argument("--raw-weights", action="store_true", help="use the raw weights, not the EMA")
    q.set_defaults(func=cmd_steps)

    q = sub.add_parser(
        "sample",
        help="draw samples from a trained run",
        description="Sample from the EMA weights of the run's latest checkpoint; writes grid.png "
        "(scatter.png for vectors), chain.gif (noise to data) and samples.npz (key 'images', "
        "uint8 N×H×W×C). Prints the NFE per sample and the wall time. Samplers: ald = annealed "
        "Langevin (paper), pc = predictor–corrector (reverse diffusion + Langevin, Song et al. "
        "2021), ode = probability-flow ODE with Heun steps (Karras et al. 2022), churn = its "
        "stochastic variant, ipndm and dpmpp_2m = multistep ODE solvers (one evaluation per "
        "step; Zhang & Chen 2023, Lu et al. 2022), dpmpp_2m_sde = the stochastic 2M, unipc = "
        "the multistep predictor–corrector UniPC (Zhao et al. 2023), restart = Heun or 2M with "
        "restart intervals (Xu et al. 2023). Class-conditional runs take --class and "
        "--guidance (samples.npz then also holds 'labels').",
    )
    run_args(q, "samples")
    q.set_defaults(seed=None)
    q.add_argument("--n", type=int, help="number of samples (default: sample.n of the run)")
    add_sampler_args(q)
    add_class_args(q)
    q.add_argument(
        "--batch-size",
        type=int,
        help="samples per batch (default: sample.batch_size of the run); on a 2-core CPU smaller "
        "batches are faster per sample (50 against 250: 1.05–1.15× in docs/benchmarks.md); the "
        "same seed at another batch size gives other samples",
    )
    q.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network first (pays off for long runs: compiling takes a minute "
        "or more; same samples up to float rounding)",
    )
    q.add_argument("--grid", type=int, default=100, help="samples shown in grid.png (default 100)")
    q.set_defaults(func=cmd_sample)
