"""benchmarks/conditional.py --smoke: tiny conditional and unconditional runs trained on the shared
MNIST digits, sets drawn at three guidance weights and scored like the issue-18 table."""

import importlib.util
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
def test_smoke_draws_and_scores_each_guidance_weight(tmp_path):
    spec = importlib.util.spec_from_file_location("cond", REPO / "benchmarks/conditional.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    record = bench.main(["--smoke", "--out", str(tmp_path), "--data", str(MNIST)])

    assert record["command"].startswith("python benchmarks/conditional.py --smoke")
    guided = {r["guidance"]: r for r in record["sets"] if r["guidance"] is not None}
    assert set(guided) == {0.0, 1.0, 2.0}
    assert guided[2.0]["nfe"] == 2 * guided[1.0]["nfe"]  # the batched pair counts twice
    for r in record["sets"]:
        assert {"fd", "fd_train", "precision", "recall"} <= set(r["metrics"])
        assert ("agreement" in r["metrics"]) == (r["guidance"] is not None)
    saved = np.load(tmp_path / "samples" / "cond-w2-churn-3-seed0.npz")
    assert saved["images"].shape == (20, 28, 28, 1)
    assert saved["labels"].tolist() == [k % 10 for k in range(20)]
    assert "| conditional | 2 |" in record["table"]
