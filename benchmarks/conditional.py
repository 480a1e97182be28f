"""Issue 18: class-conditional MNIST and classifier-free guidance, against the unconditional
model at the same training budget.

The conditional run (``--cond-run``: configs/mnist.yaml with ``model.num_classes=10``,
``train.label_dropout=0.1``) and the unconditional one (``--uncond-run``, the MNIST benchmark's
default) trained on the first 8,000 MNIST t10k digits for the same number of steps. Each guidance
weight w of ``--weights`` draws ``--n`` samples, the ten classes in turn, with one sampler
(``--sampler``/``--steps``, churn N = 10 by default: the best ≤ 50-NFE sampler of the MNIST
benchmark); the unconditional run draws as many with the same sampler. Every set is scored with the
domain classifier (benchmarks/results/mnist/classifier.safetensors, held-out accuracy 98.45 %):
agreement of its prediction with the requested class, FD in its features against the 2,000
held-out digits (overall, and per class against that class's held-out digits, averaged), FD
against the 8,000 training digits, precision, recall (k = 3) and class coverage.

    python benchmarks/conditional.py --cond-run R1 --uncond-run R2 --stage sample
    python benchmarks/conditional.py --stage score
    python benchmarks/conditional.py --smoke --out /tmp/x      # tiny runs trained here, seconds

``--stage sample`` writes OUT/samples/cond-w{W}-SAMPLER-STEPS-seed{K}.npz and
uncond-SAMPLER-STEPS-seed{K}.npz (uint8 ``images`` (N, H, W, C), int64 ``labels``, ``info``);
``--stage score`` writes OUT/conditional.json, conditional.png and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ncsn.config as config
import ncsn.samplers.run as samplers
from ncsn.data.images import load_mnist
from ncsn.files import atomic_write_bytes
from ncsn.metrics.classifier import load_classifier, predict_proba
from ncsn.metrics.evaluate import classifier_extractor, evaluate
from ncsn.metrics.fid import feature_stats, frechet_distance
from ncsn.training.loop import train
from ncsn.training.state import load_run
from ncsn.viz import save_grid, to_uint8

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "mnist"
TINY = ["model.channels=8", "model.groups=4", "model.num_res_blocks=1",
        "model.attention_resolutions=[]", "model.embedding_dim=16", "train.batch_size=16",
        "train.steps=3", "train.preview_every=0", "schedule.num_levels=10"]  # fmt: skip


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cond-run", default="/tmp/cond18/runs/cond")
    p.add_argument("--uncond-run", default="/tmp/mnist14/runs/default")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--classifier", default=str(RESULTS / "classifier.safetensors"))
    p.add_argument("--stage", choices=["all", "sample", "score"], default="all")
    p.add_argument("--weights", default="0,1,1.5,2,3,4", help="guidance weights w")
    p.add_argument("--seeds", default="0", help="sampling seeds")
    p.add_argument("--sampler", default="churn")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--n", type=int, default=1000, help="samples per set (classes in turn)")
    p.add_argument("--no-uncond", dest="uncond", action="store_false",
                   help="do not draw the unconditional run's sets")  # fmt: skip
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:
        a.n, a.steps, a.weights = 20, 3, "0,1,2"
    return a


def digits(a):
    ds = load_mnist(a.data, "test")
    x, y = ds.as_float(), ds.labels
    cut = (256, 8000, 8128) if a.smoke else (8000, 8000, 10000)
    return x[: cut[0]], x[cut[1] : cut[2]], y[cut[1] : cut[2]]


def smoke_runs(a, out: Path) -> tuple[Path, Path]:
    runs = []
    for name, extra in [("cond", ["model.num_classes=10", "train.label_dropout=0.2"]),
                        ("uncond", [])]:  # fmt: skip
        run_dir = out / "runs" / f"smoke-{name}"
        sets = [f"data.root={a.data}", "data.split=test", "data.subset=[0, 256]", *TINY, *extra]
        train(config.load(REPO / "configs" / "mnist.yaml", [*sets, f"run_dir={run_dir}"]),
              progress=False, log=lambda m: None)  # fmt: skip
        runs.append(run_dir)
    return runs[0], runs[1]


def sample(a, out: Path, cond_run: Path, uncond_run: Path) -> None:
    (out / "samples").mkdir(parents=True, exist_ok=True)
    weights = [float(w) for w in a.weights.split(",") if w]  # "" : only the unconditional run
    jobs = [(cond_run, w, int(s)) for w in weights for s in a.seeds.split(",")]
    jobs += [(uncond_run, None, int(s)) for s in a.seeds.split(",") if a.uncond]
    for run_dir, w, seed in jobs:
        model, sched, _, meta = load_run(run_dir, log=lambda m: None)
        labels = torch.arange(a.n) % 10 if w is not None else None
        images, info = samplers.draw(
            model, sched, a.n, tuple(meta["data_shape"]), seed=seed, sampler=a.sampler,
            steps=a.steps, batch_size=250, labels=labels, guidance=w,
        )  # fmt: skip
        info |= {"run": str(run_dir), "step": meta["step"], "guidance": w}
        name = f"cond-w{w:g}" if w is not None else "uncond"
        path = out / "samples" / f"{name}-{a.sampler}-{a.steps}-seed{seed}.npz"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        np.savez_compressed(tmp, images=to_uint8(images), info=json.dumps(info),
                            labels=(labels if labels is not None else torch.full((a.n,), -1)
                                    ).numpy())  # fmt: skip
        tmp.replace(path)
        print(f"{path.name}: {info['description']}, NFE {info['nfe']}, {info['seconds']:.0f} s",
              flush=True)  # fmt: skip


def score(a, out: Path, command: str) -> dict:
    train_x, held_x, held_y = digits(a)
    clf = load_classifier(a.classifier)
    extractor = classifier_extractor(clf, a.classifier)
    train_stats = feature_stats(extractor(train_x))
    class_stats = [feature_stats(extractor(held_x[held_y == k])) for k in range(10)]
    rows = []
    for path in sorted((out / "samples").glob(f"*cond*-{a.sampler}-{a.steps}-seed*.npz")):
        with np.load(path) as f:
            images, labels, info = f["images"], f["labels"], json.loads(str(f["info"]))
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        r = evaluate(x, held_x, extractor=extractor, classifier=clf, seed=0)
        feats = extractor(x)
        metrics = {k: r[k] for k in ("fd", "precision", "recall", "class_coverage")}
        metrics["fd_train"] = frechet_distance(*feature_stats(feats), *train_stats)
        if labels[0] >= 0:
            y = torch.from_numpy(labels)
            predicted = predict_proba(clf, x).argmax(1)
            metrics["agreement"] = float((predicted == y).float().mean())
            metrics["fd_per_class_mean"] = float(np.mean([
                frechet_distance(*feature_stats(feats[y == k]), *class_stats[k])
                for k in range(10)]))  # fmt: skip
        rows.append({"file": path.name, **info, "metrics": metrics})
        print(f"{path.name}: {metrics}", flush=True)
        if info.get("seed") == 0:
            save_grid(x[:100], out / "samples" / f"{path.stem}.png", 10)
    record = {
        "benchmark": "issue 18: class-conditional MNIST, classifier-free guidance",
        "command": command,
        "settings": vars(a),
        "sets": rows,
        "table": table(rows),
    }
    name = "conditional_smoke" if a.smoke else "conditional"
    atomic_write_bytes(out / f"{name}.json", json.dumps(record, indent=1).encode())
    _plot(rows, out / f"{name}.png")
    print(record["table"])
    return record


def table(rows: list[dict]) -> str:
    lines = [
        "| model | w | NFE | agreement | FD held-out | FD per class (mean) | FD train | "
        "precision | recall | coverage |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    key = lambda r: (r["guidance"] is None, r["guidance"] or 0)  # noqa: E731
    for r in sorted(rows, key=key):
        m = r["metrics"]
        agree = f"{m['agreement']:.3f}" if "agreement" in m else "—"
        per = f"{m['fd_per_class_mean']:.1f}" if "fd_per_class_mean" in m else "—"
        w = "—" if r["guidance"] is None else f"{r['guidance']:g}"
        name = "unconditional" if r["guidance"] is None else "conditional"
        lines.append(f"| {name} | {w} | {r['nfe']} | {agree} | {m['fd']:.1f} | {per} | "
                     f"{m['fd_train']:.1f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                     f"{m['class_coverage']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cond = sorted((r for r in rows if r["guidance"] is not None), key=lambda r: r["guidance"])
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    w = [r["guidance"] for r in cond]
    ax[0].plot(w, [r["metrics"]["agreement"] for r in cond], "o-")
    ax[0].axhline(0.97, ls=":", c="gray")
    ax[0].set(xlabel="guidance w", ylabel="classifier agrees with the class", ylim=(0, 1.01))
    for key, label in [("fd", "FD held-out"), ("fd_train", "FD train"),
                       ("fd_per_class_mean", "FD per class")]:  # fmt: skip
        ax[1].plot(w, [r["metrics"][key] for r in cond], "o-", label=label)
    for r in rows:
        if r["guidance"] is None:
            ax[1].axhline(r["metrics"]["fd"], ls="--", c="gray", label="unconditional, held-out")
    ax[1].set(xlabel="guidance w", ylabel="FD (classifier features)", yscale="log")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict | None:
    a = parse_args(argv)
    torch.set_num_threads(1)
    command = shlex.join(["python", "benchmarks/conditional.py",
                          *(sys.argv[1:] if argv is None else argv)])  # fmt: skip
    out = Path(a.out)
    start = time.perf_counter()
    if a.stage in ("all", "sample"):
        runs = smoke_runs(a, out) if a.smoke else (Path(a.cond_run), Path(a.uncond_run))
        sample(a, out, *runs)
    if a.stage in ("all", "score"):
        record = score(a, out, command)
        print(f"{time.perf_counter() - start:.0f} s")
        return record
    return None


if __name__ == "__main__":
    main()
