"""Bits per dimension of MNIST digits under a trained run, through the probability-flow ODE
(issue 17; :mod:`ncsn.likelihood`).

Protocol (the MNIST benchmark's, benchmarks/mnist.py): the run trained on the first 8,000 of the
10,000 MNIST test digits; the last 2,000 are held out. Three parts, each written to
``OUT/likelihood.json`` as soon as it is done (with the exact command):

1. ``convergence``: the first ``--n-convergence`` held-out digits, one dequantization and one
   probe set (seed 0) shared by every setting, under Heun with ``--convergence-steps`` steps,
   scipy's RK45, and more Hutchinson probes: bits/dim against NFE until it stops moving
   (``likelihood_convergence.png``).
2. ``main``: ``--n`` held-out digits and ``--n-train`` training digits (a seeded random subset of
   the 8,000) at ``--steps`` Heun steps, ``--probes`` probes: mean ± standard error.
3. ``ood``: ``--n-ood`` images that are not MNIST digits: uniform 8-bit noise, the held-out
   digits inverted (255 − k), scikit-learn's 8 × 8 digits upscaled to 28 × 28.

    python benchmarks/likelihood.py --run benchmarks/results/mnist/runs/default --threads 1
    python benchmarks/likelihood.py --smoke            # a tiny run trained here, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import ncsn.config as config
import ncsn.schedule as schedule
from ncsn.data.images import load_digits, load_mnist
from ncsn.files import atomic_write_bytes
from ncsn.likelihood import score_examples
from ncsn.samplers.run import ode_mean
from ncsn.training.loop import train
from ncsn.training.state import load_run

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", default=str(REPO / "benchmarks/results/mnist/runs/default"))
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "mnist"))
    p.add_argument("--parts", default="convergence,main,ood")
    p.add_argument("--n-convergence", type=int, default=100)
    p.add_argument("--convergence-steps", default="5,10,20,40,80", help="Heun steps to try")
    p.add_argument("--rk45-tols", default="1e-5", help="RK45 rtol = atol values to try")
    p.add_argument("--more-probes", default="4@40", help="K@N: K probes at N Heun steps (or '')")
    p.add_argument("--n", type=int, default=2000, help="held-out digits (main part)")
    p.add_argument("--n-train", type=int, default=2000, help="training digits (main part)")
    p.add_argument("--n-ood", type=int, default=200, help="images of each out-of-distribution set")
    p.add_argument("--solver", default="rk45", help="solver of the main and ood parts")
    p.add_argument("--tol", type=float, default=1e-4, help="their rk45 rtol = atol")
    p.add_argument("--steps", type=int, default=160, help="their Heun steps (--solver heun)")
    p.add_argument("--probes", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--smoke", action="store_true", help="a tiny run and tiny sizes: seconds")
    return p.parse_args(argv)


def bpd_stats(scores, wall: float) -> dict:
    b = scores.bits_per_dim.double()
    return {
        "n": len(b),
        "bits_per_dim": float(b.mean()),
        "standard_error": float(b.std() / math.sqrt(len(b))) if len(b) > 1 else None,
        "nats_per_example": float(scores.nats.mean()),
        "nfe": scores.nfe,
        "prior_gap_nats": scores.prior_gap,
        "seconds": round(wall, 1),
        "settings": scores.settings,
    }


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = None
    if a.smoke:
        tmp = tempfile.TemporaryDirectory()
        a.run = _smoke_run(Path(tmp.name))
        a.n_convergence, a.n, a.n_train, a.n_ood, a.batch_size = 4, 4, 4, 2, 4
        a.convergence_steps, a.steps, a.more_probes = "2,4", 2, "2@2"
    model, sched, cfg, meta = load_run(a.run, device="cpu")
    shape = tuple(meta["data_shape"])
    digits = _mnist(a, shape)
    held_out = digits[8000:] if len(digits) >= 10000 else digits[len(digits) // 2 :]
    training = digits[:8000] if len(digits) >= 10000 else digits[: len(digits) // 2]
    prior_mean = "recorded in the run"
    if sched.data_mean is None:  # runs trained before issue 14: μ as training records it now
        sched.data_mean = schedule.data_mean(training)
        prior_mean = "the training digits' mean (ncsn.schedule.data_mean; the run predates it)"
    common = {
        "sigma_min": sched.sigma_min,
        "sigma_max": sched.sigma_max,
        "mean": ode_mean(sched, (1, *shape)),
        "levels": 256,
        "batch_size": a.batch_size,
    }
    path = out / ("likelihood_smoke.json" if a.smoke else "likelihood.json")
    result = json.loads(path.read_text()) if path.exists() and not a.smoke else {}
    command = "python benchmarks/likelihood.py " + " ".join(
        shlex.quote(x) for x in (sys.argv[1:] if argv is None else argv)
    )
    result.setdefault("commands", {})  # the command that wrote each part
    for part in a.parts.split(","):
        result["commands"][part] = command
    result |= {
        "command": command,
        "run": str(a.run),
        "step": meta["step"],
        "sigma_min": sched.sigma_min,
        "sigma_max": sched.sigma_max,
        "threads": torch.get_num_threads(),
        "prior_mean": prior_mean,
    }

    def save() -> None:
        atomic_write_bytes(path, json.dumps(result, indent=1).encode())

    parts = a.parts.split(",")
    if parts == ["plot"]:  # redraw the convergence plot from the saved rows
        _plot(result["convergence"], out / "likelihood_convergence.png")
        return result
    if "convergence" in parts:
        x = held_out[: a.n_convergence]
        rows = result.get("convergence", [])  # rows of earlier calls are kept, same ones redone
        settings = [{"solver": "heun", "steps": int(s)} for s in _split(a.convergence_steps)]
        settings += [{"solver": "rk45", "rtol": float(t), "atol": float(t)}
                     for t in _split(a.rk45_tols)]  # fmt: skip
        if a.more_probes:
            k, n = a.more_probes.split("@")
            settings += [{"solver": "heun", "steps": int(n), "probes": int(k)}]
        for s in settings:
            opts = {"probes": 1} | s
            start = time.perf_counter()
            scores = score_examples(model, x, seed=0, **common, **opts)
            rows = [r for r in rows if r["options"] != opts]
            rows.append(bpd_stats(scores, time.perf_counter() - start) | {"options": opts})
            print(
                f"convergence {opts}: {rows[-1]['bits_per_dim']:.4f} bits/dim, "
                f"NFE {scores.nfe}, {rows[-1]['seconds']} s",
                flush=True,
            )
            result["convergence"] = rows
            save()
        _plot(
            rows,
            out / ("likelihood_convergence_smoke.png" if a.smoke else "likelihood_convergence.png"),
        )
    opts = {"solver": a.solver, "steps": a.steps, "rtol": a.tol, "atol": a.tol, "probes": a.probes}
    if "main" in parts:
        g = torch.Generator().manual_seed(0)
        train_pick = training[torch.randperm(len(training), generator=g)[: a.n_train]]
        result["main"] = {}
        for name, x in [("held_out", held_out[: a.n]), ("training", train_pick)]:
            start = time.perf_counter()
            scores = score_examples(model, x, seed=1, **common, **opts)
            result["main"][name] = bpd_stats(scores, time.perf_counter() - start)
            result["main"][name]["per_example_bits_per_dim"] = [
                round(float(v), 5) for v in scores.bits_per_dim
            ]
            print(
                f"main {name}: {result['main'][name]['bits_per_dim']:.4f} ± "
                f"{result['main'][name]['standard_error']:.4f}",
                flush=True,
            )
            save()
    if "ood" in parts:
        g = torch.Generator().manual_seed(2)
        sets = {
            "uniform_noise": torch.randint(0, 256, (a.n_ood, *shape), generator=g).float() / 255,
            "inverted_digits": 1.0 - held_out[: a.n_ood],
            "sklearn_digits_upscaled": _sklearn_upscaled(a.n_ood, shape),
        }
        result["ood"] = {}
        for name, x in sets.items():
            start = time.perf_counter()
            scores = score_examples(model, x, seed=3, **common, **opts)
            result["ood"][name] = bpd_stats(scores, time.perf_counter() - start)
            print(f"ood {name}: {result['ood'][name]['bits_per_dim']:.4f}", flush=True)
            save()
    if tmp is not None:
        tmp.cleanup()
    return result


def _split(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def _mnist(a, shape) -> torch.Tensor:
    if a.smoke and not Path(a.data).exists():
        g = torch.Generator().manual_seed(0)
        return (torch.rand(16, *shape, generator=g) * 255).round() / 255
    ds = load_mnist(a.data, "test")
    x = ds.as_float()
    if x.shape[1:] != shape:  # the smoke run is trained on smaller images
        x = F.interpolate(x[:16], size=shape[1:], mode="area")
        x = (x * 255).round() / 255
    return x


def _sklearn_upscaled(n: int, shape) -> torch.Tensor:
    """scikit-learn's 8 × 8 digits (17 levels) upscaled bilinearly to the run's size, 8-bit."""
    ds = load_digits()
    x = ds.as_float()[:n]
    x = x / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
    x = F.interpolate(x, size=shape[1:], mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 255).round() / 255


def _plot(rows: list[dict], path: Path) -> None:
    """bits/dim against NFE, all settings (left) and zoomed on the converged ones (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    heun = sorted(
        (r for r in rows if r["options"]["solver"] == "heun" and r["options"]["probes"] == 1),
        key=lambda r: r["nfe"],
    )
    top = max(r["bits_per_dim"] for r in rows)
    for ax, zoom in zip(axes, (False, True), strict=True):
        ax.plot([r["nfe"] for r in heun], [r["bits_per_dim"] for r in heun], "o-", label="Heun")
        for r in rows:
            if r not in heun:
                o = r["options"]
                label = f"RK45, tol {o['rtol']:g}" if o["solver"] == "rk45" else (
                    f"Heun, {o['probes']} probes")  # fmt: skip
                ax.plot([r["nfe"]], [r["bits_per_dim"]], "s", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("NFE per image (each with its divergence)")
        ax.set_ylabel("bits/dim")
        if zoom:
            ax.set_ylim(top - 0.2, top + 0.02)
            ax.set_title("zoom: the last 0.2 bits/dim", fontsize=9)
        else:
            ax.set_title(f"{heun[0]['n']} held-out digits; the same dequantization and probes "
                         "for all", fontsize=9)  # fmt: skip
            ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)


def _smoke_run(root: Path) -> str:
    cfg = config.load(
        REPO / "configs" / "digits.yaml",
        [
            "model.channels=8",
            "model.groups=4",
            "model.num_res_blocks=1",
            "model.attention_resolutions=[]",
            "model.embedding_dim=16",
            "train.steps=4",
            "train.batch_size=8",
            "train.preview_every=0",
            "schedule.num_levels=10",
            f"run_dir={root / 'run'}",
            "train.device=cpu",
            "train.log_every=2",
        ],
    )
    train(cfg, progress=False)
    return str(root / "run")


if __name__ == "__main__":
    main()
