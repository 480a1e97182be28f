"""Training and sampling speed: our loops against the bare network, fp32 against bf16.

For each model (the digits U-Net, the MNIST U-Net, the paper's RefineNet) and precision:
- training: steps/s and images/s of `ncsn.training.loop.train` itself next to the bare network's
  forward + backward on a batch of the same size, in alternation in one process: bare repeats,
  a block of ``--steps`` training steps (the run resumes from the block before), bare repeats
  with the weights the block reached (they change the kernels' speed), …
  Each block's overhead is its median logged window (the first dropped as warm-up) over the mean
  of the bare medians just before and after it, minus 1; the row reports the median over
  ``--blocks`` blocks and their range, so slow drifts of the machine cancel;
- sampling: network evaluations/s of `annealed_langevin` next to bare forwards under
  `torch.inference_mode`, same batch, timed in alternation (medians of each);
- peak memory: CUDA's max allocated, or the process's max RSS on the CPU (monotone over the run).

Two more modes (issue 19): ``--layers`` times the RefineNet's layers as they were
(benchmarks/refinenet_reference.py) against the package's, each layer and the whole training step
and forward, alternated in one process (``--profile``: their top kernels instead, and the U-Net's);
``--paper-minutes M`` counts the steps the MNIST paper preset trains in M minutes.

    python benchmarks/speed.py [--smoke] [--out benchmarks/results] [--device auto]
    python benchmarks/speed.py --layers [--profile] [--variants fp32,bf16] [--blocks 5]
    python benchmarks/speed.py --paper-minutes 25 [--set key=value]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import resource
import runpy
import shlex
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ncsn import config
from ncsn.devices import resolve_device
from ncsn.model import build_model, count_parameters
from ncsn.nets import refinenet
from ncsn.objectives import dsm_loss
from ncsn.samplers.langevin import annealed_langevin
from ncsn.training.loop import train
from ncsn.training.state import load_run

# the MNIST training digits' measured pixel std, which the mnist preset's `model.sigma_data: auto`
# resolves to when training starts (a model is built here without training; the number only
# scales the preconditioning, not the kernels' cost)
MNIST_SIGMA_DATA = "model.sigma_data=0.3077"
MODELS = {  # name: (preset, image side, channels, batch, overrides)
    "unet-digits": ("digits", 8, 1, 128, []),
    "unet-mnist": ("mnist", 28, 1, 64, ["model.dropout=0.0", MNIST_SIGMA_DATA]),
    "refinenet-mnist": ("mnist_paper", 28, 1, 16, []),
}
PRESETS = Path(__file__).resolve().parents[1] / "configs"
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
# The RefineNet's layers as they were before issue 19 (a sibling file, not a package module).
REFERENCE = runpy.run_path(str(Path(__file__).with_name("refinenet_reference.py")))


def _alternate(fns: dict, blocks: int, reps: int, device: torch.device) -> dict[str, list[float]]:
    """Each function's median time over ``reps`` calls, in ``blocks`` alternated blocks (the
    order reversed every other block), so that both see the same drifts of the machine."""
    times = {name: [] for name in fns}
    for b in range(blocks):
        for name in list(fns)[:: 1 if b % 2 == 0 else -1]:
            times[name].append(_median_time(fns[name], reps, device))
    return times


def _old_new_row(measure: str, precision: str, times: dict[str, list[float]]) -> dict:
    """Medians over blocks with their range: each contender's time and its speed-up over "old"
    (block by block, so that drifts of the machine cancel)."""
    row = {"measure": measure, "precision": precision, "blocks": len(times["old"])}
    for name, values in times.items():
        row[f"{name}_s"] = statistics.median(values)
        row[f"{name}_s_range"] = [min(values), max(values)]
        if name != "old":
            speedups = [o / n for o, n in zip(times["old"], values, strict=True)]
            key = "speedup" if name == "new" else f"speedup_{name}"
            row[key] = statistics.median(speedups)
            row[f"{key}_range"] = [min(speedups), max(speedups)]
    return row


def _backward_of(fn, shape: tuple, autocast, device: torch.device):
    """A timed call: ``fn`` on a fixed random input of ``shape``, then backward."""
    a = torch.randn(shape, device=device, requires_grad=True)

    def run():
        with autocast:
            out = fn(a)
        out.float().sum().backward()

    return run


def _train_step(model, opt, x: torch.Tensor, sigmas: torch.Tensor, autocast):
    """A timed call: the bare training step (DSM loss, backward, Adam), fixed batch and noise."""

    def run():
        gen = torch.Generator(x.device).manual_seed(0)
        with autocast:
            loss = dsm_loss(model, x, sigmas, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def _forward(model, x: torch.Tensor, sigma: torch.Tensor, autocast):
    """A timed call: one forward under inference mode, as the sampler runs the network."""

    def run():
        with torch.inference_mode(), autocast:
            model(x, sigma)

    return run


def _as_before(fn):
    """``fn`` run with the RefineNet's layers as they were before issue 19."""

    def run():
        with REFERENCE["reference_layers"]():
            fn()

    return run


def _top_kernels(fn, n: int = 10) -> dict:
    """One call of ``fn`` under torch.profiler: its total and its ``n`` costliest operators by
    self time, each with its share of the total."""
    fn()  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    top = [
        {"op": e.key, "ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total}
        for e in events[:n]
    ]
    return {"total_s": total / 1e6, "top": top}


def profile_unet(device: torch.device, precisions: list[str], smoke: bool) -> list[dict]:
    """Top kernels of the MNIST U-Net's training step (batch 128) and forward (batch 100): does
    it spend on normalization what the RefineNet did?"""
    cfg = config.load(
        PRESETS / "mnist.yaml",
        ["model.dropout=0.0", MNIST_SIGMA_DATA]
        + (["model.channels=8", "model.groups=4"] if smoke else []),
    )
    side, train_batch, forward_batch = (12, 8, 8) if smoke else (28, 128, 100)
    sigmas = torch.logspace(1, -2, 10, device=device)
    torch.manual_seed(0)
    model = build_model(cfg.model, (1, side, side), sigmas.tolist()).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, fused=True)
    x_train = torch.rand(train_batch, 1, side, side, device=device)
    x_fwd = torch.rand(forward_batch, 1, side, side, device=device)
    sigma_fwd = sigmas[torch.arange(forward_batch, device=device) % len(sigmas)]
    rows = []
    for precision in precisions:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        for measure, fn in (
            (
                f"U-Net training step, batch {train_batch}",
                _train_step(model, opt, x_train, sigmas, autocast),
            ),
            (f"U-Net forward, batch {forward_batch}", _forward(model, x_fwd, sigma_fwd, autocast)),
        ):
            rows.append({"measure": measure, "precision": precision, "new": _top_kernels(fn)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def compare_layers(
    device: torch.device,
    precisions: list[str],
    blocks: int,
    smoke: bool,
    profile: bool = False,
    compile_: bool = False,
) -> list[dict]:
    """The RefineNet's layers before issue 19 (benchmarks/refinenet_reference.py, "old") against
    the package's ("new"): each changed layer's forward + backward, then the paper preset's
    training step (DSM loss, backward, fused Adam; batch 128) and forward (batch 100, as the
    sampler runs it), alternated in one process; medians over blocks with their range.
    ``profile``: instead, the top kernels of one training step and one forward of each;
    ``compile_``: the forward also as ``torch.compile`` runs it (``ncsn sample --compile``;
    compile time excluded, it falls in the warm-up)."""
    cfg = config.load(PRESETS / "mnist_paper.yaml", ["model.ngf=8"] if smoke else [])
    side, train_batch, forward_batch = (12, 8, 8) if smoke else (28, 128, 100)
    sigmas = torch.logspace(0, -2, 10, device=device)  # the preset's ladder: 1 → 0.01, L = 10
    torch.manual_seed(0)
    new = build_model(cfg.model, (1, side, side), sigmas.tolist()).to(device)
    models = {"old": copy.deepcopy(new), "new": new}  # each trained by its own Adam
    opts = {
        k: torch.optim.Adam(m.parameters(), lr=cfg.train.lr, fused=True) for k, m in models.items()
    }
    x_train = torch.rand(train_batch, 1, side, side, device=device)
    x_fwd = torch.rand(forward_batch, 1, side, side, device=device)
    sigma_fwd = sigmas[torch.arange(forward_batch, device=device) % len(sigmas)]
    ngf = cfg.model.ngf
    shape = (train_batch, ngf, side, side)
    level = torch.arange(train_batch, device=device) % 10
    norm = partial(refinenet.CondInstanceNormPP(ngf, 10).to(device), level=level)
    pools = {
        "old": lambda a: torch.nn.functional.avg_pool2d(a, 5, stride=1, padding=2),
        "new": refinenet._mean_pool5,
    }
    compiled = torch.compile(new) if compile_ else None
    rows = []
    for precision in precisions:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        forward_fns = {
            "old": _as_before(_forward(models["old"], x_fwd, sigma_fwd, autocast)),
            "new": _forward(new, x_fwd, sigma_fwd, autocast),
        }
        if compiled is not None:
            forward_fns["new+compile"] = _forward(compiled, x_fwd, sigma_fwd, autocast)
        measures = {  # measure: (contenders, repeats per block)
            f"CondInstanceNorm++ fwd+bwd {shape}": (
                {
                    "old": _as_before(_backward_of(norm, shape, autocast, device)),
                    "new": _backward_of(norm, shape, autocast, device),
                },
                2 if smoke else 3,
            ),
            f"5×5 mean pool fwd+bwd {shape}": (
                {k: _backward_of(f, shape, autocast, device) for k, f in pools.items()},
                2 if smoke else 3,
            ),
            f"RefineNet training step, batch {train_batch}": (
                {
                    "old": _as_before(
                        _train_step(models["old"], opts["old"], x_train, sigmas, autocast)
                    ),
                    "new": _train_step(new, opts["new"], x_train, sigmas, autocast),
                },
                1,
            ),
            f"RefineNet forward, batch {forward_batch}": (forward_fns, 2),
        }
        for measure, (fns, reps) in measures.items():
            if profile:
                if measure.startswith("RefineNet"):
                    top = {k: _top_kernels(fn) for k, fn in fns.items()}
                    rows.append({"measure": measure, "precision": precision, **top})
                    print(json.dumps(rows[-1]), flush=True)
                continue
            for fn in fns.values():  # warm-up
                fn()
            rows.append(_old_new_row(measure, precision, _alternate(fns, blocks, reps, device)))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def paper_minutes(
    minutes: float, out: Path, overrides: list[str] = (), before: bool = False, evals: int = 3
) -> dict:
    """Steps the MNIST paper preset trains in ``minutes`` of wall time, run as
    benchmarks/mnist.py --stage train runs it (MNIST test digits 0–8000, the budget split into
    ``evals`` equal shares, each filled from the step rate measured so far); ``before``: with the
    RefineNet's layers from before issue 19. Writes ``out/train.json``."""
    run_dir = out / "run"
    cfg = config.load(
        PRESETS / "mnist_paper.yaml",
        [
            f"data.root={MNIST}",
            "data.split=test",
            "data.subset=[0, 8000]",
            f"run_dir={run_dir}",
            "train.preview_every=0",
            "train.checkpoint_every=1000000",
            "train.keep_last=1",
            *overrides,
        ],
    )
    budget = 60.0 * minutes
    step, spent, rate, along = 0, 0.0, None, []
    layers = REFERENCE["reference_layers"] if before else contextlib.nullcontext
    for k in range(1, evals + 1):
        target = budget * k / evals
        while rate is None or (target - spent) > 0.05 * budget / evals:
            n = 2 if rate is None else int((target - spent) * rate)
            if n < 1:
                break
            cfg.train.steps = step + n
            start = time.perf_counter()
            with layers():
                train(cfg, progress=False, log=lambda *_: None)
            spent += time.perf_counter() - start
            rate, step = n / (time.perf_counter() - start), step + n
        with open(run_dir / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        along.append({"step": step, "train_seconds": round(spent, 1), "loss": rows[-1]["loss"]})
        print(json.dumps(along[-1]), flush=True)
    record = {
        "minutes": minutes,
        "overrides": list(overrides),
        "layers": "before issue 19" if before else "today's",
        "precision": cfg.train.precision,
        "threads": torch.get_num_threads(),
        "steps": step,
        "along": along,
    }
    (out / "train.json").write_text(json.dumps(record, indent=1))
    return record


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
    p.add_argument(
        "--paper-minutes",
        type=float,
        help="instead: train the MNIST paper preset for this many minutes, report its steps",
    )
    p.add_argument("--set", action="append", default=[], help="override for --paper-minutes")
    p.add_argument(
        "--before", action="store_true", help="--paper-minutes with the layers before issue 19"
    )
    p.add_argument(
        "--layers",
        action="store_true",
        help="instead: the RefineNet's layers before issue 19 against today's, old vs new",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="with --layers: the forward also compiled (torch.compile), as ncsn sample --compile",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="with --layers: top kernels (torch.profiler) of old and new RefineNet, and U-Net",
    )
    args = p.parse_args(argv)
    if args.layers:
        device = resolve_device(args.device)
        blocks = 2 if args.smoke else args.blocks
        result = {
            "command": "python benchmarks/speed.py "
            + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
            "device": str(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "rows": compare_layers(
                device, args.variants.split(","), blocks, args.smoke, args.profile, args.compile
            ),
        }
        if args.profile:
            result["rows"] += profile_unet(device, args.variants.split(","), args.smoke)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        suffix = "_smoke" if args.smoke else ""
        (out / f"{args.name}{suffix}.json").write_text(json.dumps(result, indent=1))
        return result
    if args.paper_minutes is not None:
        out = Path(args.out) / args.name
        out.mkdir(parents=True, exist_ok=True)
        return paper_minutes(args.paper_minutes, out, args.set, args.before)
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
