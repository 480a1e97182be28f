"""`ncsn sample`, `ncsn inpaint`, `ncsn denoise`, `ncsn refine`: one trained run, many uses.

The samplers themselves are run by name through :func:`ncsn.samplers.run.batches` (what
``--steps`` means for each, and its NFE, is said there).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ncsn.commands.common import add_sampler_args, check_positive, sampler_options
from ncsn.devices import compile_module, resolve_device
from ncsn.errors import NCSNError
from ncsn.files import atomic_write_bytes
from ncsn.samplers import run
from ncsn.samplers.guided import denoise, estimate_sigma, inpaint, refine
from ncsn.training.state import load_run
from ncsn.viz import make_grid, save_gif, save_grid, save_scatter, scatter_frame, to_uint8


def _load(args):
    device = resolve_device(args.device)
    model, sched, cfg, meta = load_run(args.run_dir, ema=not args.raw_weights, device=device)
    return model, sched, cfg, meta, device


def cmd_sample(args) -> None:
    model, sched, cfg, meta, device = _load(args)
    n = args.n if args.n is not None else cfg.sample.n
    seed = args.seed if args.seed is not None else cfg.sample.seed
    batch_size = args.batch_size or cfg.sample.batch_size
    for name, value in [("--n", n), ("--batch-size", batch_size), ("--grid", args.grid)]:
        check_positive(name, value)
    opts = sampler_options(args, cfg)
    if args.compile:  # torch.compile of the network: 1.4× the NFE/s on this CPU (benchmarks)
        model.net = compile_module(model.net, device, "--compile")
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples"
    shape = tuple(meta["data_shape"])
    is_image = len(shape) == 3
    frames: list[np.ndarray] = []
    lim = 1.2 * sched.sigma_max

    def record(state: dict) -> None:
        x = state["x"][:64]
        frames.append(make_grid(x) if is_image else scatter_frame(x, lim=_lim(x, lim)))

    chunks = []
    start = time.perf_counter()
    for batch in run.batches(
        model, sched, n, shape, seed=seed, batch_size=batch_size, sampler=args.sampler,
        steps=args.steps, opts=opts, callback=record,
    ):  # fmt: skip
        chunks.append(batch[0].float().cpu())
    _, nfe, text = batch
    elapsed = time.perf_counter() - start
    x = torch.cat(chunks)
    if not frames:  # the sampler took no step (e.g. pc with --steps 1): show the result
        record({"x": x})
    keep = max(1, len(frames) // cfg.sample.gif_frames)
    frames = frames[::keep] + ([frames[-1]] if (len(frames) - 1) % keep else [])
    out.mkdir(parents=True, exist_ok=True)  # only now: a failed run leaves no empty folder
    buf = io.BytesIO()
    if is_image:
        np.savez(buf, images=to_uint8(x))
        save_grid(x[: args.grid], out / "grid.png")
    else:
        np.savez(buf, samples=x.numpy())
        save_scatter(x, out / "scatter.png")
    atomic_write_bytes(out / "samples.npz", buf.getvalue())
    save_gif(frames, out / "chain.gif")
    print(f"{n} samples, sampler {text}, NFE {nfe} per sample, {elapsed:.1f} s on {device}")
    names = ["grid.png" if is_image else "scatter.png", "chain.gif", "samples.npz"]
    print("wrote " + ", ".join(str(out / f) for f in names))


def _lim(x: torch.Tensor, lim: float) -> float:
    return min(lim, 1.1 * float(x.abs().max()) + 1e-6) if x.numel() else lim


def read_image(path: str | Path, shape: tuple[int, ...]) -> torch.Tensor:
    """An image file as (1, C, H, W) in [0, 1], converted to the model's channels and size."""
    c, h, w = shape
    try:
        with Image.open(path) as im:
            im = im.convert("L" if c == 1 else "RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BICUBIC)
            a = np.asarray(im, dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise NCSNError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise NCSNError(f"{path}: not an image Pillow can read ({e})") from None
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a))[None]


def _image_run(args):
    model, sched, cfg, meta, device = _load(args)
    shape = tuple(meta["data_shape"])
    if len(shape) != 3:
        raise NCSNError(f"{args.run_dir}: this run models vectors {shape}, not images")
    out = Path(args.out) if args.out else Path(args.run_dir) / args.command
    out.mkdir(parents=True, exist_ok=True)
    y = read_image(args.image, shape).to(device)
    gen = torch.Generator(device).manual_seed(args.seed)
    return model, sched, shape, out, y, gen


def cmd_inpaint(args) -> None:
    check_positive("--n", args.n)
    model, sched, shape, out, y, gen = _image_run(args)
    mask = (read_image(args.mask, (1, *shape[1:])) >= 0.5).float().to(y.device)
    steps = args.steps or sched.steps_per_level
    x = inpaint(
        model,
        y.expand(args.n, *shape).contiguous(),
        mask,
        sched.sigmas,
        generator=gen,
        eps=run.ald_eps(sched, steps, None),
        n_steps_each=steps,
    )
    save_grid(torch.cat([y * mask, x]), out / "inpainted.png", nrow=args.n + 1)
    print(
        f"known pixels: {int(mask.sum())} of {mask.numel()}; wrote {out / 'inpainted.png'} "
        "(first cell: the known pixels)"
    )


def cmd_denoise(args) -> None:
    check_positive("--sigma", args.sigma)
    model, sched, shape, out, y, gen = _image_run(args)
    if args.sigma is None:
        sigma = estimate_sigma(model, y, sched.sigmas, generator=gen)
        how = "estimated (maximum likelihood under the model)"
    else:
        sigma, how = torch.tensor([args.sigma], device=y.device), "given"
    x = denoise(model, y, sigma)
    save_grid(x, out / "denoised.png")
    save_grid(torch.cat([y, x]), out / "before_after.png", nrow=2)
    print(f"σ = {float(sigma[0]):.4g} ({how}); wrote {out / 'denoised.png'}")


def cmd_refine(args) -> None:
    check_positive("--n", args.n)
    check_positive("--sigma", args.sigma)
    model, sched, shape, out, y, gen = _image_run(args)
    steps = args.steps or sched.steps_per_level
    x = refine(
        model,
        y.expand(args.n, *shape).contiguous(),
        sched.sigmas,
        args.sigma,
        generator=gen,
        eps=run.ald_eps(sched, steps, None),
        n_steps_each=steps,
    )
    save_grid(torch.cat([y, x]), out / "refined.png", nrow=args.n + 1)
    print(
        f"noised to σ = {args.sigma} and sampled back; wrote {out / 'refined.png'} "
        "(first cell: the input)"
    )


def _common(q, default_out: str) -> None:
    q.add_argument("run_dir", help="run directory written by `ncsn train`")
    q.add_argument("--seed", type=int, default=0, help="random seed (same seed, same output)")
    q.add_argument("--out", help=f"output folder (default RUN_DIR/{default_out})")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, … (default auto)")
    q.add_argument("--raw-weights", action="store_true", help="use the raw weights, not the EMA")


def add_parsers(sub) -> None:
    """Register sample, inpaint, denoise and refine."""
    q = sub.add_parser(
        "sample",
        help="draw samples from a trained run",
        description="Sample from the EMA weights of the run's latest checkpoint; writes grid.png "
        "(scatter.png for vectors), chain.gif (noise to data) and samples.npz (key 'images', "
        "uint8 N×H×W×C). Prints the NFE per sample and the wall time. Samplers: ald = annealed "
        "Langevin (paper), pc = predictor–corrector (reverse diffusion + Langevin, Song et al. "
        "2021), ode = probability-flow ODE with Heun steps (Karras et al. 2022), churn = its "
        "stochastic variant.",
    )
    _common(q, "samples")
    q.set_defaults(seed=None)
    q.add_argument("--n", type=int, help="number of samples (default: sample.n of the run)")
    add_sampler_args(q)
    q.add_argument("--batch-size", type=int, help="samples per batch")
    q.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network first (pays off for long runs: compiling takes a minute "
        "or more; same samples up to float rounding)",
    )
    q.add_argument("--grid", type=int, default=100, help="samples shown in grid.png (default 100)")
    q.set_defaults(func=cmd_sample)

    q = sub.add_parser(
        "inpaint",
        help="fill in the missing part of an image",
        description="Annealed Langevin on the unknown pixels with the known ones held at their "
        "noisy versions (NCSN paper, App. B.3). The mask is an image: white = known.",
    )
    _common(q, "inpaint")
    q.add_argument("--image", required=True, help="image file (resized to the model's size)")
    q.add_argument(
        "--mask", required=True, help="mask image, white (≥ 50%%) where pixels are known"
    )
    q.add_argument("--n", type=int, default=8, help="completions to draw (default 8)")
    q.add_argument("--steps", type=int, help="Langevin steps per level T")
    q.set_defaults(func=cmd_inpaint)

    q = sub.add_parser(
        "denoise",
        help="remove Gaussian noise from an image (Tweedie)",
        description="The posterior mean D(y, σ) = y + σ² s(y, σ) at a given σ, or at the "
        "maximum-likelihood σ estimated with the model.",
    )
    _common(q, "denoise")
    q.add_argument("--image", required=True, help="noisy image file")
    q.add_argument(
        "--sigma", type=float, help="noise level on the [0, 1] scale (default: estimate)"
    )
    q.set_defaults(func=cmd_denoise)

    q = sub.add_parser(
        "refine",
        help="noise an image to σ and sample back (variations)",
        description="Go to data, add a little noise, go back: perturb the image to --sigma and "
        "run annealed Langevin over the levels at or below it.",
    )
    _common(q, "refine")
    q.add_argument("--image", required=True, help="image file")
    q.add_argument("--sigma", type=float, required=True, help="noise level to start from")
    q.add_argument("--n", type=int, default=8, help="variations to draw (default 8)")
    q.add_argument("--steps", type=int, help="Langevin steps per level T")
    q.set_defaults(func=cmd_refine)
