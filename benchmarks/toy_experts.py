"""Experts and the Fokker–Planck regulariser on toy mixtures with exact scores (issue 8).

For each preset, MLP score models trained with DSM on the toy ladder of
:func:`ncsn.lab.toy.toy_config` (σ₁ by NCSNv2 technique 1, σ_L = 0.1, L = 30), all for the
same number of steps and batch:
- one network (the baseline: the toy MLP, 3 hidden layers of 128, σ embedding 32);
- 2 and 4 experts over equal bands, each the baseline's size (K × the parameters);
- 2 and 4 experts at the baseline's parameter count (narrower MLPs);
- the baseline with the Fokker–Planck regulariser (``train.fp_weight`` 0.1 and 1).
Each is scored by the relative score error E‖s_θ − s*‖²/E‖s*‖² at every level (x ~ p_σ, exact
samples; :func:`ncsn.lab.toy.relative_score_error`), reported as the mean and max over the
levels and the mean over the five smallest and the five largest σ, with the wall time of training,
and, for the regularised runs, the Fokker–Planck residual of the trained model next to the
baseline's.

    nice python benchmarks/toy_experts.py [--smoke] [--out benchmarks/results]

writes toy_experts.json and toy_experts.png (``_smoke`` with --smoke).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from ncsn.data.toy import make_toy
from ncsn.fokker_planck import residual
from ncsn.lab.plots import save_json
from ncsn.lab.toy import relative_score_error, toy_config
from ncsn.model import count_parameters
from ncsn.training.loop import train
from ncsn.training.state import load_run

VARIANTS = {  # name: config overrides (attribute path → value)
    "one network": {},
    "2 experts": {"model.experts": 2},
    "4 experts": {"model.experts": 4},
    # the baseline has 103,938 parameters; these have 105,924 and 105,480
    "2 experts, equal params": {"model.experts": 2, "model.hidden": 112, "model.embedding_dim": 16},
    "4 experts, equal params": {"model.experts": 4, "model.hidden": 64, "model.embedding_dim": 16},
    "FP regulariser 0.1": {"train.fp_weight": 0.1, "train.fp_examples": 64},
    "FP regulariser 1": {"train.fp_weight": 1.0, "train.fp_examples": 64},
}


def _set(cfg, path: str, value) -> None:
    section, key = path.split(".")
    setattr(getattr(cfg, section), key, value)


def fp_residual(model, mixture, sigmas, n: int, seed: int) -> float:
    """Mean over the neighbouring pairs of E σ_m⁴ ½‖r‖² for x ~ p_σm (exact samples)."""
    gen = torch.Generator().manual_seed(seed)
    x0 = mixture.sample(n, gen)
    values = []
    for a, b in zip(sigmas[:-1], sigmas[1:], strict=True):
        sa, sb = torch.full((n,), float(a)), torch.full((n,), float(b))
        r, sm = residual(model, x0, sa, sb, generator=gen, create_graph=False)
        values.append(float((sm.pow(4) * 0.5 * r.detach().pow(2).sum(1)).mean()))
    return statistics.mean(values)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny settings, same code")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--presets", default="mixture,ring8")
    p.add_argument("--steps", type=int, default=3000)
    args = p.parse_args(argv)
    steps, batch, points = (20, 64, 300) if args.smoke else (args.steps, 512, 10000)
    presets = ["mixture"] if args.smoke else args.presets.split(",")
    variants = (
        dict(list(VARIANTS.items())[:2] + [list(VARIANTS.items())[5]]) if args.smoke else VARIANTS
    )
    result = {
        "benchmark": "experts and the Fokker–Planck regulariser on toy mixtures (issue 8)",
        "command": shlex.join(["python", "benchmarks/toy_experts.py", *argv]),
        "settings": {"steps": steps, "batch_size": batch, "error_points": points, "seed": 0},
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "presets": {},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "toy_experts_smoke" if args.smoke else "toy_experts"
    with tempfile.TemporaryDirectory(prefix="ncsn-toy-experts-") as work:
        for preset in presets:
            mixture = make_toy(preset)
            rows = {}
            for name, overrides in variants.items():
                run_dir = Path(work) / preset / name.replace(" ", "_").replace(",", "")
                cfg = toy_config(preset, run_dir=run_dir, steps=steps, seed=0, batch_size=batch)
                for path, value in overrides.items():
                    _set(cfg, path, value)
                start = time.perf_counter()
                train(cfg, progress=False, log=lambda *_: None)
                seconds = time.perf_counter() - start
                model, sched, _, _ = load_run(run_dir, log=lambda *_: None)
                errors = relative_score_error(
                    model,
                    mixture,
                    sched.sigmas,
                    n=points,
                    generator=torch.Generator().manual_seed(1),
                )
                rows[name] = {
                    "overrides": overrides,
                    "parameters": count_parameters(model),
                    "train_s": round(seconds, 1),
                    "error_mean": statistics.mean(errors),
                    "error_max": max(errors),
                    "error_large_sigma": statistics.mean(errors[:5]),
                    "error_small_sigma": statistics.mean(errors[-5:]),
                    "errors": errors,
                    "fp_residual": fp_residual(model, mixture, sched.sigmas, 2000, 2),
                }
                print(
                    f"{preset} / {name}: {rows[name]['error_mean']:.4f} mean, "
                    f"{rows[name]['error_max']:.4f} max, {seconds:.0f} s",
                    flush=True,
                )
            result["presets"][preset] = {"sigmas": sched.sigmas, "rows": rows}
            save_json(result, out / f"{stem}.json")
    _plot(result, out / f"{stem}.png")
    print(f"wrote {out / f'{stem}.json'}")
    return result


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = result["presets"]
    fig, axes = plt.subplots(1, len(presets), figsize=(6 * len(presets), 4.5), squeeze=False)
    for ax, (preset, data) in zip(axes[0], presets.items(), strict=True):
        for name, row in data["rows"].items():
            ax.plot(data["sigmas"], row["errors"], "o-", ms=3, label=name)
        ax.set(xscale="log", yscale="log", xlabel="σ", ylabel="relative score error", title=preset)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
