"""MNIST sample-quality benchmark: the NCSN paper's setting against our default, per wall-clock.

Data: the 10,000 MNIST test digits (``t10k`` files of ``--data``): the first 8,000 train the
score models (and the domain classifier), the last 2,000 are held out as the reference. Each
configuration (``paper`` = configs/mnist_paper.yaml, the RefineNet; ``default`` =
configs/mnist.yaml, our U-Net) trains for ``--minutes`` of wall time, run by
``ncsn.training.loop.train``
in chunks that resume from the previous chunk's checkpoint; after each of ``--evals`` equal
shares of the budget, ``--n-along`` samples are drawn (annealed Langevin, ``--eval-steps``
steps per level) and scored with :func:`ncsn.metrics.evaluate.evaluate` in the features of a
domain classifier trained once (cached in the results folder). The last checkpoint is then
scored at each T of ``--nfe-steps`` (``--n-along`` samples: metrics against NFE) and with
``--n`` samples at ``--eval-steps`` (the headline numbers). The data floor is the same scoring
of as many real training digits (a seeded random subset). Everything goes to ``--out``:
results.json (with the exact command), log.txt, plots and sample grids.

Stages, so that sampling can run where the compute is (docs/benchmarks.md has the commands):
``--stage train`` only trains (checkpoints kept at each of the ``--evals`` points, steps and
seconds in OUT/runs/NAME/train.json; ``--name`` and ``--set NAME:key=value`` make variants);
benchmarks/sample_sets.py draws sample sets from (slim copies of) those runs on any device;
``--stage score --sets FOLDER`` scores every set into OUT/sets.json, sets.md and fd_vs_nfe.png.

    python benchmarks/mnist.py --minutes 5             # two configurations, 5 min each
    python benchmarks/mnist.py --smoke                 # everything at tiny size, seconds
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from ncsn import config, schedule
from ncsn.data.images import load_mnist
from ncsn.files import atomic_write_bytes
from ncsn.metrics.classifier import load_classifier, save_classifier, train_classifier
from ncsn.metrics.evaluate import classifier_extractor, evaluate
from ncsn.samplers import run as samplers
from ncsn.training.loop import train
from ncsn.training.state import load_run
from ncsn.viz import quantize, save_grid

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "paper": REPO / "configs" / "mnist_paper.yaml",
    "default": REPO / "configs" / "mnist.yaml",
}
SMOKE_SETS = {
    "paper": ["model.ngf=4", "train.batch_size=16"],
    "default": [
        "model.channels=8",
        "model.groups=4",
        "model.num_res_blocks=1",
        "model.attention_resolutions=[]",
        "model.embedding_dim=16",
        "train.batch_size=16",
        "schedule.num_levels=10",
    ],
}
_MEMO_KEYS = ("quantile", "threshold", "fraction_flagged", "num_flagged", "median_distance")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="training wall time per config")
    p.add_argument(
        "--steps",
        type=int,
        help="train exactly this many steps (in --evals equal parts) instead of for --minutes: "
        "equal training compute whatever else shares the machine",
    )
    p.add_argument("--configs", default="paper,default", help="which: paper, default or both")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "mnist"))
    p.add_argument("--evals", type=int, default=3, help="evaluations along each run")
    p.add_argument("--n", type=int, default=1000, help="samples of the final evaluation")
    p.add_argument(
        "--n-along", type=int, default=100, help="samples per evaluation en route and per T"
    )
    p.add_argument("--eval-steps", type=int, default=1, help="T for the evaluations en route")
    p.add_argument("--nfe-steps", default="1,2,5", help="T values of the final NFE sweep")
    p.add_argument(
        "--eps",
        choices=["auto", "config"],
        default="auto",
        help="ε when sampling: auto = NCSNv2 technique 4 for each T; config = the run's ε",
    )
    p.add_argument(
        "--weights",
        choices=["ema", "raw"],
        default="ema",
        help="weights to sample from: ema (what `ncsn sample` uses) or the raw weights; with an "
        "EMA decay of 0.999 the EMA lags the raw weights for the first few thousand steps",
    )
    p.add_argument("--classifier-steps", type=int, default=1500)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="override a value of one configuration, e.g. paper:model.ngf=32",
    )
    p.add_argument("--device", default="cpu", help="training and sampling device (cpu)")
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: all cores; 1 with --smoke). On a machine shared with "
        "other jobs use 1: contended thread pools slow torch down many times over",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument(
        "--stage",
        choices=["all", "train", "score"],
        default="all",
        help="all: train, sample and score here; train: only train (checkpoints at each of the "
        "--evals points, kept in OUT/runs/NAME, with OUT/runs/NAME/train.json) so that another "
        "process or machine samples them (benchmarks/sample_sets.py); score: score the sample "
        "sets of --sets into OUT/sets.json, OUT/sets.md and OUT/fd_vs_nfe.png",
    )
    p.add_argument("--sets", help="with --stage score: folder of NAME.npz from sample_sets.py")
    p.add_argument(
        "--name", help="run name, with one configuration in --configs (default: its name)"
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the pipeline")
    args = p.parse_args(argv)
    if args.smoke:
        args.minutes, args.evals, args.n, args.n_along = 0.04, 2, 32, 32
        args.nfe_steps, args.classifier_steps = "1,2", 40
    if args.threads is None:
        args.threads = 1 if args.smoke else os.cpu_count()
    return args


class Benchmark:
    """Holds the data, the classifier and the results file; one method per stage."""

    def __init__(self, args: argparse.Namespace, argv: list[str]):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.out / "log.txt", "a")
        self.cache: dict[tuple, dict] = {}
        train_range, held_range = (
            ([0, 256], [8000, 8128]) if args.smoke else ([0, 8000], [8000, 10000])
        )
        ds = load_mnist(args.data, "test")
        self.train_range, self.held_range = train_range, held_range
        self.train_x = ds.as_float()[slice(*train_range)]
        self.train_y = ds.labels[slice(*train_range)]
        self.held_x = ds.as_float()[slice(*held_range)]
        self.held_y = ds.labels[slice(*held_range)]
        command = shlex.join([sys.executable, str(Path(__file__)), *argv])
        self.results: dict = {
            "benchmark": "mnist sample quality (issue 4)",
            "command": command,
            "cwd": os.getcwd(),
            "settings": vars(args),
            "started": _now(),
            "machine": {
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            },
            "data": {"root": args.data, "train": train_range, "held_out": held_range},
            "runs": {},
        }
        self.log(f"command: {command}")

    def log(self, message: str) -> None:
        line = f"[{datetime.datetime.now():%H:%M:%S}] {message}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def save(self) -> None:
        text = json.dumps(self.results, indent=1, default=str)
        atomic_write_bytes(self.out / "results.json", text.encode())

    def classifier(self) -> None:
        """Train the domain classifier once (cached in the results folder); build the extractor."""
        path = self.out / "classifier.safetensors"
        key = {"train": self.train_range, "steps": self.args.classifier_steps, "seed": 0}
        model = load_classifier(path) if path.is_file() else None
        if model is None or model.info.get("benchmark") != key:
            self.log(f"training the domain classifier ({self.args.classifier_steps} steps)")
            model = train_classifier(
                self.train_x,
                self.train_y,
                steps=self.args.classifier_steps,
                batch_size=64 if self.args.smoke else 128,
                seed=0,
                num_classes=10,
                eval_images=self.held_x,
                eval_labels=self.held_y,
            )
            model.info["benchmark"] = key
            save_classifier(model, path)
        self.log(f"classifier: held-out accuracy {model.info['eval_accuracy']:.4f} ({path})")
        self.clf, self.extractor = model, classifier_extractor(model, str(path))
        self.results["classifier"] = {"path": str(path), **model.info}

    def score(self, images: torch.Tensor) -> dict:
        """Every metric of ``images`` against the held-out digits (memorization: vs training)."""
        result = evaluate(
            images,
            self.held_x,
            extractor=self.extractor,
            classifier=self.clf,
            train_images=self.train_x,
            kid_subsets=10 if self.args.smoke else 100,
            seed=self.args.seed,
        )
        result["memorization"] = {k: result["memorization"][k] for k in _MEMO_KEYS}
        return result

    def data_floor(self) -> None:
        """Real training digits scored like samples: what a perfect model of the training
        distribution would score at each n. The digits are a seeded random subset of the
        training range, not its first n: the MNIST test set's first 5,000 digits (NIST SD-3,
        census employees) are cleaner than its last 5,000 (SD-1, students), so the first n alone
        would be farther from the held-out last 2,000 than the training distribution is. The
        FD of two more random subsets gives the floor's own spread (``fd_seeds``)."""
        floor = {}
        for n in sorted({self.args.n, self.args.n_along}):
            fds = []
            for seed in range(3):
                gen = torch.Generator().manual_seed(seed)
                pick = torch.randperm(len(self.train_x), generator=gen)[:n]
                result = self.score(self.train_x[pick])
                floor.setdefault(str(n), result)
                fds.append(result["fd"])
            floor[str(n)]["fd_seeds"] = fds
            self.log(f"data floor, {n} random real training digits: FD {fds[0]:.4g} (seeds: {fds})")
        self.results["data_floor"] = floor
        self.save()

    def run(self, config_name: str, name: str) -> None:
        """Train configuration ``config_name`` for the time budget as run ``name``, evaluating
        along the way (with ``--stage train``: keeping a checkpoint at each point instead)."""
        args = self.args
        train_only = args.stage == "train"
        run_dir = self.out / "runs" / name
        shutil.rmtree(run_dir, ignore_errors=True)
        overrides = [
            f"data.root={args.data}",
            "data.split=test",
            f"data.subset={list(self.train_range)}",
            f"run_dir={run_dir}",
            "train.preview_every=0",
            "train.checkpoint_every=1000000",
            f"train.keep_last={args.evals + 1 if train_only else 1}",
            f"train.device={args.device}",
        ]
        overrides += SMOKE_SETS[config_name] if args.smoke else []
        overrides += [
            s.split(":", 1)[1] for s in args.set if s.split(":", 1)[0] in (name, config_name)
        ]
        cfg = config.load(CONFIGS[config_name], overrides)
        record = {
            "config": str(CONFIGS[config_name]),
            "overrides": overrides,
            "along": [],
            "nfe": [],
        }
        self.results["runs"][name] = record
        budget = 60.0 * args.minutes
        step, spent, rate = 0, 0.0, None
        for k in range(1, args.evals + 1):
            target = budget * k / args.evals
            fixed = args.steps is not None
            while rate is None or fixed or (target - spent) > 0.05 * budget / args.evals:
                n = 2 if rate is None else int((target - spent) * rate)
                if fixed:  # a step budget: each part ends at k/evals of it
                    n = args.steps * k // args.evals - step
                if n < 1:
                    break
                cfg.train.steps = step + n
                start = time.perf_counter()
                summary = train(cfg, progress=False, log=lambda m: self.log_file.write(m + "\n"))
                spent += time.perf_counter() - start
                rate, step = n / (time.perf_counter() - start), step + n
                if fixed:
                    break
            record["parameters"] = summary["parameters"]
            if record["along"] and record["along"][-1]["step"] == step:
                continue  # the budget share was used up before another step: nothing new
            self.log(f"{name}: step {step} after {spent:.0f} s of training ({rate:.3g} steps/s)")
            point = {"step": step, "train_seconds": round(spent, 1), "loss": _last_loss(run_dir)}
            if train_only:
                record["along"].append(point)
                text = json.dumps(record | {"command": self.results["command"]}, indent=1)
                atomic_write_bytes(run_dir / "train.json", text.encode())
                continue
            point |= self.sample_and_score(name, run_dir, args.eval_steps, args.n_along)
            record["along"].append(point)
            self.save()
        if train_only:
            return
        for steps in [int(t) for t in args.nfe_steps.split(",")]:
            record["nfe"].append(self.sample_and_score(name, run_dir, steps, args.n_along))
            self.save()
        record["final"] = self.sample_and_score(name, run_dir, args.eval_steps, args.n)
        self.save()

    def sample_and_score(self, name: str, run_dir: Path, steps: int, n: int) -> dict:
        """Draw ``n`` samples from the run's last checkpoint with T = ``steps``; score them.

        Results are cached by (run, checkpoint step, T, n): the NFE sweep reuses the last
        evaluation en route when they coincide.
        """
        ema = self.args.weights == "ema"
        model, sched, cfg, meta = load_run(run_dir, ema=ema, device=self.args.device, log=self.log)
        key = (name, meta["step"], steps, n)
        if key in self.cache:
            return self.cache[key]
        eps = sched.step_size
        if self.args.eps == "auto" and sched.num_levels > 1:
            eps = schedule.step_size_for(sched.gamma, sched.sigma_min, steps)
        opts = samplers.ALD(eps=eps, init=cfg.sample.init, denoise_final=cfg.sample.denoise_final)
        images, info = samplers.draw(
            model, sched, n, tuple(meta["data_shape"]), seed=self.args.seed, steps=steps,
            opts=opts,
        )  # fmt: skip
        images = quantize(images)
        (self.out / "samples").mkdir(exist_ok=True)
        save_grid(images[:100], self.out / "samples" / f"{name}-step{meta['step']}-T{steps}.png")
        metrics = self.score(images)
        self.log(
            f"{name} step {meta['step']}: T = {steps}, NFE {info['nfe']}, {n} samples in "
            f"{info['seconds']:.0f} s: FD {metrics['fd']:.4g}, precision {metrics['precision']:.3f}"
            f", recall {metrics['recall']:.3f}, coverage {metrics['class_coverage']:.2f}"
        )
        self.cache[key] = {"sampling": info, "metrics": metrics}
        return self.cache[key]


def score_sets(bench: Benchmark, folder: Path) -> None:
    """Score every set of every NAME.npz in ``folder`` (from sample_sets.py); write sets.json,
    a table per group (median over seeds, with min–max) in sets.md, and fd_vs_nfe.png."""
    import numpy as np

    out = bench.out
    rows = []
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as f:
            images, info = f["images"], json.loads(str(f["jobs"]))
        for job, batch in zip(info["jobs"], images, strict=True):
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0
            metrics = bench.score(x)
            rows.append({"group": path.stem, "device": info["device"], **job, "metrics": metrics})
            bench.log(
                f"{path.stem}: {job['description']} seed {job['seed']}: NFE {job['nfe']}, "
                f"FD {metrics['fd']:.4g}, coverage {metrics['class_coverage']:.2f}"
            )
            if job["seed"] == 0:
                (out / "samples").mkdir(exist_ok=True)
                save_grid(x[:100], out / "samples" / f"{path.stem}-T{job['steps']}.png")
    floor = bench.results["data_floor"]
    record = {
        "command": bench.results["command"],
        "classifier": bench.results["classifier"],
        "data_floor": floor,
        "sets": rows,
    }
    atomic_write_bytes(out / "sets.json", json.dumps(record, indent=1, default=str).encode())
    table = _sets_table(rows, floor)
    atomic_write_bytes(out / "sets.md", table.encode())
    bench.log("\n" + table)
    _plot_sets(rows, floor, out / "fd_vs_nfe.png")


def _by_setting(rows: list[dict]) -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["group"], r["steps"]), []).append(r)
    return groups


def _sets_table(rows: list[dict], floor: dict) -> str:
    import statistics

    lines = [
        "| group | sampler | steps | NFE | seeds | FD median (min–max) | KID | precision "
        "| recall | coverage | s/set |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (group, steps), rs in _by_setting(rows).items():
        fd = [r["metrics"]["fd"] for r in rs]

        def med(key, rs=rs):
            return statistics.median(r["metrics"][key] for r in rs)

        lines.append(
            f"| {group} | {rs[0]['sampler']} | {steps} | {rs[0]['nfe']} | {len(rs)} | "
            f"{statistics.median(fd):.2f} ({min(fd):.2f}–{max(fd):.2f}) | "
            f"{med('kid_mean'):.3g} | {med('precision'):.3f} | {med('recall'):.3f} | "
            f"{med('class_coverage'):.2f} | {statistics.median(r['seconds'] for r in rs):.1f} |"
        )
    for n, f in floor.items():
        lines.append(
            f"| real digits (floor) | – | – | – | – | {f['fd']:.2f} ({n} digits) | "
            f"{f['kid_mean']:.3g} | {f['precision']:.3f} | {f['recall']:.3f} | "
            f"{f['class_coverage']:.2f} | – |"
        )
    return "\n".join(lines) + "\n"


def _plot_sets(rows: list[dict], floor: dict, path: Path) -> None:
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    series: dict = {}
    for (group, _), rs in _by_setting(rows).items():
        fd = [r["metrics"]["fd"] for r in rs]
        series.setdefault(group, []).append((rs[0]["nfe"], statistics.median(fd), min(fd), max(fd)))
    for group, pts in series.items():
        pts.sort()
        nfe, med, lo, hi = zip(*pts, strict=True)
        err = [
            [m - a for m, a in zip(med, lo, strict=True)],
            [b - m for m, b in zip(med, hi, strict=True)],
        ]
        ax.errorbar(nfe, med, yerr=err, fmt="o-", capsize=3, label=group)
    n = max(floor, key=int)
    ax.axhline(floor[n]["fd"], ls="--", c="gray", label=f"real digits ({n})")
    ax.axhline(2 * floor[n]["fd"], ls=":", c="gray", label="2 × floor")
    ax.set(xscale="log", yscale="log", xlabel="NFE per sample", ylabel="domain FD")
    ax.set_title("FD vs NFE (median and min–max over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _last_loss(run_dir: Path) -> float | None:
    lines = (run_dir / "metrics.csv").read_text().strip().splitlines()
    return float(lines[-1].split(",")[1]) if len(lines) > 1 else None


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def plot(results: dict, out: Path) -> None:
    """metrics_vs_time.png and metrics_vs_nfe.png, with the data floor as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = results.get("data_floor", {})
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for name, run in results["runs"].items():
        minutes = [p["train_seconds"] / 60 for p in run["along"]]
        for ax, key in zip(axes, ("fd", "precision", "recall"), strict=True):
            ax.plot(minutes, [p["metrics"][key] for p in run["along"]], "o-", label=name)
    n_along = str(results["settings"]["n_along"])
    for ax, key in zip(axes, ("fd", "precision", "recall"), strict=True):
        if n_along in floor:
            ax.axhline(floor[n_along][key], ls="--", c="gray", label="real digits")
        ax.set_xlabel("training wall time (min)")
        ax.set_title(f"{key} ({n_along} samples vs held-out)")
    axes[0].set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "metrics_vs_time.png", dpi=100)
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, run in results["runs"].items():
        nfe = [p["sampling"]["nfe"] for p in run["nfe"]]
        ax.plot(nfe, [p["metrics"]["fd"] for p in run["nfe"]], "o-", label=name)
    n = str(results["settings"]["n_along"])
    if n in floor:
        ax.axhline(floor[n]["fd"], ls="--", c="gray", label="real digits")
    ax.set(xscale="log", yscale="log", xlabel="NFE per sample", title=f"FD ({n} samples)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "metrics_vs_nfe.png", dpi=100)
    plt.close("all")


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    bench = Benchmark(args, argv)
    names = args.configs.split(",")
    for name in names:
        if name not in CONFIGS:
            raise SystemExit(f"--configs: unknown configuration {name!r} (paper, default)")
    if args.name and len(names) != 1:
        raise SystemExit("--name needs exactly one configuration in --configs")
    if args.stage == "train":
        for name in names:
            bench.run(name, args.name or name)
        bench.log_file.close()
        return bench.results
    bench.classifier()
    bench.data_floor()
    if args.stage == "score":
        if not args.sets:
            raise SystemExit("--stage score needs --sets FOLDER")
        score_sets(bench, Path(args.sets))
        bench.log_file.close()
        return bench.results
    for name in names:
        bench.run(name, args.name or name)
    plot(bench.results, bench.out)
    bench.results["finished"] = _now()
    bench.results["seconds"] = round(time.perf_counter() - start, 1)
    bench.save()
    bench.log(f"done in {bench.results['seconds']:.0f} s; results in {bench.out / 'results.json'}")
    bench.log_file.close()
    return bench.results


if __name__ == "__main__":
    main()
