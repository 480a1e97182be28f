"""Issue 14: where the probability-flow ODE starts, measured on the MNIST benchmark model.

The converged Heun ODE (``--steps`` N = 50, 99 NFE) of a trained run, from two starts that differ
only by the mean: ``zero`` = N(0, σ₁² I) (runs trained before issue 14) and ``mean`` =
N(μ, σ₁² I), μ the mean of the training digits (the first 8,000 MNIST t10k digits, as
benchmarks/mnist.py trains on them; computed here with ``ncsn.schedule.data_mean``, as training
now records it). Same seeds, so the two starts share their z. Each set is scored like
``benchmarks/mnist.py --stage score``: FD in the domain classifier's features against the 2,000
held-out digits and against the 8,000 training digits, precision, recall (k = 3) and class
coverage; plus the same scores of 1,000 random real training digits (the data floor).

    python benchmarks/ode_start.py --stage sample --jobs mean:0,zero:0 ...   # one process
    python benchmarks/ode_start.py --stage score                             # the table
    python benchmarks/ode_start.py --smoke --out /tmp/x                      # seconds

``--stage sample`` writes OUT/samples/ode_start-START-seedK.npz (uint8 (N, H, W, C), key
``images``); ``--stage score`` scores every set there into OUT/ode_start.json and prints the
table (median over seeds, min–max).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ncsn.config as config
import ncsn.samplers.run as samplers
import ncsn.schedule as schedule
from ncsn.data.images import load_mnist
from ncsn.files import atomic_write_bytes
from ncsn.metrics.classifier import load_classifier
from ncsn.metrics.evaluate import classifier_extractor, evaluate
from ncsn.metrics.fid import feature_stats, frechet_distance
from ncsn.training.loop import train
from ncsn.training.state import load_run
from ncsn.viz import to_uint8

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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", default="/tmp/mnist14/runs/default", help="trained run directory")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--classifier", default=str(RESULTS / "classifier.safetensors"))
    p.add_argument("--stage", choices=["all", "sample", "score"], default="all")
    p.add_argument(
        "--jobs",
        default="mean:0,zero:0,mean:1,zero:1,mean:2,zero:2",
        help="START:SEED sets to draw (START: mean or zero)",
    )
    p.add_argument("--n", type=int, default=1000, help="samples per set")
    p.add_argument("--steps", type=int, default=50, help="Heun steps N (2N − 1 NFE)")
    p.add_argument("--smoke", action="store_true", help="a tiny run trained here, tiny sets")
    args = p.parse_args(argv)
    if args.smoke:
        args.n, args.steps, args.jobs = 16, 3, "mean:0,zero:0"
    return args


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


def sample(args, out: Path, run_dir: Path, train_x: torch.Tensor) -> None:
    """Draw each START:SEED set of ``--jobs`` into OUT/samples/ode_start-START-seedK.npz."""
    model, sched, _, meta = load_run(run_dir, log=lambda m: None)
    mean = schedule.data_mean(train_x)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    for job in args.jobs.split(","):
        start, seed = job.split(":")
        sched.data_mean = mean if start == "mean" else None
        images, info = samplers.draw(
            model, sched, args.n, tuple(meta["data_shape"]), seed=int(seed), sampler="ode",
            steps=args.steps, batch_size=250,
        )  # fmt: skip
        info |= {"start": start, "run": str(run_dir), "step": meta["step"]}
        path = out / "samples" / f"ode_start-{start}-seed{seed}.npz"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        np.savez_compressed(tmp, images=to_uint8(images), info=json.dumps(info))
        tmp.replace(path)
        print(f"{path.name}: {info['description']}, {info['seconds']:.0f} s", flush=True)


def score(args, out: Path, train_x: torch.Tensor, held_x: torch.Tensor, command: str) -> dict:
    """Score every set in OUT/samples and the data floor; write OUT/ode_start.json."""
    clf = load_classifier(args.classifier)
    extractor = classifier_extractor(clf, args.classifier)
    train_stats = feature_stats(extractor(train_x))

    def metrics(x: torch.Tensor) -> dict:
        r = evaluate(x, held_x, extractor=extractor, classifier=clf, seed=0)
        mu, sigma = feature_stats(extractor(x))
        keys = ("fd", "precision", "recall", "class_coverage", "kid_mean")
        return {k: r[k] for k in keys} | {"fd_train": frechet_distance(mu, sigma, *train_stats)}

    rows = []
    for path in sorted((out / "samples").glob("ode_start-*.npz")):
        with np.load(path) as f:
            images, info = f["images"], json.loads(str(f["info"]))
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        rows.append({"file": path.name, **info, "metrics": metrics(x)})
        print(f"{path.name}: {rows[-1]['metrics']}", flush=True)
    pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))[: args.n]
    record = {
        "benchmark": "issue 14: where the probability-flow ODE starts",
        "command": command,
        "settings": vars(args),
        "classifier": args.classifier,
        "data_floor": {"n": args.n, "metrics": metrics(train_x[pick])},
        "sets": rows,
        "table": table(rows),
    }
    atomic_write_bytes(out / "ode_start.json", json.dumps(record, indent=1).encode())
    print(record["table"])
    return record


def table(rows: list[dict]) -> str:
    lines = [
        "| start | seeds | NFE | FD held-out median (min–max) | FD train | precision | recall "
        "| coverage |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for start in ("zero", "mean"):
        rs = [r for r in rows if r["start"] == start]
        if not rs:
            continue

        def med(key, rs=rs):
            return statistics.median(r["metrics"][key] for r in rs)

        fd = [r["metrics"]["fd"] for r in rs]
        lines.append(
            f"| {start} | {len(rs)} | {rs[0]['nfe']} | {med('fd'):.2f} ({min(fd):.2f}–"
            f"{max(fd):.2f}) | {med('fd_train'):.2f} | {med('precision'):.3f} | "
            f"{med('recall'):.3f} | {med('class_coverage'):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    command = shlex.join(
        [sys.executable, str(Path(__file__)), *(sys.argv[1:] if argv is None else argv)]
    )
    out = Path(args.out)
    train_x, held_x = digits(args)
    start = time.perf_counter()
    if args.stage in ("all", "sample"):
        run_dir = smoke_run(args, out) if args.smoke else Path(args.run)
        sample(args, out, run_dir, train_x)
    if args.stage in ("all", "score"):
        record = score(args, out, train_x, held_x, command)
        print(f"{time.perf_counter() - start:.0f} s")
        return record
    return None


if __name__ == "__main__":
    main()
