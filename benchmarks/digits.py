"""The main job, measured: train on the built-in digits, sample, and check the samples.

Runs `ncsn train --config digits` and `ncsn sample` (as the quick start does), times both, and
scores the samples with a logistic-regression digit classifier fitted on scikit-learn's digits
(98%+ held-out accuracy on real digits): the class histogram says whether all ten classes appear,
and the mean max-probability how confidently. Writes JSON with the exact command.

    python benchmarks/digits.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from ncsn.cli import main as ncsn


def digit_classifier(seed: int = 0) -> tuple[LogisticRegression, float]:
    """Logistic regression on the 8×8 digits in [0, 1]; returns (model, held-out accuracy)."""
    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed)
    clf = LogisticRegression(max_iter=2000).fit(x_tr, y_tr)
    return clf, float(clf.score(x_te, y_te))


def score_samples(images: np.ndarray, clf: LogisticRegression) -> dict:
    """Class histogram and confidence of uint8 samples (N, 8, 8, 1)."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    proba = clf.predict_proba(x)
    hist = np.bincount(proba.argmax(1), minlength=10)
    return {
        "class_histogram": hist.tolist(),
        "classes_present": int((hist > 0).sum()),
        "mean_max_probability": float(proba.max(1).mean()),
    }


def run(out: Path, smoke: bool, argv: list[str] | None = None) -> dict:
    run_dir = out / ("digits_smoke_run" if smoke else "digits_run")
    extra = (
        [
            "--set",
            "train.steps=20",
            "--set",
            "train.preview_every=0",
            "--set",
            "schedule.steps_per_level=2",
            "--set",
            "model.channels=8",
            "--set",
            "model.groups=4",
        ]
        if smoke
        else []
    )
    t0 = time.perf_counter()
    assert (
        ncsn(["train", "--config", "digits", "--run-dir", str(run_dir), "--no-progress", *extra])
        == 0
    )
    t1 = time.perf_counter()
    n = 20 if smoke else 500
    assert ncsn(["sample", str(run_dir), "--n", str(n), "--seed", "0"]) == 0
    t2 = time.perf_counter()
    clf, acc = digit_classifier()
    images = np.load(run_dir / "samples" / "samples.npz")["images"]
    result = {
        "command": "python benchmarks/digits.py "
        + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "smoke": smoke,
        "train_seconds": t1 - t0,
        "sample_seconds": t2 - t1,
        "n_samples": n,
        "classifier_heldout_accuracy": acc,
        "real_digits": score_samples(
            (load_digits().images[:n, :, :, None] * 255 / 16).round().astype(np.uint8), clf
        ),
        "samples": score_samples(images, clf),
        "grid": str(run_dir / "samples" / "grid.png"),
    }
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    p.add_argument("--out", default="benchmarks/results", help="output folder")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = run(out, args.smoke, argv)
    name = "digits_smoke.json" if args.smoke else "digits.json"
    (out / name).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
