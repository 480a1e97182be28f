"""benchmarks/ode_start.py --smoke: a tiny run trained on the shared MNIST digits, both ODE starts
drawn and scored like the MNIST benchmark."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MNIST = REPO.parent / "shared" / "data" / "mnist"
CLASSIFIER = REPO / "benchmarks" / "results" / "mnist" / "classifier.safetensors"


@pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").exists() or not CLASSIFIER.is_file(),
    reason=f"no MNIST test digits in {MNIST} or no classifier at {CLASSIFIER}",
)
def test_smoke_run_draws_and_scores_both_starts(tmp_path):
    spec = importlib.util.spec_from_file_location("ode_start", REPO / "benchmarks/ode_start.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--smoke", "--out", str(tmp_path), "--data", str(MNIST)])

    record = json.loads((tmp_path / "ode_start.json").read_text())
    assert "benchmarks/ode_start.py --smoke" in record["command"]
    assert {row["start"] for row in record["sets"]} == {"mean", "zero"}
    for row in [*record["sets"], record["data_floor"]]:
        for key in ("fd", "fd_train", "precision", "recall", "class_coverage"):
            assert row["metrics"][key] is not None
    assert (
        "start N(μ, σ₁² I)"
        in next(r for r in record["sets"] if r["start"] == "mean")["description"]
    )
    images = np.load(tmp_path / "samples" / "ode_start-mean-seed0.npz")["images"]
    assert images.dtype == np.uint8 and images.shape == (16, 28, 28, 1)
