"""benchmarks/mnist.py --smoke: the whole pipeline at tiny size on the shared MNIST test digits."""

import importlib.util
import json
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MNIST = REPO.parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").exists(), reason=f"no MNIST test digits in {MNIST}"
)
def test_smoke_run_records_metrics_plots_and_the_command(tmp_path):
    spec = importlib.util.spec_from_file_location("mnist_benchmark", REPO / "benchmarks/mnist.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    start = time.perf_counter()
    bench.main(["--smoke", "--out", str(tmp_path), "--data", str(MNIST)])
    print(f"smoke benchmark: {time.perf_counter() - start:.1f} s")

    results = json.loads((tmp_path / "results.json").read_text())
    assert "benchmarks/mnist.py --smoke" in results["command"]
    assert results["classifier"]["eval_accuracy"] is not None
    assert (tmp_path / "classifier.safetensors").is_file()
    assert results["data_floor"]["32"]["extractor"].startswith("classifier:")
    for name in ("paper", "default"):
        run = results["runs"][name]
        assert run["along"] and run["along"][0]["train_seconds"] > 0
        assert [p["sampling"]["steps_per_level"] for p in run["nfe"]] == [1, 2]
        for point in [*run["along"], *run["nfe"], run["final"]]:
            metrics = point["metrics"]
            for key in ("fd", "kid_mean", "precision", "recall", "classifier_score"):
                assert metrics[key] is not None
            assert "fraction_flagged" in metrics["memorization"]
    for plot in ("metrics_vs_time.png", "metrics_vs_nfe.png"):
        assert (tmp_path / plot).stat().st_size > 0
    assert list((tmp_path / "samples").glob("paper-step*-T1.png"))
