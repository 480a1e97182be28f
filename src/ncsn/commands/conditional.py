"""`ncsn inpaint`, `ncsn denoise`, `ncsn refine`: one trained run, applied to an image.

Images go through the package's guarded reader (:func:`ncsn.data.folder.read_image`) and must
have the model's size; ``--resize`` resizes them (bicubic) and says so. Nothing is written into
the run directory before the inputs have been read and checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ncsn.limits as limits
import ncsn.samplers.conditioning as conditioning
from ncsn.commands.common import (
    add_class_args,
    check_positive,
    class_request,
    load_run_for,
    run_args,
)
from ncsn.data.folder import read_image
from ncsn.errors import NCSNError
from ncsn.samplers import run
from ncsn.samplers.guided import denoise, estimate_sigma, inpaint, refine
from ncsn.viz import save_grid


def image_tensor(path: str, shape: tuple[int, ...], flag: str, resize: bool) -> torch.Tensor:
    """The image file ``path`` as (1, C, H, W) in [0, 1] with the model's channels; its size must
    be the model's (H, W) unless ``resize``."""
    c, h, w = shape
    img = read_image(path, "L" if c == 1 else "RGB", flag)
    if img.size != (w, h):
        if not resize:
            raise NCSNError(
                f"{flag} {path}: {img.size[0]}×{img.size[1]} pixels, but the model draws "
                f"{w}×{h}: pass an image of that size, or --resize to resize it"
            )
        print(f"{flag} {path}: resized from {img.size[0]}×{img.size[1]} to {w}×{h}")
        img = img.resize((w, h), Image.Resampling.BICUBIC)
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a))[None]


def _image_run(args):
    """Model, schedule, shape, output folder, the image and a seeded generator; the output
    folder is created only after every input was read and checked."""
    limits.seed(args.seed, "--seed")
    out = Path(args.out) if args.out else Path(args.run_dir) / args.command
    if out.exists() and not out.is_dir():
        raise NCSNError(f"--out {out}: is a file; expected a folder")
    model, sched, cfg, meta, device = load_run_for(args)
    labels, guidance = class_request(args, model, getattr(args, "n", 1), in_turn=False)
    if labels is not None and args.command == "denoise":
        labels = labels[:1]
    model = conditioning.conditioned(model, labels, guidance)
    shape = tuple(meta["data_shape"])
    if len(shape) != 3:
        raise NCSNError(f"{args.run_dir}: this run models vectors {shape}, not images")
    if args.command != "denoise":  # all --n completions are drawn in one batch
        limits.check_memory("--n", args.n, shape)
    y = image_tensor(args.image, shape, "--image", args.resize).to(device)
    mask = None
    if args.command == "inpaint":
        mask = image_tensor(args.mask, (1, *shape[1:]), "--mask", args.resize)
        mask = (mask >= 0.5).float().to(device)
    gen = torch.Generator(device).manual_seed(args.seed)
    out.mkdir(parents=True, exist_ok=True)
    return model, sched, shape, out, y, mask, gen


def cmd_inpaint(args) -> None:
    limits.check("sample.n", args.n, flag="--n")
    limits.check("sample.steps", args.steps, flag="--steps")
    model, sched, shape, out, y, mask, gen = _image_run(args)
    steps = args.steps or sched.steps_per_level
    x = inpaint(
        model,
        y.expand(args.n, *shape),  # a view: the sampler allocates its own state
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
    model, sched, shape, out, y, _, gen = _image_run(args)
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
    limits.check("sample.n", args.n, flag="--n")
    limits.check("sample.steps", args.steps, flag="--steps")
    check_positive("--sigma", args.sigma)
    model, sched, shape, out, y, _, gen = _image_run(args)
    steps = args.steps or sched.steps_per_level
    x = refine(
        model,
        y.expand(args.n, *shape),  # a view: the sampler allocates its own state
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


def _resize_arg(q) -> None:
    q.add_argument(
        "--resize", action="store_true", help="resize images of another size to the model's"
    )


def add_parsers(sub) -> None:
    """Register inpaint, denoise and refine."""
    q = sub.add_parser(
        "inpaint",
        help="fill in the missing part of an image",
        description="Annealed Langevin on the unknown pixels with the known ones held at their "
        "noisy versions (NCSN paper, App. B.3). The mask is an image: white = known.",
    )
    run_args(q, "inpaint")
    q.add_argument("--image", required=True, help="image file of the model's size")
    q.add_argument(
        "--mask", required=True, help="mask image, white (≥ 50%%) where pixels are known"
    )
    q.add_argument("--n", type=int, default=8, help="completions to draw (default 8)")
    q.add_argument("--steps", type=int, help="Langevin steps per level T")
    q.add_argument(
        "--resize",
        action="store_true",
        help="resize images of another size to the model's (bicubic)",
    )
    add_class_args(q)
    q.set_defaults(func=cmd_inpaint)

    q = sub.add_parser(
        "denoise",
        help="remove Gaussian noise from an image (Tweedie)",
        description="The posterior mean D(y, σ) = y + σ² s(y, σ) at a given σ, or at the "
        "maximum-likelihood σ estimated with the model.",
    )
    run_args(q, "denoise")
    q.add_argument("--image", required=True, help="noisy image file")
    q.add_argument(
        "--sigma", type=float, help="noise level on the [0, 1] scale (default: estimate)"
    )
    q.add_argument(
        "--resize",
        action="store_true",
        help="resize images of another size to the model's (bicubic)",
    )
    add_class_args(q)
    q.set_defaults(func=cmd_denoise)

    q = sub.add_parser(
        "refine",
        help="noise an image to σ and sample back (variations)",
        description="Go to data, add a little noise, go back: perturb the image to --sigma and "
        "run annealed Langevin over the levels at or below it.",
    )
    run_args(q, "refine")
    q.add_argument("--image", required=True, help="image file")
    q.add_argument("--sigma", type=float, required=True, help="noise level to start from")
    q.add_argument("--n", type=int, default=8, help="variations to draw (default 8)")
    q.add_argument("--steps", type=int, help="Langevin steps per level T")
    q.add_argument(
        "--resize",
        action="store_true",
        help="resize images of another size to the model's (bicubic)",
    )
    add_class_args(q)
    q.set_defaults(func=cmd_refine)
