"""``ncsn distill``: a consistency model from a trained edm run by Easy Consistency Tuning
(Geng et al. 2024; :mod:`ncsn.consistency`). The new run starts from the teacher's EMA weights
and trains with ``train.objective = ect`` through the training loop, so it checkpoints, resumes
and survives a crash like ``ncsn train``; rerunning the same command continues it."""

from __future__ import annotations

from pathlib import Path

import ncsn.config as config
import ncsn.limits as limits
from ncsn.consistency import ECT_P_STD, trained_mid
from ncsn.errors import NCSNError
from ncsn.training import state
from ncsn.training.distributed import world
from ncsn.training.loop import train

DEFAULT_STEPS = 1000  # without --steps or --minutes: five ECT stages of 200 steps
ECT_LR = 1e-4  # Geng et al. 2024, run_ecm_1hour.sh (batch 128)
CHECKPOINT_EVERY = 200  # one per ECT stage: a crash loses at most one stage's steps


def distill_config(teacher: Path, out: Path, steps: int, overrides: list[str]) -> config.Config:
    """The student's config: the teacher's data, network, ladder (its resolved numbers) and
    training bookkeeping, with the consistency parameterization, ECT's objective and constants,
    ``train.init_from`` = the teacher, ``steps``, then the user's ``--set`` ``overrides``."""
    _, meta, path = state.latest_good(teacher / "checkpoints", print, required=True)
    cfg, sched = state.parse_meta(meta, path)
    if cfg.model.parameterization != "edm":
        raise NCSNError(
            f"{teacher}: model.parameterization = {cfg.model.parameterization!r}; ncsn distill "
            "needs an edm run (its network F is the consistency model's far from σ_min): train "
            "one with --set model.parameterization=edm (the mnist preset does)"
        )
    derived = [
        "model.parameterization=consistency",
        "train.objective=ect",
        f"train.init_from={teacher}",
        f"schedule.sigma_max={sched.sigma_max!r}",  # the teacher's ladder, as numbers
        f"schedule.sigma_min={sched.sigma_min!r}",
        f"schedule.num_levels={sched.num_levels}",
        f"schedule.step_size={sched.step_size!r}",
        "train.p_mean=auto",  # with objective ect: ECT's −1.1 + ln(σ_data/0.5)
        f"train.p_std={ECT_P_STD}",
        f"train.lr={ECT_LR}",
        "train.warmup=0",
        f"train.steps={steps}",
        f"train.checkpoint_every={CHECKPOINT_EVERY}",
        f"train.preview_every={CHECKPOINT_EVERY}",
        f"run_dir={out}",
    ]
    return config.with_overrides(config.to_dict(cfg), [*derived, *overrides], str(path))


def cmd_distill(args) -> None:
    teacher, out = Path(args.run_dir), Path(args.out)
    if not teacher.is_dir():
        raise NCSNError(f"{teacher}: run directory not found")
    if out.resolve() == teacher.resolve():
        raise NCSNError(f"--out {out}: is the teacher's run directory; choose a new one")
    limits.check("train.steps", args.steps, flag="--steps")
    # (NaN and inf fail the comparison too)
    if args.minutes is not None and not 0 < args.minutes <= limits.FLAG_BOUNDS["distill.minutes"]:
        raise NCSNError(
            f"--minutes {args.minutes}: expected a number of minutes in (0, "
            f"{limits.FLAG_BOUNDS['distill.minutes']:,}]"
        )
    steps = args.steps or (limits.BOUNDS["train.steps"] if args.minutes else DEFAULT_STEPS)
    cfg = distill_config(teacher, out, steps, list(args.set or []))
    summary = train(cfg, progress=not args.no_progress, minutes=args.minutes)
    mid = trained_mid(cfg.train)  # (also ncsn sample's default; named here to be plain)
    jumps = f"--steps 2 --sigma-mid {mid:g}" if mid is not None else "--steps 1 (or 2)"
    if world().main:
        print(
            f"distilled to step {summary['step']}; run directory: {summary['run_dir']}; sample "
            f"it with: ncsn sample {summary['run_dir']} --sampler consistency {jumps}"
        )


def add_parsers(sub) -> None:
    q = sub.add_parser(
        "distill",
        help="consistency model from a trained edm run (Easy Consistency Tuning), 1–2 NFE",
        description="Fine-tune a trained edm run into a consistency model f(x, σ) with f(x, σ_min) "
        "= x by Easy Consistency Tuning (Geng et al. 2024): a new run in --out that starts from "
        "the teacher's EMA weights, keeps its data, network and ladder, and samples with "
        "`ncsn sample OUT --sampler consistency --steps 1|2`. ECT's constants are train.ect_* "
        "and train.p_mean/p_std (docs/config.md); --set train.ect_pair=teacher makes the pairs "
        "with the teacher's ODE (consistency distillation) instead of shared noise, in "
        "train.ect_teacher_steps Heun steps (train.compile_teacher=true compiles the teacher, "
        "whose forward passes are most of such a step); train.ect_weight=uniform weights "
        "every pair alike (CD's λ ≡ 1) and train.ect_distance=l1 measures it in L1; "
        "train.ect_grid=[1.0] trains on CD's discrete grid σ₁ > 1.0 > σ_min only, the levels "
        "a 2-NFE sampler with --sigma-mid 1.0 jumps from. Any training field can be "
        "--set. Rerunning the command resumes the run from its last checkpoint.",
    )
    q.add_argument("run_dir", help="the teacher: a run trained with model.parameterization edm "
                                   "(or its `ncsn ema` post-hoc run)")  # fmt: skip
    q.add_argument("--out", required=True, help="run directory of the consistency model")
    budget = q.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help=f"training steps (default {DEFAULT_STEPS})")
    budget.add_argument(
        "--minutes", type=float, help="train for this much wall time, then checkpoint and stop"
    )
    q.add_argument(
        "--set",
        "-s",
        action="append",
        metavar="KEY=VALUE",
        help="override a field of the derived config, e.g. --set train.ect_stage_steps=400",
    )
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_distill)
