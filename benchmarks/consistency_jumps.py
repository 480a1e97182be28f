"""Which of a consistency model's two jumps costs what, on the MNIST benchmark model.

The 2-NFE consistency sampler (Song et al. 2023, Algorithm 1) jumps from x = μ + σ₁z to the data
with f(x, σ₁), noises the result up to σ_mid with a fresh z′ and jumps again with f(·, σ_mid).
Each jump stands in for a solve of the teacher's probability-flow ODE to the data; this script
replaces either jump, or both, by that solve (DPM-Solver++(2M), Lu et al. 2022, Alg. 2, on
Karras et al.'s ρ = 7 levels: ``--teacher-steps`` N₁ from σ₁ and N₂ from σ_mid) from the very
same x and z′, and scores the four sets like benchmarks/fast_samplers.py (FD in the domain
classifier's features against the 2,000 held-out and the 8,000 training digits, the held-out
FD split into its mean and covariance terms):

    teacher, teacher — what a perfect consistency model of this teacher would draw in 2 jumps;
    teacher, student — the student's second jump alone;
    student, teacher — the student's first jump alone;
    student, student — the consistency sampler itself (checked against
                       ``ncsn.samplers.consistency.consistency_sampler`` on the same seed);
    teacher, heun K  — with ``--heun-steps K,…``: the second jump by the teacher's K Heun steps
                       to σ_min (``ncsn.consistency.teacher_solve``), what ``ncsn distill
                       --set train.ect_pair=teacher --set train.ect_teacher_steps=K`` regresses
                       f(x, t) onto wherever r(t) = σ_min: how good the student's targets are
                       (``--heun-precision bf16``: rows "heun K bf16", the solve under bf16
                       autocast, as ``train.precision=bf16`` computes them).

    python benchmarks/consistency_jumps.py --run TEACHER --cm-run STUDENT --recipe NAME \\
        --sigma-mid 1.0 --channels-last          # OUT/consistency_jumps_NAME.json
    python benchmarks/consistency_jumps.py ... --teacher-steps 40,25 --heun-steps 1,2,3,4,6
    python benchmarks/consistency_jumps.py --smoke --out /tmp/x   # tiny runs trained here
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch

from ncsn.consistency import teacher_solve
from ncsn.files import atomic_write_bytes
from ncsn.samplers.consistency import consistency_sampler
from ncsn.samplers.multistep import dpmpp_2m_sampler
from ncsn.samplers.ode import ode_start
from ncsn.schedule import karras_sigmas, sigma_batch
from ncsn.viz import quantize

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import fast_samplers as fs  # noqa: E402  (its loading, digits, scoring and smoke runs)

BATCH = 250  # samples per batch, as fast_samplers' sets
ROWS = (("teacher", "teacher"), ("teacher", "student"), ("student", "teacher"),
        ("student", "student"))  # fmt: skip


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", default="/tmp/mnist14/runs/default", help="the teacher (an edm run)")
    p.add_argument("--cm-run", help="its consistency model (ncsn distill)")
    p.add_argument("--recipe", default="default", help="the name in the file written")
    p.add_argument("--sigma-mid", type=float, default=1.0, help="the middle σ of the 2 jumps")
    p.add_argument("--teacher-steps", default="10,6", help="N₁,N₂: the teacher's DPM-Solver++(2M) "
                   "steps standing in for the first and the second jump")  # fmt: skip
    p.add_argument("--heun-steps", default="", help="K₁,K₂,…: more rows, the second jump by K "
                   "Heun steps of the teacher (the distillation's targets)")  # fmt: skip
    p.add_argument("--heun-precision", default="fp32", help="fp32, bf16 or fp32,bf16: the "
                   "Heun rows in fp32 and/or under bf16 autocast, as ncsn distill computes its "
                   "targets with train.precision=bf16 (rows 'heun K bf16')")  # fmt: skip
    p.add_argument("--n", type=int, default=500, help="samples per set (batches of 250)")
    p.add_argument("--seed", type=int, default=100, help="fast_samplers --stage mid's seed")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    p.add_argument(
        "--classifier", default=str(REPO / "benchmarks/results/mnist/classifier.safetensors")
    )
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "mnist"))
    p.add_argument("--channels-last", action="store_true", help="weights in channels_last")
    p.add_argument("--smoke", action="store_true", help="tiny runs trained here, 16 samples")
    args = p.parse_args(argv)
    args.precision = "fp32"  # what fast_samplers.load and scorer read
    try:
        args.n1, args.n2 = (int(v) for v in args.teacher_steps.split(","))
    except ValueError:
        text = f"--teacher-steps {args.teacher_steps!r}: expected two integers N1,N2"
        raise SystemExit(text) from None
    try:
        args.heun = [int(v) for v in args.heun_steps.split(",")] if args.heun_steps else []
    except ValueError:
        raise SystemExit(f"--heun-steps {args.heun_steps!r}: expected integers K1,K2,…") from None
    args.heun_precisions = args.heun_precision.split(",")
    if not set(args.heun_precisions) <= {"fp32", "bf16"}:
        raise SystemExit(
            f"--heun-precision {args.heun_precision!r}: expected fp32, bf16 or fp32,bf16"
        )
    if min(args.n1, args.n2, *args.heun) < 1 or args.n < 1:
        raise SystemExit("--teacher-steps, --heun-steps and --n: expected positive integers")
    if args.smoke:
        args.n = 16
    return args


def heun_row(k: int, precision: str) -> str:
    """The second jump's label of a row of the teacher's K Heun steps: "heun K" (fp32) or
    "heun K bf16"."""
    return f"heun {k}" + " bf16" * (precision == "bf16")


@torch.inference_mode()
def two_jumps(
    teacher, student, shape, sigma_max, sigma_mid, sigma_min, n1, n2, generator, mean, heun=()
):
    """One batch of each of ROWS, and of ("teacher", :func:`heun_row`) for each (K, precision)
    in ``heun``, from one start x and one re-noising z′ (the consistency sampler's draws, in its
    order), as {(first, second): images}."""
    state = generator.get_state()
    x = ode_start(shape, sigma_max, generator, mean)
    z = torch.randn(shape, generator=generator)

    def jump(who, x_sigma, sigma, n):
        if who == "student":  # f(x, σ): the consistency function
            return student.denoise(x_sigma, sigma_batch(sigma, x_sigma))
        # the ODE solve to σ = 0 (its last step x = D), deterministic: it draws nothing
        return dpmpp_2m_sampler(teacher, shape, karras_sigmas(sigma, sigma_min, n),
                                generator=generator, x=x_sigma)  # fmt: skip

    out = {}
    for first in ("teacher", "student"):
        x0 = jump(first, x, sigma_max, n1)
        x_mid = x0 + math.sqrt(max(sigma_mid**2 - sigma_min**2, 0.0)) * z
        for second in ("teacher", "student"):
            out[first, second] = jump(second, x_mid, sigma_mid, n2)
        if first == "teacher":  # the distillation's targets: deterministic, they draw nothing
            t, r = (torch.full(shape[:1], v) for v in (sigma_mid, sigma_min))
            for k, precision in heun:
                bf16 = precision == "bf16"
                with torch.autocast(x_mid.device.type, dtype=torch.bfloat16, enabled=bf16):
                    out[first, heun_row(k, precision)] = teacher_solve(teacher, x_mid, t, r, k)
    check = torch.Generator().set_state(state)
    sampled = consistency_sampler(student, shape, [sigma_max, sigma_mid], generator=check,
                                  sigma_min=sigma_min, mean=mean)  # fmt: skip
    assert torch.equal(sampled, out["student", "student"]), "not the consistency sampler's draws"
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.smoke:  # the smoke checks the plumbing inside the test suite, on one thread
        torch.set_num_threads(1)
    command = shlex.join(["python", "benchmarks/consistency_jumps.py",
                          *(sys.argv[1:] if argv is None else argv)])  # fmt: skip
    out = Path(args.out)
    start = time.perf_counter()
    run_dir, cm_dir = Path(args.run), Path(args.cm_run) if args.cm_run else None
    if args.smoke:
        run_dir = fs.smoke_run(args, out)
        cm_dir = fs.smoke_distill(run_dir, out)
    if cm_dir is None:
        raise SystemExit("--cm-run: the consistency model is needed (a run of ncsn distill)")
    teacher, _, _ = fs.load(args, run_dir)
    student, sched, meta = fs.load(args, cm_dir)  # the student keeps the teacher's ladder and μ
    mean = fs.samplers.ode_mean(sched, (1, *meta["data_shape"]))
    generator = torch.Generator().manual_seed(args.seed)
    heun = list(itertools.product(args.heun, args.heun_precisions))
    rows_asked = [*ROWS, *(("teacher", heun_row(k, p)) for k, p in heun)]
    sets = {row: [] for row in rows_asked}
    for first in range(0, args.n, BATCH):
        shape = (min(BATCH, args.n - first), *meta["data_shape"])
        batch = two_jumps(teacher, student, shape, sched.sigma_max, args.sigma_mid,
                          student.sigma_min, args.n1, args.n2, generator, mean,
                          heun)  # fmt: skip
        for row in rows_asked:
            sets[row].append(batch[row])
    metrics = fs.scorer(args, *fs.digits(args))
    rows = []
    for row in rows_asked:
        m = metrics(quantize(torch.cat(sets[row])))
        rows.append({"first_jump": row[0], "second_jump": row[1], "metrics": m})
        print(f"{row[0]:>7}, {row[1]:>7}: FD held-out {m['fd']:.2f} (mean {m['mean_term']:.2f}, "
              f"cov {m['cov_term']:.2f}), train {m['fd_train']:.2f}", flush=True)  # fmt: skip
    record = {
        "benchmark": "the consistency sampler's two jumps, each replaced by the teacher's solve",
        "command": command,
        "settings": vars(args),
        "teacher": str(run_dir),
        "student": {"run": str(cm_dir), "step": meta["step"]},
        "sigma_max": sched.sigma_max,
        "sigma_min": student.sigma_min,
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(
        out / f"consistency_jumps_{args.recipe}.json", json.dumps(record, indent=1).encode()
    )
    return record


if __name__ == "__main__":
    main()
