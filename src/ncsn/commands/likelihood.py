"""``ncsn likelihood``: log p(x) and bits per dimension of data under a trained run, through the
probability-flow ODE (:mod:`ncsn.likelihood`; conventions in docs/conventions.md,
"Likelihood")."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import time
from pathlib import Path

import torch

import ncsn.config as config
import ncsn.limits as limits
import ncsn.presets as presets
from ncsn.commands.common import load_run_for
from ncsn.data import load_dataset
from ncsn.data.arrays import load_array
from ncsn.errors import NCSNError
from ncsn.files import atomic_write_bytes
from ncsn.likelihood import LADDERS, PROBES, SOLVERS, check_settings, score_examples
from ncsn.progress import bar
from ncsn.samplers.run import ode_mean

# The defaults where MNIST bits/dim stopped moving (docs/benchmarks.md, "Likelihood"): RK45 at
# rtol = atol = 1e-4 is within 1e-4 bits/dim of 1e-5 at 116 NFE; Heun needs 160 steps (320 NFE)
# to come within 0.015.
DEFAULT_SOLVER, DEFAULT_TOL, DEFAULT_STEPS = "rk45", 1e-4, 160

EXAMPLES = """examples:
  ncsn likelihood runs/mnist --data mnist --set data.subset=[8000,10000] --n 500
  ncsn likelihood runs/mnist --data images.npz --per-example scores.csv
  ncsn likelihood runs/toy --data toy --divergence exact --solver rk45
"""


def add_parsers(sub) -> None:
    """Register ``ncsn likelihood``."""
    q = sub.add_parser(
        "likelihood",
        help="log-likelihood and bits/dim of data through the probability-flow ODE",
        description="log p(x) of each example under the run's score model: the probability-flow\n"
        "ODE from σ_min up to σ₁ with the change of variables (Song et al. 2021, §4.3), the\n"
        "divergence by Hutchinson's estimator or exactly, the prior N(μ, σ₁² I) at σ₁. 8-bit\n"
        "images are dequantized uniformly and reported in bits/dim (an upper bound on the\n"
        "code length); continuous data in nats. Prints mean ± standard error over examples.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("run_dir", help="run directory written by `ncsn train`")
    q.add_argument(
        "--data",
        required=True,
        metavar="CONFIG|FILE",
        help="the examples: an .npz/.npy file (uint8 images as `ncsn sample` writes them) or the "
        "data section of a config file or preset (e.g. mnist, with --set)",
    )
    q.add_argument(
        "--set",
        "-s",
        action="append",
        metavar="KEY=VALUE",
        help="override a value of the --data config, e.g. data.subset=[8000,10000]",
    )
    q.add_argument("--n", type=int, help="examples scored (a seeded random subset; default all)")
    q.add_argument("--probes", type=int, default=1, help="Hutchinson probes K per example (1)")
    q.add_argument("--probe", choices=PROBES, default="rademacher", help="probe law (rademacher)")
    q.add_argument(
        "--divergence",
        choices=("hutchinson", "exact"),
        default="hutchinson",
        help="hutchinson (default) or exact (D backward passes; D ≤ 256)",
    )
    q.add_argument(
        "--solver",
        choices=SOLVERS,
        default=DEFAULT_SOLVER,
        help=f"rk45: scipy's adaptive Runge–Kutta ({DEFAULT_SOLVER}); heun: fixed steps, the "
        "same NFE for every example and process",
    )
    q.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"Heun steps, 2 NFE each ({DEFAULT_STEPS})"
    )
    q.add_argument(
        "--ladder",
        choices=LADDERS,
        default="karras",
        help="Heun's σ spacing: karras (ρ, default) or loguniform",
    )
    q.add_argument("--rho", type=float, default=7.0, help="ρ of the karras spacing (7)")
    q.add_argument("--rtol", type=float, default=DEFAULT_TOL, help=f"rk45 ({DEFAULT_TOL:g})")
    q.add_argument("--atol", type=float, default=DEFAULT_TOL, help=f"rk45 ({DEFAULT_TOL:g})")
    q.add_argument(
        "--dequantize",
        type=int,
        metavar="K",
        help="uniform dequantizations per image (default 1 for 8-bit data, 0 for "
        "continuous data; 0 gives the density at the points, in nats, no bits/dim)",
    )
    q.add_argument(
        "--sigma-min",
        type=float,
        help="where the ODE starts (default the run's σ_L: the network was not trained below it)",
    )
    q.add_argument("--batch-size", type=int, default=100, help="examples per batch (100)")
    q.add_argument("--seed", type=int, default=0, help="dequantization and probes (0)")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, … (default auto)")
    q.add_argument("--raw-weights", action="store_true", help="use the raw weights, not the EMA")
    q.add_argument("--out", metavar="FILE.json", help="default RUN_DIR/likelihood.json")
    q.add_argument(
        "--per-example",
        metavar="FILE.csv",
        help="also write each example's index, nats and bits/dim (to rank them)",
    )
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_likelihood)


def cmd_likelihood(args) -> None:
    limits.check("sample.n", args.n, flag="--n")
    limits.check("sample.batch_size", args.batch_size, flag="--batch-size")
    limits.check("sample.steps", args.steps, flag="--steps")
    limits.check("likelihood.probes", args.probes, flag="--probes")
    limits.check("likelihood.dequantize", args.dequantize, flag="--dequantize", least=0)
    limits.seed(args.seed, "--seed")
    for flag, value in [("--rho", args.rho), ("--rtol", args.rtol), ("--atol", args.atol)]:
        if not (math.isfinite(value) and value > 0):
            raise NCSNError(f"{flag} {value}: expected a positive number")
    if args.sigma_min is not None and not (math.isfinite(args.sigma_min) and args.sigma_min > 0):
        raise NCSNError(f"--sigma-min {args.sigma_min}: expected a positive number")
    if args.set and _is_file(args.data):
        raise NCSNError("--set overrides the --data config; --data is a file")
    out = Path(args.out) if args.out else Path(args.run_dir) / "likelihood.json"
    for path in [out, Path(args.per_example) if args.per_example else None]:
        if path is not None and path.is_dir():
            raise NCSNError(f"{path}: is a folder; expected a file to write")
    model, sched, cfg, meta, device = load_run_for(args)
    data, source = _load_data(args)
    shape = tuple(meta["data_shape"])
    if data.shape != shape:
        raise NCSNError(
            f"--data {args.data}: examples of shape {data.shape}, but the run models {shape}"
        )
    x = data.as_float()
    index = torch.arange(len(x))
    if args.n is not None and args.n < len(x):
        index = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
        index = index[: args.n].sort().values
        x = x[index]
    dequantize = args.dequantize if args.dequantize is not None else int(data.levels is not None)
    if dequantize > 0 and data.levels is None:
        raise NCSNError(
            f"--dequantize {dequantize}: the --data examples are continuous (not 8-bit images); "
            "use --dequantize 0 (the density in nats)"
        )
    sigma_min = args.sigma_min if args.sigma_min is not None else sched.sigma_min
    if not sigma_min < sched.sigma_max:
        raise NCSNError(
            f"--sigma-min {sigma_min}: expected less than the run's σ₁ = {sched.sigma_max:.6g}"
        )
    options = {
        "divergence": args.divergence,
        "probes": args.probes,
        "probe": args.probe,
        "solver": args.solver,
        "steps": args.steps,
        "ladder": args.ladder,
        "rho": args.rho,
        "rtol": args.rtol,
        "atol": args.atol,
    }
    check_settings(
        model,
        x[:1],
        sigma_min=sigma_min,
        sigma_max=sched.sigma_max,
        **{k: options[k] for k in ("divergence", "probes", "probe", "solver", "steps", "ladder")},
    )
    batch = min(args.batch_size, len(x))
    limits.check_memory("--batch-size", batch, shape, copies=16 + args.probes)

    start = time.perf_counter()
    with bar(total=len(x), desc="likelihood", unit="ex", disable=args.no_progress) as progress:
        scores = score_examples(
            model,
            x,
            sigma_min=sigma_min,
            sigma_max=sched.sigma_max,
            mean=ode_mean(sched, (1, *shape)),
            levels=data.levels if dequantize else None,
            dequantizations=dequantize,
            batch_size=batch,
            seed=args.seed,
            progress=progress.update,
            **options,
        )
    wall = time.perf_counter() - start
    result = _summary(scores, len(x), wall) | {
        "run": str(args.run_dir),
        "checkpoint": meta["path"],
        "step": meta["step"],
        "weights": "raw" if args.raw_weights else "ema",
        "data": source,
        "settings": scores.settings,
    }
    if args.per_example:
        atomic_write_bytes(args.per_example, _csv(index, scores).encode())
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, json.dumps(result, indent=1).encode())
    print(_text(result))
    print(f"wrote {out}" + (f" and {args.per_example}" if args.per_example else ""))


def _summary(scores, n: int, wall: float) -> dict:
    def mean_se(v: torch.Tensor) -> tuple[float, float | None]:
        v = v.double()
        return float(v.mean()), (float(v.std() / math.sqrt(len(v))) if len(v) > 1 else None)

    nats, nats_se = mean_se(scores.nats)
    result = {
        "n": n,
        "dims": scores.dims,
        "nats_per_example": nats,
        "nats_per_example_se": nats_se,
        "nats_per_dim": nats / scores.dims,
        "bits_per_dim": None,
        "bits_per_dim_se": None,
        "nfe_per_example": scores.nfe,
        "prior_gap_nats": scores.prior_gap,
        "seconds": round(wall, 2),
    }
    if scores.bits_per_dim is not None:
        result["bits_per_dim"], result["bits_per_dim_se"] = mean_se(scores.bits_per_dim)
    return result


def _text(r: dict) -> str:
    s = r["settings"]
    se = lambda v: "" if v is None else f" ± {v:.4g}"  # noqa: E731
    how = (
        f"heun, {s['steps']} steps, {s['ladder']} ladder"
        if s["solver"] == "heun"
        else f"rk45, rtol {s['rtol']}, atol {s['atol']}"
    )
    div = (
        f"{s['probes']} {s['probe']} probe(s)"
        if s["divergence"] == "hutchinson"
        else "exact divergence"
    )
    lines = []
    if r["bits_per_dim"] is not None:
        lines.append(
            f"bits/dim {r['bits_per_dim']:.4f}{se(r['bits_per_dim_se'])} over {r['n']} examples "
            f"({s['dequantizations']} uniform dequantization(s) each: an upper bound)"
        )
    else:
        lines.append(f"continuous density (no dequantization): {r['nats_per_dim']:.4f} nats/dim")
    lines.append(
        f"log p {r['nats_per_example']:.2f}{se(r['nats_per_example_se'])} nats per example "
        f"(D = {r['dims']}); NFE {r['nfe_per_example']} per example ({how}; {div}); "
        f"{r['seconds']:.1f} s"
    )
    lines.append(
        f"prior gap (N(μ, σ₁² I) against p_σ₁, moment-matched): "
        f"{r['prior_gap_nats']:.3g} nats per example"
    )
    return "\n".join(lines)


def _csv(index: torch.Tensor, scores) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["index", "nats", "bits_per_dim"])
    bpd = scores.bits_per_dim
    for i, (k, v) in enumerate(zip(index.tolist(), scores.nats.tolist(), strict=True)):
        w.writerow([k, f"{v:.6f}", "" if bpd is None else f"{float(bpd[i]):.6f}"])
    return buf.getvalue()


def _is_file(name: str) -> bool:
    return (
        Path(name).suffix.lower() in (".npz", ".npy")
        or Path(name).is_file()
        and Path(name).suffix.lower() not in (".yaml", ".yml")
    )


def _load_data(args):
    if _is_file(args.data):
        return load_array(args.data), {"file": args.data}
    cfg = config.load(presets.find(args.data, "--data"), list(args.set or []))
    ds = load_dataset(cfg.data, seed=cfg.train.seed)
    return ds, {
        "config": args.data,
        "overrides": list(args.set or []),
        "data": config.to_dict(cfg.data),
    }
