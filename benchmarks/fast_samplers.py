"""The fast samplers against NFE, measured on the MNIST benchmark model.

What it measures: sample quality against the number of network evaluations (NFE) of the
few-step samplers of ``ncsn.samplers.run`` — ``ipndm`` (Zhang & Chen 2023), ``dpmpp_2m`` and
``dpmpp_2m_sde`` (Lu et al. 2022), ``unipc`` (Zhao et al. 2023) at 4, 6, 8, 10, 15 and 20 NFE —
next to the Heun ``ode`` (Karras et al. 2022, Alg. 1) at 5, 9 and 19 NFE, all with the library's
default options, on a trained run of configs/mnist.yaml (``--run``); the consistency model
distilled from it by ``ncsn distill`` (``--cm-run``; ``consistency`` at 1 and 2 NFE, Song et
al. 2023, Alg. 1) when ``--jobs`` names it; and, separately, their wall time on 2 CPU threads.
``restart`` (Xu et al. 2023) can be asked for in ``--jobs`` but is not in the default.

Protocol (benchmarks/mnist.py's): the data are the 10,000 MNIST t10k digits; the run trained on
the first 8,000, the last 2,000 are held out. Each job SAMPLER:NFE:SEED draws ``--n`` = 1,000
samples (``ncsn.samplers.run.draw``, batches of 250, EMA weights; fp32, or the network
under bf16 autocast with ``--precision bf16``) with the number of
steps N that gives that NFE (NFE counted by the samplers: ipndm, dpmpp_2m, dpmpp_2m_sde, unipc N;
ode and churn 2N − 1; restart 2N − 1 + 2·K·M on Heun, N + K·M on DPM-Solver++(2M) —
``ncsn.samplers.run``'s docstring), checked
against the NFE the sampler reports. Each set is scored like benchmarks/ode_start.py: the
Fréchet distance (FD, Heusel et al. 2017, Eq. 6) in the domain classifier's features
(``--classifier``) against the 2,000 held-out digits and against the 8,000 training digits
(``fd_train``), the held-out FD split into its mean term ‖μ₁ − μ₂‖² and its covariance term
tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) (as benchmarks/sampler_screen.py ``--split``), precision and recall
(k-NN manifolds, k = 3, Kynkäänniemi et al. 2019) against the held-out digits, and class
coverage; plus the same scores of ``--n`` random training digits (the data floor). The table
gives, per sampler and NFE, the median over seeds (min–max for the held-out FD).

    python benchmarks/fast_samplers.py --stage sample --run /tmp/mnist14/runs/default
    python benchmarks/fast_samplers.py --stage score     # OUT/fast_samplers.json, .png, table
    python benchmarks/fast_samplers.py --stage time --run /tmp/mnist14/runs/default
    python benchmarks/fast_samplers.py --stage sample --run TEACHER --cm-run CM \
        --recipe edm_loguniform --jobs consistency:1:0,consistency:2:0 --channels-last
    python benchmarks/fast_samplers.py --smoke --out /tmp/x   # tiny run trained here, seconds

``--stage sample`` writes OUT/samples/RECIPE-SAMPLER-STEPS-seedK.npz (``--recipe``, the name
of the trained model, ``default`` for the issue-14 run; uint8 (N, H, W, C), key ``images``;
``info``: JSON of how it was drawn) and skips a set whose file exists (``--force`` redraws it);
``--stage score`` scores every such set of ``--recipe`` there (only this benchmark's sampler
names) into OUT/fast_samplers.json and OUT/fast_samplers.png (``fast_samplers_RECIPE.*`` for
another recipe) and prints the table; ``--stage time`` draws ``--n`` samples of each
``--time-jobs`` SAMPLER:NFE with ``--threads`` (2) torch threads in batches of ``--batch-size``
(250) and writes the wall seconds to OUT/fast_samplers_time.json
(``fast_samplers_RECIPE_time.json``; ``..._time_bN.json`` for another batch size N,
``..._bf16.json`` with ``--precision bf16``), with
``--compile`` also under torch.compile (the compile itself in an untimed warm-up of one full batch).
``--channels-last`` keeps the network's weights in torch.channels_last (a forward pass of the
MNIST U-Net on a batch of 250: 1.2–1.5× faster on an AMD EPYC, output equal to the bit).
``--stage mid`` draws ``--n`` samples of the consistency model at 2 NFE for each middle σ of
``--mids`` and share of fresh noise γ of ``--gammas`` (default 1; seed 100, which no set uses)
and chooses the pair with the lowest FD against the training digits into
OUT/fast_samplers_RECIPE_mid.json; ``--sigma-mid`` and ``--gamma`` give the consistency jobs of
the other stages that σ and γ. ``--stage eta`` does the same for dpmpp_2m_sde's noise share η
(``--etas`` at ``--eta-nfe`` = 9 NFE, into ..._eta.json). Besides the library's samplers
``--jobs`` takes the variants of VARIANTS: ``ipndm_gits`` (ipndm on the run's GITS levels),
``dpmpp_2m_sde_eta01``, ``dpmpp_2m_sde_eta03`` and ``dpmpp_2m_sde_eta02`` (η = 0.1, 0.3 and
0.2, the eta stage's choices on the 7,000-step fp32 teacher, the 10,000-step bf16 teacher and
its retraining on an AMX CPU),
``restart_k1m2`` (one restart interval of two Heun steps, so that Restart fits 9–19 NFE) and
``restart_2m_k1m2`` (the same on DPM-Solver++(2M), N + 2 NFE), ``unipc_order3`` (UniPC-3).
``--stage all`` (the default) runs sample, score and time in turn. OUT defaults to
benchmarks/results/mnist.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ncsn.config as config
import ncsn.samplers.gits as gits
import ncsn.samplers.run as samplers
import ncsn.schedule as schedule
from ncsn.data.images import load_mnist
from ncsn.devices import check_compile, compile_module
from ncsn.files import atomic_write_bytes
from ncsn.metrics.classifier import load_classifier
from ncsn.metrics.evaluate import HeldOutAndTraining, classifier_extractor
from ncsn.training.loop import train
from ncsn.training.state import load_run
from ncsn.viz import quantize, to_uint8

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "mnist"
TINY = [
    "model.channels=8",
    "model.groups=4",
    "model.num_res_blocks=1",
    "model.attention_resolutions=[]",
    "model.embedding_dim=16",
    "train.batch_size=16",
    "train.steps=3",
    "train.preview_every=0",
    "schedule.num_levels=10",
]
FAST = ("ipndm", "dpmpp_2m", "dpmpp_2m_sde", "unipc")
# variants: a library sampler with options other than its defaults, named so in the sets' files
VARIANTS = {
    # ipndm on the run's GITS levels (ncsn.samplers.gits), made here first
    "ipndm_gits": ("ipndm", {"schedule": "gits"}),
    # a tenth of the noise share η: --stage eta's choice on the 7,000-step teacher
    "dpmpp_2m_sde_eta01": ("dpmpp_2m_sde", {"eta": 0.1}),
    # η = 0.3: --stage eta's choice on the 10,000-step bf16 teacher
    "dpmpp_2m_sde_eta03": ("dpmpp_2m_sde", {"eta": 0.3}),
    # η = 0.2: --stage eta's choice on that recipe retrained on an AMX CPU
    "dpmpp_2m_sde_eta02": ("dpmpp_2m_sde", {"eta": 0.2}),
    # one restart of two Heun steps (K = 1, M = 2): NFE 2N − 1 + 4, so 9, 15, 19 within 20
    "restart_k1m2": ("restart", {"restarts": 1, "restart_steps": 2}),
    # the same restart on DPM-Solver++(2M): NFE N + 2, so any NFE ≥ 3
    "restart_2m_k1m2": ("restart", {"solver": "dpmpp_2m", "restarts": 1, "restart_steps": 2}),
    # UniPC with a third-order predictor (the library's default is 2): diff-sampler's UniPC-3
    "unipc_order3": ("unipc", {"order": 3}),
}
# the variants that need the run's GITS levels (made before their sets)
GITS = tuple(v for v, (_, opts) in VARIANTS.items() if opts.get("schedule") == "gits")
# the names this benchmark writes and scores; consistency samples --cm-run, the others --run
KNOWN = ("ode", "churn", *FAST, *VARIANTS, "restart", "consistency")
SEEDS = (0, 1, 2)
DEFAULT_JOBS = ",".join(
    [f"{s}:{nfe}:{seed}" for s in FAST for nfe in (4, 6, 8, 10, 15, 20) for seed in SEEDS]
    + [f"ode:{nfe}:{seed}" for nfe in (5, 9, 19) for seed in SEEDS]  # Heun: odd NFE only
    + [f"{s}:{nfe}:{seed}" for s in GITS for nfe in (4, 6, 8, 10) for seed in SEEDS]
)
SMOKE_JOBS = (
    "ipndm:4:0,dpmpp_2m:4:0,dpmpp_2m_sde:4:0,dpmpp_2m_sde_eta01:4:0,ode:5:0,ipndm_gits:4:0,"
    "restart_k1m2:9:0,restart_2m_k1m2:5:0,unipc:4:0,unipc_order3:4:0"
)
GITS_WARMUP, GITS_GRID = 256, 64  # `ncsn steps` defaults: warm-up trajectories, fine-grid levels
SET_BATCH = 250  # samples per batch of every set, and --stage time's default
MIDS = (0.15, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4)  # --stage mid's default middle σ values
ETAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # --stage eta's default noise shares
TUNE_SEED = 100  # --stage mid and eta draw with a seed none of the reported sets uses
SET_NAME = re.compile(rf"^([a-z0-9_]+)-({'|'.join(KNOWN)})-(\d+)-seed(\d+)\.npz$")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", default="/tmp/mnist14/runs/default", help="trained run directory")
    p.add_argument("--recipe", default="default", help="the run's name in the files written")
    p.add_argument("--cm-run", help="the consistency model (ncsn distill) of --run's teacher")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--classifier", default=str(RESULTS / "classifier.safetensors"))
    p.add_argument(
        "--stage", choices=["all", "sample", "score", "time", "mid", "eta"], default="all"
    )
    p.add_argument(
        "--jobs",
        default=DEFAULT_JOBS,
        help=f"SAMPLER:NFE:SEED sets to draw (SAMPLER one of {', '.join(KNOWN)}); default: "
        "ipndm, dpmpp_2m, dpmpp_2m_sde at NFE 4, 6, 8, 10, 15, 20 and ode at 5, 9, 19, seeds 0-2",
    )
    p.add_argument("--n", type=int, default=1000, help="samples per set")
    p.add_argument("--force", action="store_true", help="redraw sets whose file exists")
    p.add_argument("--time-jobs", default="ipndm:10,dpmpp_2m:10", help="SAMPLER:NFE to time")
    p.add_argument("--threads", type=int, default=2, help="torch threads of --stage time")
    p.add_argument("--compile", action="store_true", help="--stage time: also torch.compile")
    p.add_argument(
        "--batch-size",
        type=int,
        default=SET_BATCH,
        help=f"--stage time: samples per batch (the sets are always drawn in batches of "
        f"{SET_BATCH})",
    )
    p.add_argument("--channels-last", action="store_true", help="weights in channels_last")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="the network in fp32 or under bf16 autocast (sets, tuning and timing alike; faster "
        "on a CPU with native bf16, avx512_bf16 or AMX)",
    )
    p.add_argument(
        "--sigma-mid",
        type=float,
        help="consistency jobs at 2 NFE or more: the middle σ (default: the sampler's, ECT's "
        "0.821·σ_data/0.5); --stage mid measures the choices",
    )
    p.add_argument(
        "--gamma",
        type=float,
        help="consistency jobs at 2 NFE or more: the share of fresh noise in the re-noising "
        "(ncsn sample --gamma; default 1, Song et al.'s); --stage mid measures the choices",
    )
    p.add_argument(
        "--gammas",
        default="1.0",
        help="--stage mid: the shares of fresh noise γ tried at every middle σ of --mids",
    )
    p.add_argument(
        "--mids",
        default=",".join(map(str, MIDS)),
        help="--stage mid: the middle σ values tried (consistency at 2 NFE, seed 100, FD "
        "against the training digits only)",
    )
    p.add_argument(
        "--etas",
        default=",".join(map(str, ETAS)),
        help="--stage eta: the noise shares η of dpmpp_2m_sde tried (at --eta-nfe NFE, seed 100, "
        "FD against the training digits only)",
    )
    p.add_argument("--eta-nfe", type=int, default=9, help="--stage eta: the NFE it tunes η at")
    p.add_argument("--smoke", action="store_true", help="a tiny run trained here, tiny sets")
    args = p.parse_args(argv)
    if args.smoke:
        # 1 thread: the smoke checks the plumbing, not the speed, and runs inside the test suite
        args.n, args.jobs, args.threads = 16, SMOKE_JOBS + ",consistency:1:0,consistency:2:0", 1
        args.time_jobs = "ipndm:4,dpmpp_2m:4,ipndm_gits:4,consistency:2"
    if not re.fullmatch(r"[a-z0-9_]+", args.recipe):
        raise SystemExit(f"--recipe {args.recipe!r}: expected lower-case letters, digits and _")
    if args.eta_nfe < 1:
        raise SystemExit(f"--eta-nfe {args.eta_nfe}: expected at least 1 (dpmpp_2m_sde's NFE = N)")
    for flag in ("--mids", "--gammas", "--etas"):  # refused here, before anything is loaded
        numbers(flag, getattr(args, flag[2:]))
    return args


def numbers(flag: str, text: str) -> list[float]:
    """The comma-separated numbers ``text`` of ``flag`` (--mids, --gammas, --etas)."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise SystemExit(f"{flag} {text!r}: expected numbers separated by commas") from None


def steps_for(sampler: str, nfe: int) -> int:
    """The N of ``sampler`` (or variant) that costs ``nfe`` evaluations (NFE formulas of
    ncsn.samplers.run)."""
    base, changed = VARIANTS.get(sampler, (sampler, {}))
    if base in (*FAST, "consistency"):  # NFE = N: one evaluation per level (jump)
        return nfe
    if base in ("ode", "churn"):  # NFE = 2N − 1: Heun, Euler only on the last step to σ = 0
        if nfe % 2 == 0 or nfe < 1:
            raise SystemExit(f"{sampler}: NFE is 2N − 1, odd; got {nfe}")
        return (nfe + 1) // 2
    if base == "restart":  # NFE = 2N − 1 + 2·K·M (Heun) or N + K·M (dpmpp_2m), K, M the options'
        opts = samplers.options("restart", **changed)
        if opts.solver == "dpmpp_2m":
            if nfe - opts.restarts * opts.restart_steps < 1:
                raise SystemExit(f"{sampler}: NFE is N + K·M, at least K·M + 1; got {nfe}")
            return nfe - opts.restarts * opts.restart_steps
        twice_n = nfe + 1 - 2 * opts.restarts * opts.restart_steps
        if twice_n < 2 or twice_n % 2:
            raise SystemExit(f"{sampler}: NFE is 2N − 1 + 2·K·M, odd and ≥ 2KM + 1; got {nfe}")
        return twice_n // 2
    raise SystemExit(f"sampler {sampler!r}: expected one of {', '.join(KNOWN)}")


def parse_jobs(text: str, fields: int) -> list[tuple]:
    """SAMPLER:NFE[:SEED] items of a comma list as (sampler, nfe[, seed]), NFE checked."""
    jobs, want = [], "SAMPLER:NFE:SEED" if fields == 3 else "SAMPLER:NFE"
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) != fields:
            raise SystemExit(f"job {item!r}: expected {want}")
        job = (parts[0], *map(int, parts[1:]))
        steps_for(job[0], job[1])
        jobs.append(job)
    return jobs


def digits(args) -> tuple[torch.Tensor, torch.Tensor]:
    """(training digits, held-out digits) as floats in [0, 1]: t10k's first 8,000 and last 2,000
    (256 and 128 with --smoke)."""
    ds = load_mnist(args.data, "test")
    train_range, held_range = ((0, 256), (8000, 8128)) if args.smoke else ((0, 8000), (8000, 10000))
    x = ds.as_float()
    return x[slice(*train_range)], x[slice(*held_range)]


def smoke_run(args, out: Path) -> Path:
    run_dir = out / "runs" / "smoke"
    overrides = [f"data.root={args.data}", "data.split=test", "data.subset=[0, 256]"]
    cfg = config.load(REPO / "configs" / "mnist.yaml", [*overrides, *TINY, f"run_dir={run_dir}"])
    train(cfg, progress=False, log=lambda m: None)
    return run_dir


def smoke_distill(teacher: Path, out: Path) -> Path:
    """Two steps of ``ncsn distill`` on the smoke run (its consistency model)."""
    from ncsn.commands.distill import distill_config  # the command's derivation of the config

    cm_dir = out / "runs" / "smoke_cm"
    train(distill_config(teacher, cm_dir, 2, []), progress=False, log=lambda m: None)
    return cm_dir


def load(args, run_dir: Path):
    """(model, schedule, metadata) of ``run_dir``; a run trained before issue 14 records no μ,
    so the deterministic samplers' start N(μ, σ₁² I) gets the training digits' mean computed
    as training records it now (``ncsn.schedule.data_mean``, as benchmarks/ode_start.py does)."""
    model, sched, _, meta = load_run(run_dir, log=lambda m: None)
    if sched.data_mean is None:
        sched.data_mean = schedule.data_mean(digits(args)[0])
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, sched, meta


class Runs:
    """The teacher (``--run``) and, loaded when a job first asks, its consistency model."""

    def __init__(self, args, run_dir: Path, cm_dir: Path | None):
        self.args, self.dirs, self.loaded = args, {"teacher": run_dir, "cm": cm_dir}, {}

    def __call__(self, sampler: str):
        """(run directory, model, schedule, metadata) that ``sampler`` draws from."""
        return self.get("cm" if sampler == "consistency" else "teacher")

    def get(self, which: str):
        """(run directory, model, schedule, metadata) of ``which``: teacher or cm."""
        if self.dirs[which] is None:
            raise SystemExit("consistency: needs --cm-run (a run of ncsn distill)")
        if which not in self.loaded:
            self.loaded[which] = load(self.args, self.dirs[which])
        return (self.dirs[which], *self.loaded[which])

    def compile(self) -> None:
        """torch.compile the network of every run loaded so far (ncsn sample --compile's way)."""
        for model, _, _ in self.loaded.values():
            model.net = compile_module(model.net, torch.device("cpu"), "--compile")


def gits_schedules(args, out: Path, model, sched, meta, levels: list[int]) -> dict:
    """GITS levels of the run for each N of ``levels`` (``ncsn steps``'s computation, warm-up
    seed 0), kept in OUT/fast_samplers_gits.json and reused while the run and step match."""
    path = out / ("fast_samplers_gits_smoke.json" if args.smoke else "fast_samplers_gits.json")
    warmup, size = (8, 10) if args.smoke else (GITS_WARMUP, GITS_GRID)
    key = {"run": str(args.run), "step": meta["step"], "warmup": warmup, "grid": size}
    stored = json.loads(path.read_text()) if path.is_file() else {}
    if stored.get("key") == key and all(str(n) in stored["schedules"] for n in levels):
        return stored["schedules"]
    start = time.perf_counter()
    grid = gits.fine_grid(sched.sigma_max, sched.sigma_min, size)
    cost = gits.teacher_costs(
        model, (warmup, *meta["data_shape"]), grid, generator=torch.Generator().manual_seed(0),
        mean=samplers.ode_mean(sched, (1, *meta["data_shape"])), batch_size=128,
    )  # fmt: skip
    schedules = {str(n): gits.gits_sigmas(cost, grid, n) for n in levels}
    record = {"key": key, "schedules": schedules, "seconds": round(time.perf_counter() - start, 1),
              "teacher_nfe_per_trajectory": 2 * size - 2}  # fmt: skip
    atomic_write_bytes(path, json.dumps(record, indent=1).encode())
    print(f"GITS levels for N = {levels}: {record['seconds']} s, in {path.name}", flush=True)
    return schedules


def draw(
    model,
    sched,
    meta,
    sampler: str,
    nfe: int,
    n: int,
    seed: int,
    sigma_mid=None,
    batch_size=SET_BATCH,
    eta=None,
    precision="fp32",
    gamma=None,
) -> tuple:
    """``n`` samples of ``sampler`` at ``nfe`` evaluations, in batches of ``batch_size``; the NFE
    it reports is checked. ``sigma_mid`` and ``gamma``: the consistency sampler's middle σ and
    share of fresh noise, ``eta``:
    dpmpp_2m_sde's noise share (None: the sampler's or the variant's); ``precision`` bf16: the
    network under bf16 autocast (the sampler's own arithmetic stays fp32)."""
    steps = steps_for(sampler, nfe)
    base, changed = VARIANTS.get(sampler, (sampler, {}))
    given = {"sigma_mid": sigma_mid, "eta": eta, "gamma": gamma}
    given = {k: v for k, v in given.items() if v is not None}
    opts = samplers.options(base, **(changed | given))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with autocast:
        images, info = samplers.draw(
            model, sched, n, tuple(meta["data_shape"]), seed=seed, sampler=base, steps=steps,
            batch_size=batch_size, opts=opts,
        )  # fmt: skip
    assert info["nfe"] == nfe, f"{sampler} with N = {steps}: NFE {info['nfe']}, asked for {nfe}"
    return images, info | {"precision": precision}


def with_gits(args, out: Path, runs: Runs, jobs: list[tuple]) -> None:
    """The teacher's GITS levels for the N of every GITS job in ``jobs``, if any."""
    levels = sorted({steps_for(job[0], job[1]) for job in jobs if job[0] in GITS})
    if levels:
        _, model, sched, meta = runs.get("teacher")
        sched.step_schedules = {"gits": gits_schedules(args, out, model, sched, meta, levels)}


def sample(args, out: Path, runs: Runs) -> None:
    """Draw each SAMPLER:NFE:SEED set of ``--jobs`` into
    OUT/samples/RECIPE-SAMPLER-STEPS-seedK.npz (a set whose file exists is kept, unless
    ``--force``)."""
    jobs = parse_jobs(args.jobs, 3)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    with_gits(args, out, runs, jobs)
    for sampler, nfe, seed in jobs:
        name = f"{args.recipe}-{sampler}-{steps_for(sampler, nfe)}-seed{seed}.npz"
        path = out / "samples" / name
        if path.exists() and not args.force:
            print(f"{path.name}: exists, kept (--force redraws it)", flush=True)
            continue
        run_dir, model, sched, meta = runs(sampler)
        images, info = draw(model, sched, meta, sampler, nfe, args.n, seed, args.sigma_mid,
                            precision=args.precision, gamma=args.gamma)  # fmt: skip
        info |= {"benchmark": "fast_samplers", "run": str(run_dir), "step": meta["step"],
                 "channels_last": args.channels_last}  # fmt: skip
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        np.savez_compressed(tmp, images=to_uint8(images), info=json.dumps(info))
        tmp.replace(path)
        print(
            f"{path.name}: {info['description']}, NFE {info['nfe']}, {info['seconds']:.1f} s",
            flush=True,
        )


def scorer(args, train_x: torch.Tensor, held_x: torch.Tensor) -> HeldOutAndTraining:
    """The scores of a set against the held-out and the training digits (``--classifier``)."""
    clf = load_classifier(args.classifier)
    return HeldOutAndTraining(classifier_extractor(clf, args.classifier), clf, held_x, train_x)


def score(args, out: Path, train_x: torch.Tensor, held_x: torch.Tensor, command: str) -> dict:
    """Score every set of this benchmark in OUT/samples and the data floor; write
    OUT/fast_samplers.json and OUT/fast_samplers.png."""
    metrics = scorer(args, train_x, held_x)

    rows = []
    for path in sorted((out / "samples").glob(f"{args.recipe}-*.npz")):
        match = SET_NAME.match(path.name)
        if not match or match.group(1) != args.recipe:
            continue
        with np.load(path) as f:
            images, info = f["images"], json.loads(str(f["info"]))
        if info.get("benchmark") != "fast_samplers":
            print(f"{path.name}: not written by this benchmark, skipped", flush=True)
            continue
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        # the file's name says the variant (VARIANTS: ipndm_gits is ipndm on the GITS levels)
        sampler = match.group(2)
        rows.append({"file": path.name, **info, "sampler": sampler, "metrics": metrics(x)})
        m = rows[-1]["metrics"]
        print(
            f"{path.name}: NFE {info['nfe']}, FD {m['fd']:.2f} (mean {m['mean_term']:.2f}, "
            f"cov {m['cov_term']:.2f}), FD train {m['fd_train']:.2f}, "
            f"precision {m['precision']:.3f}, recall {m['recall']:.3f}",
            flush=True,
        )
    pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))[: args.n]
    floor = {"n": len(pick), "metrics": metrics(train_x[pick])}
    record = {
        "benchmark": "the fast samplers against NFE (MNIST, classifier features)",
        "command": command,
        "settings": vars(args),
        "classifier": args.classifier,
        "data_floor": floor,
        "rows": rows,
        "table": table(rows, floor),
    }
    atomic_write_bytes(out / f"{stem(args)}.json", json.dumps(record, indent=1).encode())
    plot(rows, floor, out / f"{stem(args)}.png")
    print(record["table"])
    return record


def tune(args, out: Path, runs: Runs, train_x, held_x, command: str) -> dict:
    """``--stage mid`` and ``--stage eta``: ``--n`` samples of seed TUNE_SEED for each value of
    one sampler option; the choice is the lowest FD against the *training* digits (the held-out
    FD is recorded, not used), into OUT/fast_samplers_RECIPE_STAGE.json. mid: the consistency
    model's middle σ at 2 NFE (``--mids``), each with every share of fresh noise of
    ``--gammas`` (the choice's γ in ``chosen_gamma``); eta: dpmpp_2m_sde's noise share η at
    ``--eta-nfe`` NFE (``--etas``)."""
    if args.stage == "mid":
        field, sampler, nfe = "sigma_mid", "consistency", 2
        mids, gammas = numbers("--mids", args.mids), numbers("--gammas", args.gammas)
        settings = [{field: m, "gamma": g} for m in mids for g in gammas]
    else:
        field, sampler, nfe = "eta", "dpmpp_2m_sde", args.eta_nfe
        settings = [{field: e} for e in numbers("--etas", args.etas)]
    metrics = scorer(args, train_x, held_x)
    run_dir, model, sched, meta = runs(sampler)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for setting in settings:
        images, info = draw(model, sched, meta, sampler, nfe, args.n, TUNE_SEED,
                            precision=args.precision, **setting)  # fmt: skip
        m = metrics(quantize(images))
        rows.append(setting | {"description": info["description"], "metrics": m})
        shown = ", ".join(f"{k} {v:g}" for k, v in setting.items())
        print(f"{shown}: FD train {m['fd_train']:.2f}, held-out {m['fd']:.2f}", flush=True)
    best = min(rows, key=lambda r: r["metrics"]["fd_train"])
    record = {
        "benchmark": f"{sampler}'s {field} at {nfe} NFE (MNIST, classifier features)",
        "command": command,
        "settings": vars(args),
        "run": str(run_dir),
        "step": meta["step"],
        "nfe": nfe,
        "seed": TUNE_SEED,
        "chosen": best[field],
        **({"chosen_gamma": best["gamma"]} if "gamma" in best else {}),
        "rows": rows,
    }
    name = f"{stem(args)}_{args.stage}.json"
    atomic_write_bytes(out / name, json.dumps(record, indent=1).encode())
    shown = ", ".join(f"{k} {best[k]:g}" for k in settings[0])
    print(f"chosen {shown} (lowest FD against the training digits)")
    return record


def stem(args) -> str:
    """OUT's file names: fast_samplers for the default recipe, fast_samplers_RECIPE otherwise."""
    return "fast_samplers" if args.recipe == "default" else f"fast_samplers_{args.recipe}"


def groups(rows: list[dict]) -> list[tuple[str, int, list[dict]]]:
    """(sampler, NFE, the rows of its seeds), samplers in KNOWN's order, NFE ascending."""
    keys = sorted({(r["sampler"], r["nfe"]) for r in rows}, key=lambda k: (KNOWN.index(k[0]), k[1]))
    return [(s, nfe, [r for r in rows if (r["sampler"], r["nfe"]) == (s, nfe)]) for s, nfe in keys]


def table(rows: list[dict], floor: dict) -> str:
    lines = [
        "| sampler | NFE | seeds | FD held-out median (min–max) | FD train | mean term | cov term "
        "| precision | recall | coverage | s / 1000 samples |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sampler, nfe, rs in groups(rows):

        def med(key, rs=rs):
            return statistics.median(r["metrics"][key] for r in rs)

        fd = [r["metrics"]["fd"] for r in rs]
        per_1000 = statistics.median(r["seconds"] * 1000 / r["n"] for r in rs)  # scaled to 1,000
        lines.append(
            f"| {sampler} | {nfe} | {len(rs)} | {med('fd'):.2f} ({min(fd):.2f}–{max(fd):.2f}) | "
            f"{med('fd_train'):.2f} | {med('mean_term'):.2f} | {med('cov_term'):.2f} | "
            f"{med('precision'):.3f} | {med('recall'):.3f} | {med('class_coverage'):.2f} | "
            f"{per_1000:.1f} |"
        )
    m = floor["metrics"]
    lines.append(
        f"| real training digits ({floor['n']}) | – | – | {m['fd']:.2f} | {m['fd_train']:.2f} | "
        f"{m['mean_term']:.2f} | {m['cov_term']:.2f} | {m['precision']:.3f} | "
        f"{m['recall']:.3f} | {m['class_coverage']:.2f} | – |"
    )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], floor: dict, path: Path) -> None:
    """FD held-out and FD train against NFE: one line per sampler, the median over seeds with
    min–max error bars, log y; the data floor dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in [(axes[0], "fd", "FD vs held-out digits"),
                           (axes[1], "fd_train", "FD vs training digits")]:  # fmt: skip
        for sampler in KNOWN:
            gs = [(nfe, [r["metrics"][key] for r in rs]) for s, nfe, rs in groups(rows)
                  if s == sampler]  # fmt: skip
            if not gs:
                continue
            x = [nfe for nfe, _ in gs]
            med = np.array([statistics.median(v) for _, v in gs])
            err = [med - [min(v) for _, v in gs], [max(v) for _, v in gs] - med]
            ax.errorbar(x, med, yerr=err, fmt="o-", capsize=3, label=sampler)
        ax.axhline(floor["metrics"][key], ls="--", c="gray", label="real training digits")
        ax.set(xlabel="NFE", ylabel="FD (classifier features)", yscale="log", title=title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)


def time_samplers(args, out: Path, runs: Runs, command: str) -> dict:
    """Wall seconds of ``--n`` samples of each ``--time-jobs`` SAMPLER:NFE on ``--threads``
    torch threads (``--precision``, under inference mode as the samplers run), after an untimed
    warm-up (2 samples; with ``--compile`` the same again with the network compiled, warmed up on
    one full batch, ``--batch-size`` or --n if fewer, so that the compile is not timed); into
    OUT/fast_samplers_time.json (the names of the module's docstring)."""
    jobs = parse_jobs(args.time_jobs, 2)
    if args.compile:  # before anything is timed: a missing C++ compiler fails here, in seconds
        check_compile(torch.device("cpu"), "--compile")
    with_gits(args, out, runs, jobs)
    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    rows = []
    try:
        for mode in ("eager", "compiled") if args.compile else ("eager",):
            if mode == "compiled":
                runs.compile()  # the eager pass loaded every run the jobs need
            for sampler, nfe in jobs:
                _, model, sched, meta = runs(sampler)
                warm_up = 2 if mode == "eager" else min(args.n, args.batch_size)
                both = {"batch_size": args.batch_size, "precision": args.precision,
                        "gamma": args.gamma}  # fmt: skip
                draw(model, sched, meta, sampler, nfe, warm_up, 0, args.sigma_mid, **both)
                start = time.perf_counter()
                _, info = draw(model, sched, meta, sampler, nfe, args.n, 0, args.sigma_mid, **both)
                seconds = time.perf_counter() - start
                rows.append({
                    "sampler": sampler, "nfe": nfe, "steps": info["steps"], "n": args.n,
                    "mode": mode, "channels_last": args.channels_last,
                    "batch_size": args.batch_size, "precision": args.precision,
                    "description": info["description"], "seconds": round(seconds, 3),
                    "seconds_per_1000": round(seconds * 1000 / args.n, 3),
                })  # fmt: skip
                print(f"time {sampler} NFE {nfe} ({mode}): {args.n} samples in {seconds:.2f} s",
                      flush=True)  # fmt: skip
    finally:
        torch.set_num_threads(before)
    run_dir, _, _, meta = runs.get("teacher")
    record = {
        "benchmark": f"the fast samplers' wall time (MNIST, {args.precision}, CPU)",
        "command": command,
        "settings": vars(args),
        "run": str(run_dir),
        "step": meta["step"],
        "threads": args.threads,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__,
        },
        "rows": rows,
    }
    name = "_time" if args.batch_size == SET_BATCH else f"_time_b{args.batch_size}"
    name += "_bf16" if args.precision == "bf16" else ""  # fp32 and bf16 times side by side
    atomic_write_bytes(out / f"{stem(args)}{name}.json", json.dumps(record, indent=1).encode())
    return record


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    command = shlex.join(
        ["python", "benchmarks/fast_samplers.py", *(sys.argv[1:] if argv is None else argv)]
    )
    out = Path(args.out)
    start = time.perf_counter()
    run_dir = Path(args.run)
    cm_dir = Path(args.cm_run) if args.cm_run else None
    if args.smoke and args.stage in ("all", "sample", "time", "mid", "eta"):
        run_dir = smoke_run(args, out)
        cm_dir = smoke_distill(run_dir, out)
    runs = Runs(args, run_dir, cm_dir)
    record = None
    if args.stage in ("all", "sample"):
        sample(args, out, runs)
    if args.stage in ("all", "score"):
        record = score(args, out, *digits(args), command)
    if args.stage in ("mid", "eta"):
        record = tune(args, out, runs, *digits(args), command)
    if args.stage in ("all", "time"):
        timing = time_samplers(args, out, runs, command)
        record = timing if record is None else record | {"time": timing}
    print(f"{time.perf_counter() - start:.0f} s")
    return record


if __name__ == "__main__":
    main()
