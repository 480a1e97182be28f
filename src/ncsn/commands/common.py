"""What the commands share: the config-or-preset path, ``--config``/``--set``, argument checks."""

from __future__ import annotations

import math

import torch

import ncsn.config as config
import ncsn.consistency as consistency
import ncsn.limits as limits
import ncsn.presets as presets
import ncsn.samplers.conditioning as conditioning
import ncsn.samplers.gits as gits
import ncsn.schedule as schedule
from ncsn.devices import resolve_device
from ncsn.errors import NCSNError
from ncsn.samplers import run
from ncsn.samplers.multistep import MAX_ORDER
from ncsn.samplers.restart import SOLVERS
from ncsn.samplers.unipc import MAX_ORDER as UNIPC_MAX_ORDER
from ncsn.training.state import load_run


def load_config(args) -> config.Config:
    """The config of ``--config`` with the ``--set`` overrides (and ``--run-dir``, if any)."""
    overrides = list(args.set or [])
    if getattr(args, "run_dir", None):
        overrides.append(f"run_dir={args.run_dir}")
    return config.load(presets.find(args.config), overrides)


def add_config_args(q, what: str = "override a config value") -> None:
    """``--config`` (file or preset) and repeatable ``--set KEY=VALUE``."""
    q.add_argument(
        "--config",
        "-c",
        help="YAML config file, or a preset name: "
        + ", ".join(presets.preset_names())
        + " (default: built-in defaults, the digits data)",
    )
    q.add_argument(
        "--set",
        "-s",
        action="append",
        metavar="KEY=VALUE",
        help=f"{what}, e.g. --set train.steps=2000 (repeatable; values are parsed as YAML)",
    )


def check_at_least(flag: str, value, least: int) -> None:
    """An NCSNError naming ``flag`` unless ``value`` (when given) is at least ``least``."""
    if value is not None and not value >= least:
        raise NCSNError(f"{flag} {value}: expected an integer of at least {least}")


def check_positive(flag: str, value) -> None:
    """An NCSNError naming ``flag`` unless ``value`` (when given) is a finite positive number."""
    if value is not None and not 0 < value < math.inf:
        raise NCSNError(f"{flag} {value}: expected a finite positive number")


def add_sampler_args(q) -> None:
    """``--sampler``, ``--steps`` and every sampler's options; defaults from
    :mod:`ncsn.samplers.run`'s options dataclasses (stated there once)."""
    pc, churn, ipndm, sde, unipc, restart, cm = (
        run.PC(),
        run.Churn(),
        run.IPNDM(),
        run.DPMpp2MSDE(),
        run.UniPC(),
        run.Restart(),
        run.Consistency(),
    )
    q.add_argument(
        "--sampler",
        choices=run.SAMPLERS,
        help="default: the run's sample.sampler (ald in every preset) with its sample.steps",
    )
    q.add_argument(
        "--steps",
        type=int,
        help="ald: Langevin steps per level T (ε follows the NCSNv2 rule for it; default the "
        "run's T); pc: noise levels N (default the run's L); ode, churn, ipndm, dpmpp_2m, "
        f"dpmpp_2m_sde, unipc, restart: N (default {run.ODE_STEPS}); consistency: jumps N "
        "(default 1)",
    )
    q.add_argument(
        "--eps",
        type=float,
        help="ald step size ε, official convention (default: the run's for its own T, the "
        "NCSNv2 rule's for another T)",
    )
    q.add_argument(
        "--levels",
        type=int,
        help="ald: sample on a geometric ladder of this many levels between the run's σ₁ and "
        "σ_L (ε by the NCSNv2 rule for its γ and T) instead of the training ladder",
    )
    q.add_argument("--init", choices=["uniform", "gaussian"], help="ald starting noise")
    q.add_argument("--no-denoise", action="store_true", help="skip the final denoising step")
    q.add_argument(
        "--correctors",
        type=int,
        default=pc.correctors,
        help=f"pc: corrector steps M ({pc.correctors})",
    )
    q.add_argument("--snr", type=float, default=pc.snr, help=f"pc: signal-to-noise r ({pc.snr})")
    q.add_argument(
        "--rho",
        type=float,
        default=churn.rho,
        help=f"ode, churn and the karras step schedule: σ spacing ρ ({churn.rho})",
    )
    q.add_argument(
        "--step-schedule",
        choices=(*schedule.STEP_SCHEDULES, "gits"),
        default=ipndm.schedule,
        help="ipndm, dpmpp_2m, dpmpp_2m_sde, unipc, restart: the N levels ρ-spaced (karras, "
        "Karras et al. 2022 Eq. 5), uniform in log σ (loguniform), or optimised for this run "
        f"(gits, made by `ncsn steps`) ({ipndm.schedule})",
    )
    q.add_argument(
        "--max-order",
        type=int,
        default=ipndm.max_order,
        help=f"ipndm: highest Adams–Bashforth order, 1 to 4 ({ipndm.max_order})",
    )
    q.add_argument(
        "--eta",
        type=float,
        default=sde.eta,
        help=f"dpmpp_2m_sde: noise share η, 0 = the deterministic 2M ({sde.eta})",
    )
    q.add_argument(
        "--restart-min",
        type=float,
        default=restart.restart_min,
        help="restart: t_min, a σ; the restarts begin at the first level at or below it "
        f"({restart.restart_min})",
    )
    q.add_argument(
        "--restart-max",
        type=float,
        default=restart.restart_max,
        help=f"restart: t_max, the σ each restart adds noise up to ({restart.restart_max})",
    )
    q.add_argument(
        "--restarts",
        type=int,
        default=restart.restarts,
        help=f"restart: K, how many times to restart, 0 = the solver alone ({restart.restarts})",
    )
    q.add_argument(
        "--restart-steps",
        type=int,
        default=restart.restart_steps,
        help=f"restart: M, solver steps from t_max back to t_min ({restart.restart_steps})",
    )
    q.add_argument(
        "--restart-solver",
        choices=tuple(SOLVERS),
        default=restart.solver,
        help="restart: the ODE solver down the ladder and back from each restart: heun (Xu et "
        "al.'s, 2N − 1 + 2KM NFE) or dpmpp_2m (N + KM NFE) "
        f"({restart.solver})",
    )
    q.add_argument(
        "--unipc-order",
        type=int,
        default=unipc.order,
        help=f"unipc: the predictor's order, 1 to {UNIPC_MAX_ORDER}; the corrector adds one "
        f"({unipc.order})",
    )
    q.add_argument(
        "--sigma-mid",
        type=float,
        help="consistency: the σ the second jump starts from (later jumps follow a ρ ladder "
        "from it down to σ_L) (default: the first level of the run's train.ect_grid, the one it "
        "was distilled to jump from; else ECT's 0.821 in units of the data: 0.821·σ_data/0.5)",
    )
    q.add_argument(
        "--gamma",
        type=float,
        default=cm.gamma,
        help="consistency: the share of fresh noise when re-noising for the next jump, 0 to 1; "
        "the rest follows the last jump's trajectory back up (γ-sampling of Kim et al. 2024, "
        f"Consistency Trajectory Models; 1 = Song et al.'s multistep sampler) ({cm.gamma:g})",
    )
    for name in ("s_churn", "s_min", "s_max", "s_noise"):
        value = getattr(churn, name)
        flag = "--" + name.replace("_", "-")
        label = "S_" + name[2:]
        q.add_argument(flag, type=float, default=value, help=f"churn: {label} ({value})")


def sampler_options(args, cfg: config.Config):
    """The options dataclass of ``args.sampler`` from the sampler flags (and the run's
    ``sample.init``), checked. Without ``--sampler``, the run's ``sample.sampler`` and, unless
    ``--steps`` is given, its ``sample.steps`` (``args`` is updated)."""
    if args.sampler is None:
        args.sampler = cfg.sample.sampler
        args.steps = args.steps if args.steps is not None else cfg.sample.steps
    limits.check("sample.steps", args.steps, flag="--steps")
    limits.check("sample.levels", args.levels, flag="--levels")
    limits.check("sample.correctors", args.correctors, flag="--correctors", least=0)
    check_positive("--eps", args.eps)
    check_positive("--snr", args.snr)
    check_positive("--s-noise", args.s_noise)
    check_positive("--sigma-mid", args.sigma_mid)
    if not 1 <= args.rho <= 1000:  # ρ = 1: uniform in σ; Karras et al. use 7
        raise NCSNError(f"--rho {args.rho}: expected a number between 1 and 1000")
    for flag, value in [("--s-churn", args.s_churn), ("--s-min", args.s_min)]:
        if not 0 <= value < math.inf:
            raise NCSNError(f"{flag} {value}: expected a finite number of at least 0")
    if not args.s_max >= 0:  # inf: churn at every σ ≥ S_min
        raise NCSNError(f"--s-max {args.s_max}: expected a number of at least 0 (or inf)")
    _check_fast_samplers(args)
    return run.options(
        args.sampler,
        eps=args.eps,
        init=args.init or cfg.sample.init,
        denoise_final=not args.no_denoise,
        levels=args.levels,
        correctors=args.correctors,
        snr=args.snr,
        rho=args.rho,
        s_churn=args.s_churn,
        s_min=args.s_min,
        s_max=args.s_max,
        s_noise=args.s_noise,
        schedule=args.step_schedule,
        max_order=args.max_order,
        eta=args.eta,
        order=args.unipc_order,
        restart_min=args.restart_min,
        restart_max=args.restart_max,
        restarts=args.restarts,
        restart_steps=args.restart_steps,
        solver=args.restart_solver,
        sigma_mid=args.sigma_mid
        if args.sigma_mid is not None
        else consistency.trained_mid(cfg.train),
        gamma=args.gamma,
    )


def _check_fast_samplers(args) -> None:
    """The flags of ipndm, dpmpp_2m_sde, unipc and restart, each refused in one line naming
    it."""
    for flag, value, least, most in [
        ("--max-order", args.max_order, 1, MAX_ORDER),
        ("--unipc-order", args.unipc_order, 1, UNIPC_MAX_ORDER),
        ("--restarts", args.restarts, 0, 1000),
        ("--restart-steps", args.restart_steps, 1, 1000),
    ]:
        if not least <= value <= most:
            raise NCSNError(
                f"{flag} {limits.short(value)}: expected an integer from {least} to {most}"
            )
    if not 0 <= args.eta < math.inf:
        raise NCSNError(f"--eta {args.eta}: expected a finite number of at least 0")
    check_positive("--restart-min", args.restart_min)
    check_positive("--restart-max", args.restart_max)
    if not args.restart_max > args.restart_min:
        raise NCSNError(
            f"--restart-max {args.restart_max}: expected a σ above --restart-min "
            f"{args.restart_min} (restarts add noise from t_min up to t_max)"
        )


def run_args(q, default_out: str) -> None:
    """The arguments of every command that uses a trained run."""
    q.add_argument("run_dir", help="run directory written by `ncsn train`")
    q.add_argument("--seed", type=int, default=0, help="random seed (same seed, same output)")
    q.add_argument("--out", help=f"output folder (default RUN_DIR/{default_out})")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, … (default auto)")
    q.add_argument("--raw-weights", action="store_true", help="use the raw weights, not the EMA")


def load_run_for(args):
    """(model, schedule, config, metadata, device) of ``args.run_dir`` on ``--device``."""
    device = resolve_device(args.device, "--device")
    model, sched, cfg, meta = load_run(args.run_dir, ema=not args.raw_weights, device=device)
    sched.step_schedules = gits.load(args.run_dir)  # `--step-schedule gits`
    return model, sched, cfg, meta, device


def add_class_args(q) -> None:
    """``--class`` and ``--guidance``: what a class-conditional run is asked to draw."""
    q.add_argument(
        "--class",
        dest="classes",
        metavar="K|K,L,…|all",
        help="class-conditional runs: the class index to draw, a comma-separated list (in "
        "turn), or 'all' (one row per class in the grid, labelled); default every class in turn",
    )
    q.add_argument(
        "--guidance",
        type=float,
        metavar="W",
        help="classifier-free guidance weight w of a class-conditional run: 1 the conditional "
        "model (default), 0 the unconditional one, > 1 truer to the class, less diverse; each "
        "NFE then counts the batched pair of network evaluations",
    )


def class_request(
    args, model, n: int, in_turn: bool = True
) -> tuple[torch.Tensor | None, float | None]:
    """(labels, guidance) for ``n`` samples from ``args.classes``/``args.guidance``: labels None
    for an unconditional run; ``all`` groups the labels class by class (one grid row each).
    Without ``--class`` a conditional run draws its classes in turn, or (``in_turn`` False: the
    conditional uses) with the "no label" class, the unconditional score label dropout trained."""
    k = getattr(model, "num_classes", 0)
    if not in_turn and args.classes is None and args.guidance is None:
        return None, None
    if args.guidance is not None:
        if not k:
            raise NCSNError(
                f"--guidance {args.guidance}: the run is not class-conditional "
                "(model.num_classes = 0); train one with model.num_classes and train.label_dropout"
            )
        if not 0 <= args.guidance < math.inf:
            raise NCSNError(f"--guidance {args.guidance}: expected a finite weight of at least 0")
    labels = conditioning.class_labels(args.classes, k, n)
    if labels is not None and args.classes == "all":
        labels = labels.sort(stable=True).values
    return labels, args.guidance
