"""``ncsn ema``: the weights of a run averaged with any power-function EMA profile, after
training (Karras et al. 2024, EDM2 §3.2; :mod:`ncsn.training.power_ema`)."""

from __future__ import annotations

from pathlib import Path

from ncsn.training import power_ema


def cmd_ema(args) -> None:
    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / "posthoc" / f"std-{args.std:.3f}"
    path, summary = power_ema.write(run_dir, args.std, out, args.step)
    print(
        f"σ_rel = {summary['std']:g} (γ = {summary['gamma']:.3f}) at step {summary['step']} from "
        f"{summary['snapshots']} snapshots of profiles σ_rel {summary['stored_stds']}: relative "
        f"L² error of the profile {summary['profile_error']:.2e}"
    )
    hint = "" if out.suffix == ".safetensors" else f"; sample it with: ncsn sample {out}"
    print(f"wrote {path}{hint}")


def add_parsers(sub) -> None:
    q = sub.add_parser(
        "ema",
        help="post-hoc EMA: write a run with any EMA length, from the training's snapshots",
        description="Reconstruct the weights a power-function EMA with relative standard "
        "deviation --std would have given (EDM2's post-hoc EMA: a least-squares combination of "
        "the snapshots written when training with train.ema_stds) and write them as a "
        "sampling-only run (default RUN/posthoc/std-X) or one .safetensors checkpoint.",
    )
    q.add_argument("run_dir", help="run directory trained with train.ema_stds")
    q.add_argument("--std", type=float, required=True, help="σ_rel of the profile, e.g. 0.05")
    q.add_argument("--out", help="run directory or .safetensors file to write")
    q.add_argument("--step", type=int, help="reconstruct at this step (default: the last snapshot)")
    q.set_defaults(func=cmd_ema)
