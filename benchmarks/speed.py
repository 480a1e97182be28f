"""Training and sampling speed: our loops against the bare network, fp32 against bf16.

For each model (the digits U-Net, the MNIST U-Net, the paper's RefineNet) and precision:
- training: steps/s and images/s of `ncsn.train.train` itself next to the bare network's
  forward + backward on a batch of the same size, in alternation in one process: bare repeats,
  a block of ``--steps`` training steps (the run resumes from the block before), bare repeats
  with the weights the block reached (they change the kernels' speed), …
  Each block's overhead is its median logged window (the first dropped as warm-up) over the mean
  of the bare medians just before and after it, minus 1; the row reports the median over
  ``--blocks`` blocks and their range, so slow drifts of the machine cancel;
- sampling: network evaluations/s of `annealed_langevin` next to bare forwards under
  `torch.inference_mode`, same batch, timed in alternation (medians of each);
- peak memory: CUDA's max allocated, or the process's max RSS on the CPU (monotone over the run).

    python benchmarks/speed.py [--smoke] [--out benchmarks/results] [--device auto]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ncsn import config
from ncsn.devices import resolve_device
from ncsn.model import build_model, count_parameters
from ncsn.samplers.langevin import annealed_langevin
from ncsn.train import train
from ncsn.train_state import load_run

MODELS = {  # name: (preset, image side, channels, batch, overrides)
    "unet-digits": ("digits", 8, 1, 128, []),
    "unet-mnist": ("mnist", 28, 1, 64, ["model.dropout=0.0"]),
    "refinenet-mnist": ("mnist_paper", 28, 1, 16, []),
}
PRESETS = Path(__file__).resolve().parents[1] / "configs"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_time(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(
    name: str,
    variant: str,
    device: torch.device,
    steps: int,
    work: Path,
    smoke: bool,
    batch: int | None = None,
    blocks: int = 5,
) -> dict:
    """One model in one variant: ``fp32`` or ``bf16``, with ``+cl`` (channels-last) and/or
    ``+compile`` (torch.compile) appended, applied alike to our loops and the bare network."""
    preset, side, channels, own_batch, extra = MODELS[name]
    batch = batch or own_batch
    precision, *flags = variant.split("+")
    if precision not in ("fp32", "bf16") or set(flags) - {"cl", "compile"}:
        raise SystemExit(f"--variants: {variant!r} is not fp32|bf16[+cl][+compile]")
    channels_last, compile_ = "cl" in flags, "compile" in flags
    rng = np.random.default_rng(0)
    data = work / f"{name}.npz"
    np.savez(data, images=rng.integers(0, 256, (512, side, side, channels), dtype=np.uint8))
    overrides = [
        "data.name=npz",
        f"data.root={data}",
        "data.subset=null",
        f"train.batch_size={batch}",
        f"train.precision={precision}",
        f"train.channels_last={channels_last}",
        f"train.compile={compile_}",
        f"train.device={device}",
        "train.preview_every=0",
        f"train.checkpoint_every={steps}",  # at each block's end, after its last log window
        f"train.log_every={max(1, steps // 6)}",
        f"run_dir={work / f'{name}-{variant}'}",
        "train.warmup=0",
        "schedule.sigma_max=10.0",
        "schedule.num_levels=10",
        "schedule.step_size=2e-5",
        *extra,
    ]
    if smoke:
        overrides += ["model.channels=8", "model.groups=4", "model.ngf=8"]
    cfg = config.load(PRESETS / f"{preset}.yaml", [*overrides, f"train.steps={steps}"])
    sigmas = torch.logspace(1, -2, 10)  # the ladder the overrides give: 10 → 0.01, L = 10
    model = build_model(cfg.model, (channels, side, side), sigmas.tolist()).to(device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    net = torch.compile(model.net) if compile_ else model.net
    x = torch.rand(batch, channels, side, side, device=device).to(memory_format=layout)
    sigma = sigmas.to(device)[torch.randint(10, (batch,))]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def bare_step():
        with autocast:
            out = net(x, sigma)
        out.float().square().mean().backward()

    def bare_forward():
        with torch.inference_mode(), autocast:
            net(x, sigma)

    reps = 3 if smoke else 8
    bare_step()
    bare_medians = [_median_time(bare_step, reps, device)]
    windows, overheads, seen = [], [], 0
    for block in range(1, blocks + 1):  # bare, block, bare, block, …, bare
        cfg_block = config.load(
            PRESETS / f"{preset}.yaml", [*overrides, f"train.steps={block * steps}"]
        )
        train(cfg_block, progress=False, log=lambda *_: None)
        # the bare network gets the weights training reached: trained weights run slower
        # kernels than fresh ones (RefineNet fp32 on this CPU: +20 % per step)
        trained, *_ = load_run(cfg.run_dir, ema=False, device=device, log=lambda *_: None)
        model.load_state_dict(trained.state_dict())
        bare_medians.append(_median_time(bare_step, reps, device))
        with open(Path(cfg.run_dir) / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        block_windows = [1.0 / float(r["steps_per_s"]) for r in rows[seen:]][1:]
        seen = len(rows)
        windows += block_windows
        bracket = (bare_medians[-2] + bare_medians[-1]) / 2
        overheads.append(statistics.median(block_windows) / bracket - 1.0)
    ours_step = statistics.median(windows)
    bare = statistics.median(bare_medians)

    if compile_:  # the sampler runs the compiled network too, as the bare forward does
        model.net = net
    model.eval()
    sampler_steps = 3 if smoke else 10
    gen = torch.Generator(device).manual_seed(0)

    def sample():
        with autocast:
            annealed_langevin(
                model,
                x.shape,
                sigmas[:1].tolist(),
                generator=gen,
                eps=2e-5,
                n_steps_each=sampler_steps,
                denoise_final=False,
                x=x.clone(),
            )

    bare_forward()
    sample()
    fwd_times, smp_times = [], []
    for _ in range(reps):  # interleaved, so both see the same machine load
        fwd_times.append(_median_time(bare_forward, 1, device))
        smp_times.append(_median_time(sample, 1, device) / sampler_steps)
    fwd, smp = statistics.median(fwd_times), statistics.median(smp_times)
    return {
        "model": name,
        "variant": variant,
        "precision": precision,
        "channels_last": channels_last,
        "compile": compile_,
        "parameters": count_parameters(model),
        "batch": batch,
        "train_steps_per_s": 1.0 / ours_step,
        "train_images_per_s": batch / ours_step,
        "bare_fwd_bwd_per_s": 1.0 / bare,
        "train_overhead": statistics.median(overheads),
        "train_overhead_blocks": [round(o, 4) for o in overheads],
        "sampler_nfe_per_s": 1.0 / smp,
        "bare_forward_per_s": 1.0 / fwd,
        "sampler_overhead": smp / fwd - 1.0,
        "peak_memory_mb": _peak_memory_mb(device),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny models and steps, for the tests")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--device", default="auto")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    p.add_argument("--steps", type=int, default=24, help="training steps per block")
    p.add_argument(
        "--blocks", type=int, default=5, help="training blocks, alternated with bare timings"
    )
    p.add_argument(
        "--variants",
        default="fp32,bf16",
        help="comma-separated: fp32 or bf16, each optionally +cl (channels-last) and/or "
        "+compile (torch.compile), e.g. fp32,bf16,bf16+cl,bf16+compile",
    )
    p.add_argument("--batch", type=int, help="batch size for every model (default: each its own)")
    p.add_argument("--name", default="speed", help="output file stem (default speed: speed.json)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    names = ["unet-digits"] if args.smoke else args.models.split(",")
    steps = 12 if args.smoke else args.steps
    rows = []
    result = {
        "command": "python benchmarks/speed.py "
        + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (f"{args.name}_smoke.json" if args.smoke else f"{args.name}.json")
    with tempfile.TemporaryDirectory() as work:
        for name in names:
            for variant in args.variants.split(","):
                rows.append(
                    bench(
                        name,
                        variant,
                        device,
                        steps,
                        Path(work),
                        args.smoke,
                        args.batch,
                        2 if args.smoke else args.blocks,
                    )
                )
                print(json.dumps(rows[-1]), flush=True)
                path.write_text(json.dumps(result, indent=1))  # after every row: a time limit
                # that stops the run keeps the rows already measured
    return result


if __name__ == "__main__":
    main()
