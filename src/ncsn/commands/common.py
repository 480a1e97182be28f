"""What the commands share: the config-or-preset path, ``--config``/``--set``, argument checks."""

from __future__ import annotations

import math

import ncsn.config as config
import ncsn.limits as limits
import ncsn.presets as presets
from ncsn.devices import resolve_device
from ncsn.errors import NCSNError
from ncsn.samplers import run
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
    pc, churn = run.PC(), run.Churn()
    q.add_argument("--sampler", choices=run.SAMPLERS, default="ald", help="default ald")
    q.add_argument(
        "--steps",
        type=int,
        help="ald: Langevin steps per level T (ε follows the NCSNv2 rule for it; default the "
        "run's T); pc: noise levels N (default the run's L); ode/churn: N (default "
        f"{run.ODE_STEPS})",
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
        "--rho", type=float, default=churn.rho, help=f"ode/churn: σ spacing ρ ({churn.rho})"
    )
    for name in ("s_churn", "s_min", "s_max", "s_noise"):
        value = getattr(churn, name)
        flag = "--" + name.replace("_", "-")
        label = "S_" + name[2:]
        q.add_argument(flag, type=float, default=value, help=f"churn: {label} ({value})")


def sampler_options(args, cfg: config.Config):
    """The options dataclass of ``args.sampler`` from the sampler flags (and the run's
    ``sample.init``), checked."""
    limits.check("sample.steps", args.steps, flag="--steps")
    limits.check("sample.levels", args.levels, flag="--levels")
    limits.check("sample.correctors", args.correctors, flag="--correctors", least=0)
    check_positive("--eps", args.eps)
    check_positive("--snr", args.snr)
    check_positive("--s-noise", args.s_noise)
    if not 1 <= args.rho <= 1000:  # ρ = 1: uniform in σ; Karras et al. use 7
        raise NCSNError(f"--rho {args.rho}: expected a number between 1 and 1000")
    for flag, value in [("--s-churn", args.s_churn), ("--s-min", args.s_min)]:
        if not 0 <= value < math.inf:
            raise NCSNError(f"{flag} {value}: expected a finite number of at least 0")
    if not args.s_max >= 0:  # inf: churn at every σ ≥ S_min
        raise NCSNError(f"--s-max {args.s_max}: expected a number of at least 0 (or inf)")
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
    return model, sched, cfg, meta, device
