"""Training recipes on the MNIST benchmark: the NCSN ladder against EDM's preconditioning and
continuous noise levels, each with its best post-hoc EMA (issue 15).

Recipes (``RECIPES``: ``--set`` overrides of configs/mnist.yaml, trained by
benchmarks/mnist.py ``--stage train``, so with its protocol: the first 8,000 of the 10,000
MNIST t10k digits train, the last 2,000 are held out, ``--minutes`` of wall time each, one
thread, two runs side by side):

- ``ncsn``: today's default, σ drawn from the L-level ladder, noise parameterization, λ = σ²;
- ``edm_lognormal``: ``model.parameterization = edm`` (σ_data measured), ln σ ~ N(P_mean, P_std²)
  with P_mean moved to the data's scale, EDM's λ;
- ``edm_loguniform``: edm, ln σ uniform on [ln σ_L, ln σ₁], EDM's λ;
- ``noise_lognormal``: the noise parameterization with λ = σ² and the log-normal σ: it
  separates the preconditioning from the σ distribution.
Every recipe also tracks power-function EMA profiles σ_rel 0.05 and 0.10 (snapshots every 100
steps) and holds out digits 8,000–8,255 (part of the held-out reference, never trained on) for
its per-σ diagnostics.

Stages:
``--stage train --recipe NAME`` trains one recipe (benchmarks/mnist.py ``--stage train`` with
the recipe's overrides; RUNS/NAME). ``--stage ema`` reconstructs, for every recipe, the
post-hoc EMA of each ``--stds`` value the snapshots can reconstruct (``ncsn ema``'s
computation), draws ``--ema-n`` samples from each and from the training's own EMA
(``train.ema``) with the Heun ODE at N = 10 (seed 1000, not a reporting seed), and keeps the
one of lowest FD against the *training* digits (the held-out digits are not used to choose);
OUT/recipes_ema.json. ``--stage sample`` draws the ``--jobs`` sets of 1,000 samples from each
recipe's chosen weights into OUT/samples/RECIPE-SAMPLER-STEPS-seedK.npz (uint8 (N, H, W, C),
key ``images``; ``info`` says how). ``--stage score`` scores every set: FD in the domain
classifier's features against the 2,000 held-out digits and the 8,000 training digits, the
held-out FD's mean and covariance terms, precision/recall (k = 3) and class coverage against
the held-out digits; plus the denoiser's error per σ of every recipe on the held-out
digits 8,000–8,255. It writes OUT/recipes.json, the table OUT/recipes.md and
OUT/recipes_fd_vs_nfe.png (a panel per recipe) and OUT/recipes_per_sigma.png.

    python benchmarks/recipes.py --stage train --recipe ncsn --minutes 25 &
    python benchmarks/recipes.py --stage train --recipe edm_lognormal --minutes 25
    python benchmarks/recipes.py --stage train --recipe edm_loguniform --steps 2637 &  # or 25 min
    python benchmarks/recipes.py --stage train --recipe noise_lognormal --steps 2708
    python benchmarks/recipes.py --stage ema
    python benchmarks/recipes.py --stage sample --recipes ncsn &    # one process per recipe
    python benchmarks/recipes.py --stage sample --recipes edm_lognormal   # (and the other two)
    python benchmarks/recipes.py --stage score

docs/benchmarks.md (issue 15) has the exact commands of the committed results.
    python benchmarks/recipes.py --smoke --out /tmp/x    # every stage at tiny size, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

import ncsn.samplers.run as samplers
from ncsn.data.images import load_mnist
from ncsn.errors import NCSNError
from ncsn.files import atomic_write_bytes
from ncsn.metrics.classifier import load_classifier
from ncsn.metrics.evaluate import HeldOutAndTraining, classifier_extractor
from ncsn.training import power_ema
from ncsn.training.state import load_run
from ncsn.viz import save_grid, to_uint8

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import mnist  # noqa: E402  (the training protocol is benchmarks/mnist.py's)

COMMON = [
    "train.ema_stds=[0.05,0.1]",
    "train.ema_snapshot_every=100",
    "data.subset=[0,8256]",
    "train.holdout=256",
]
RECIPES = {  # every choice spelled out, whatever configs/mnist.yaml's defaults are
    "ncsn": [
        "model.parameterization=noise",
        "model.sigma_data=0.5",
        "train.sigma_distribution=ladder",
    ],
    "edm_lognormal": [
        "model.parameterization=edm",
        "model.sigma_data=auto",
        "train.sigma_distribution=lognormal",
    ],
    "edm_loguniform": [
        "model.parameterization=edm",
        "model.sigma_data=auto",
        "train.sigma_distribution=loguniform",
    ],
    "noise_lognormal": [
        "model.parameterization=noise",
        "model.sigma_data=0.5",
        "train.sigma_distribution=lognormal",
    ],
}
SMOKE_COMMON = ["train.ema_snapshot_every=2", "data.subset=[0,288]", "train.holdout=32"]
DEFAULT_JOBS = "ode:18:0,1,2 ode:10:0,1,2 ode:5:0,1,2 churn:10:0,1,2 ode:100:0"
SET_NAME = re.compile(r"^([a-z_]+)-(ode|churn|ald)-(\d+)-seed(\d+)\.npz$")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stage", choices=("train", "ema", "sample", "score", "all"), default="all")
    p.add_argument("--recipe", help="--stage train: which recipe")
    p.add_argument("--recipes", default=",".join(RECIPES), help="recipes of the other stages")
    p.add_argument("--minutes", type=float, default=25.0, help="training wall time per recipe")
    p.add_argument("--steps", type=int, help="train this many steps instead (mnist.py --steps)")
    p.add_argument("--runs", default="/tmp/mnist15", help="benchmarks/mnist.py's --out (RUNS)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "mnist"))
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    p.add_argument("--classifier", help="domain classifier (default OUT/classifier.safetensors)")
    p.add_argument("--stds", default="0.02,0.03,0.05,0.07,0.1,0.15,0.2")
    p.add_argument("--ema-n", type=int, default=300, help="samples per EMA candidate")
    p.add_argument("--jobs", default=DEFAULT_JOBS, help="SAMPLER:STEPS:SEEDS items")
    p.add_argument("--n", type=int, default=1000, help="samples per set")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="bf16",
        help="sampling under bf16 autocast (the recipes train so) or in fp32",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--stage train: a further override after the recipe's (e.g. train.precision=fp32\n"
        "on a CPU without native bf16, where bf16 autocast is ~12x slower than fp32)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--force", action="store_true", help="redraw sets that exist")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.runs = args.out
        args.minutes, args.steps, args.ema_n, args.n = 0.05, 6, 16, 16
        args.stds, args.jobs = "0.05,0.1", "ode:2:0 churn:2:0 ald:1:0"
    return args


def train_recipe(args) -> None:
    """benchmarks/mnist.py --stage train with the recipe's overrides, as run ``recipe``."""
    if args.recipe not in RECIPES:
        raise SystemExit(f"--recipe: expected one of {', '.join(RECIPES)}")
    sets = (SMOKE_COMMON if args.smoke else COMMON) + RECIPES[args.recipe] + args.set
    argv = [
        "--stage",
        "train",
        "--configs",
        "default",
        "--name",
        args.recipe,
        "--minutes",
        str(args.minutes),
        "--evals",
        "2" if args.smoke else "4",
        "--threads",
        str(args.threads),
        "--out",
        args.runs,
        "--data",
        args.data,
    ]
    argv += ["--smoke"] if args.smoke else []
    argv += ["--steps", str(args.steps)] if args.steps else []
    if args.smoke:
        sets += ["train.ema_stds=[0.05,0.1]"]
    for s in sets:
        argv += ["--set", f"{args.recipe}:{s}"]
    mnist.main(argv)


def digits(args):
    ds = load_mnist(args.data, "test")
    ranges = ((0, 256), (8000, 8128)) if args.smoke else ((0, 8000), (8000, 10000))
    x = ds.as_float()
    return x[slice(*ranges[0])], x[slice(*ranges[1])]


def precision_context(args):
    if args.precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def Scorer(args, train_x, held_x) -> HeldOutAndTraining:
    """The library's two-reference scores in the domain classifier's features."""
    path = args.classifier or str(Path(args.out) / "classifier.safetensors")
    clf = load_classifier(path)
    return HeldOutAndTraining(classifier_extractor(clf, path), clf, held_x, train_x)


def draw(run_dir, sampler, steps, n, seed, args):
    model, sched, _, meta = load_run(run_dir, log=lambda m: None)
    opts = samplers.options(sampler)
    with precision_context(args):
        images, info = samplers.draw(
            model,
            sched,
            n,
            tuple(meta["data_shape"]),
            seed=seed,
            sampler=sampler,
            steps=steps,
            batch_size=250,
            opts=opts,
        )
    return images.clamp(0, 1), info | {"checkpoint_step": meta["step"], "run": str(run_dir)}


def choose_ema(args, train_x, held_x) -> dict:
    """The post-hoc EMA of each recipe with the lowest FD against the training digits."""
    score = Scorer(args, train_x, held_x)
    path = Path(args.out) / ("recipes_ema_smoke.json" if args.smoke else "recipes_ema.json")
    for recipe in args.recipes.split(","):
        run_dir = Path(args.runs) / "runs" / recipe
        candidates = {"train.ema": run_dir}
        for std in [float(s) for s in args.stds.split(",")]:
            out = run_dir / "posthoc" / f"std-{std:.3f}"
            try:
                power_ema.write(run_dir, std, out)
            except NCSNError as e:  # an std the snapshots cannot reconstruct: say so, go on
                print(f"{recipe}: σ_rel {std}: {e}", flush=True)
                continue
            candidates[f"{std:g}"] = out
        rows = {}
        for name, weights in candidates.items():
            images, info = draw(weights, "ode", 10, args.ema_n, 1000, args)
            rows[name] = score(images, full=False) | {"seconds": info["seconds"]}
            print(
                f"{recipe} EMA {name}: FD train {rows[name]['fd_train']:.2f}, held-out "
                f"{rows[name]['fd']:.2f}",
                flush=True,
            )
        best = min(rows, key=lambda k: rows[k]["fd_train"])
        choice = {"candidates": rows, "best": best, "run": str(candidates[best])}
        print(f"{recipe}: best EMA {best}", flush=True)
        # other recipes' choices are kept (read again now: another process may have added one)
        record = (json.loads(path.read_text()) if path.is_file() else {}) | {recipe: choice}
        path.parent.mkdir(parents=True, exist_ok=True)  # --out may be a new folder
        atomic_write_bytes(path, json.dumps(record, indent=1).encode())
    return record


def parse_jobs(text: str) -> list[tuple[str, int, int]]:
    jobs = []
    for item in text.split():
        sampler, steps, seeds = item.split(":")
        jobs += [(sampler, int(steps), int(seed)) for seed in seeds.split(",")]
    return jobs


def sample(args, chosen: dict) -> None:
    folder = Path(args.out) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    for sampler, steps, seed in parse_jobs(args.jobs):
        for recipe in args.recipes.split(","):
            path = folder / f"{recipe}-{sampler}-{steps}-seed{seed}.npz"
            if path.exists() and not args.force:
                continue
            images, info = draw(chosen[recipe]["run"], sampler, steps, args.n, seed, args)
            info |= {
                "benchmark": "recipes",
                "recipe": recipe,
                "ema": chosen[recipe]["best"],
                "precision": args.precision,
                "threads": args.threads,
            }
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
            np.savez_compressed(tmp, images=to_uint8(images), info=json.dumps(info))
            tmp.replace(path)
            print(f"{path.name}: NFE {info['nfe']}, {info['seconds']:.1f} s", flush=True)


def per_sigma_error(args, chosen: dict) -> dict:
    """The denoiser's mean squared error per pixel, E‖D(x + σz, σ) − x‖²/D, on the held-out
    digits 8,000–8,255 (never trained on) at 24 levels from σ₁ to σ_L: one scale for every
    parameterization and weighting."""
    x = load_mnist(args.data, "test").as_float()[8000 : 8064 if args.smoke else 8256]
    out = {}
    for recipe in args.recipes.split(","):
        model, sched, _, _ = load_run(chosen[recipe]["run"], log=lambda m: None)
        sigmas = np.geomspace(sched.sigma_max, sched.sigma_min, 24).tolist()
        gen = torch.Generator().manual_seed(5)
        z = torch.randn(x.shape, generator=gen)
        errors = []
        with torch.inference_mode(), precision_context(args):
            for s in sigmas:
                d = torch.cat(
                    [
                        model.denoise(x[i : i + 128] + s * z[i : i + 128], s).float()
                        for i in range(0, len(x), 128)
                    ]
                )
                errors.append(float((d - x).pow(2).mean()))
        out[recipe] = {"sigmas": sigmas, "mse": errors}
    return out


def score(args, chosen: dict, train_x, held_x, command: str) -> dict:
    scorer = Scorer(args, train_x, held_x)
    rows = []
    for path in sorted((Path(args.out) / "samples").glob("*.npz")):
        m = SET_NAME.match(path.name)
        if not m or m.group(1) not in args.recipes.split(","):
            continue
        with np.load(path) as f:
            images, info = f["images"], json.loads(str(f["info"]))
        if info.get("benchmark") != "recipes":
            continue
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        rows.append({"file": path.name, **info, "metrics": scorer(x)})
        r = rows[-1]["metrics"]
        print(
            f"{path.name}: NFE {info['nfe']}: FD {r['fd']:.2f} (mean {r['mean_term']:.2f}, cov "
            f"{r['cov_term']:.2f}), train {r['fd_train']:.2f}",
            flush=True,
        )
        if info["seed"] == 0:
            save_grid(x[:100], Path(args.out) / "samples" / path.name.replace(".npz", ".png"))
    pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))[: args.n]
    floor = scorer(train_x[pick])
    errors = per_sigma_error(args, chosen)
    record = {
        "benchmark": "issue 15: training recipes (MNIST, classifier features)",
        "command": command,
        "settings": vars(args),
        "ema": chosen,
        "data_floor": floor,
        "rows": rows,
        "per_sigma_mse": errors,
        "table": table(rows, floor),
    }
    name = "recipes_smoke" if args.smoke else "recipes"
    atomic_write_bytes(Path(args.out) / f"{name}.json", json.dumps(record, indent=1).encode())
    atomic_write_bytes(Path(args.out) / f"{name}.md", record["table"].encode())
    plot(rows, floor, Path(args.out) / f"{name}_fd_vs_nfe.png")
    plot_errors(errors, Path(args.out) / f"{name}_per_sigma.png")
    print(record["table"])
    return record


def groups(rows):
    out: dict = {}
    for r in rows:
        out.setdefault((r["recipe"], r["sampler"], r["steps"]), []).append(r)
    return sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[1][0]["nfe"]))


def table(rows, floor) -> str:
    lines = [
        "| recipe (EMA) | sampler | N | NFE | seeds | FD held-out median (min–max) | mean "
        "term | cov term | FD train | precision | recall | coverage |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (recipe, sampler, steps), rs in groups(rows):

        def med(key, rs=rs):
            return statistics.median(r["metrics"][key] for r in rs)

        fd = [r["metrics"]["fd"] for r in rs]
        lines.append(
            f"| {recipe} ({rs[0]['ema']}) | {sampler} | {steps} | {rs[0]['nfe']} | {len(rs)} | "
            f"{med('fd'):.1f} ({min(fd):.1f}–{max(fd):.1f}) | {med('mean_term'):.1f} | "
            f"{med('cov_term'):.1f} | {med('fd_train'):.1f} | {med('precision'):.3f} | "
            f"{med('recall'):.3f} | {med('class_coverage'):.2f} |"
        )
    lines.append(
        f"| real training digits (floor) | – | – | – | – | {floor['fd']:.1f} | "
        f"{floor['mean_term']:.1f} | {floor['cov_term']:.1f} | {floor['fd_train']:.1f} | "
        f"{floor['precision']:.3f} | {floor['recall']:.3f} | "
        f"{floor['class_coverage']:.2f} |"
    )
    return "\n".join(lines) + "\n"


def plot(rows, floor, path: Path) -> None:
    recipes = sorted({r["recipe"] for r in rows})
    if not recipes:
        return
    fig = Figure(figsize=(4 * len(recipes), 3.6))
    axes = fig.subplots(1, len(recipes), sharey=True, squeeze=False)[0]
    for ax, recipe in zip(axes, recipes, strict=True):
        for (rec, sampler, _), rs in groups(rows):
            if rec != recipe:
                continue
            nfe = rs[0]["nfe"]
            for key, marker in (("fd", "o"), ("fd_train", "s")):
                value = statistics.median(r["metrics"][key] for r in rs)
                ax.scatter(
                    nfe,
                    value,
                    marker=marker,
                    c="C0" if sampler == "ode" else "C1" if sampler == "churn" else "C2",
                )
        for key, style in (("fd", "-"), ("fd_train", "--")):
            pts = sorted(
                (rs[0]["nfe"], statistics.median(r["metrics"][key] for r in rs))
                for (rec, s, _), rs in groups(rows)
                if rec == recipe and s == "ode"
            )
            if pts:
                ax.plot(
                    *zip(*pts, strict=True),
                    style,
                    c="C0",
                    label=f"Heun ODE, FD {'held-out' if key == 'fd' else 'train'}",
                )
        ax.axhline(floor["fd"], ls=":", c="gray", label="real digits (held-out)")
        ax.set(xscale="log", yscale="log", xlabel="NFE", title=recipe)
    axes[0].set_ylabel("domain FD (o held-out, □ train)")
    fig.suptitle("blue: Heun ODE; orange: churn; green: ALD", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_errors(errors: dict, path: Path) -> None:
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    for recipe, e in errors.items():
        ax.plot(e["sigmas"], e["mse"], "o-", ms=3, label=recipe)
    ax.set(xscale="log", yscale="log", xlabel="σ", ylabel="held-out E‖D − x‖² per pixel")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = shlex.join([sys.executable, str(Path(__file__)), *argv])
    if args.stage == "train" or (args.smoke and args.stage == "all"):
        names = [args.recipe] if args.stage == "train" else args.recipes.split(",")
        for name in names:
            args.recipe = name
            train_recipe(args)
        if args.stage == "train":
            return None
    train_x, held_x = digits(args)
    if (
        args.smoke
        and not Path(args.classifier or Path(args.out) / "classifier.safetensors").exists()
    ):
        mnist.main(
            [
                "--smoke",
                "--stage",
                "score",
                "--sets",
                str(Path(args.out) / "none"),
                "--out",
                args.out,
                "--data",
                args.data,
            ]
        )  # trains its classifier
    ema_file = Path(args.out) / ("recipes_ema_smoke.json" if args.smoke else "recipes_ema.json")
    if args.stage in ("ema", "all"):
        chosen = choose_ema(args, train_x, held_x)
    else:
        chosen = json.loads(ema_file.read_text())
    if args.stage in ("sample", "all"):
        sample(args, chosen)
    if args.stage in ("score", "all"):
        return score(args, chosen, train_x, held_x, command)
    return None


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"{time.perf_counter() - start:.0f} s", flush=True)
