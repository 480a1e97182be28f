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
        assert [p["sampling"]["steps"] for p in run["nfe"]] == [1, 2]
        for point in [*run["along"], *run["nfe"], run["final"]]:
            metrics = point["metrics"]
            for key in ("fd", "kid_mean", "precision", "recall", "classifier_score"):
                assert metrics[key] is not None
            assert "fraction_flagged" in metrics["memorization"]
    for plot in ("metrics_vs_time.png", "metrics_vs_nfe.png"):
        assert (tmp_path / plot).stat().st_size > 0
    assert list((tmp_path / "samples").glob("paper-step*-T1.png"))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").exists(), reason=f"no MNIST test digits in {MNIST}"
)
def test_staged_pipeline_train_export_sample_elsewhere_score(tmp_path):
    """--stage train, then sample_sets.py on a slim export (as on a GPU machine), then
    --stage score: every set is scored, with the job's NFE and seed, into sets.json/sets.md."""
    bench, sets = _load("mnist"), _load("sample_sets")
    common = ["--smoke", "--data", str(MNIST), "--out", str(tmp_path)]
    bench.main([*common, "--stage", "train", "--configs", "default", "--name", "tiny"])
    record = json.loads((tmp_path / "runs" / "tiny" / "train.json").read_text())
    assert record["along"] and record["along"][-1]["step"] >= 2
    slim = sets.export(str(tmp_path / "runs" / "tiny"), str(tmp_path / "slim"))
    full = sorted((tmp_path / "runs" / "tiny" / "checkpoints").iterdir())[-1]
    assert slim.stat().st_size < 0.5 * full.stat().st_size  # EMA weights only
    jobs = {
        "groups": [
            {
                "name": "g_ode",
                "run": str(tmp_path / "slim"),
                "sampler": "ode",
                "steps": [3],
                "seeds": [0, 1],
                "n": 8,
            },
            {
                "name": "g_ald",
                "run": str(tmp_path / "slim"),
                "sampler": "ald",
                "steps": [1, 2],
                "seeds": [0],
                "n": 8,
            },
        ]
    }
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    sets.main([str(tmp_path / "jobs.json"), "--out", str(tmp_path / "sets"), "--device", "cpu"])
    again = tmp_path / "again"
    sets.main([str(tmp_path / "jobs.json"), "--out", str(again), "--device", "cpu"])
    import numpy as np

    for g in ("g_ode", "g_ald"):  # same seeds, same bytes
        a, b = np.load(tmp_path / "sets" / f"{g}.npz"), np.load(again / f"{g}.npz")
        assert np.array_equal(a["images"], b["images"])
    bench.main(
        [
            *common,
            "--stage",
            "score",
            "--sets",
            str(tmp_path / "sets"),
            "--n",
            "8",
            "--n-along",
            "8",
        ]
    )
    scored = json.loads((tmp_path / "sets.json").read_text())
    got = sorted((r["group"], r["steps"], r["seed"], r["nfe"]) for r in scored["sets"])
    assert got == [("g_ald", 1, 0, 11), ("g_ald", 2, 0, 21), ("g_ode", 3, 0, 5), ("g_ode", 3, 1, 5)]
    assert all(r["metrics"]["fd"] > 0 for r in scored["sets"])
    assert "| g_ode | ode | 3 | 5 | 2 |" in (tmp_path / "sets.md").read_text()
    assert (tmp_path / "fd_vs_nfe.png").stat().st_size > 0


def test_sample_sets_deadline_keeps_the_finished_jobs(tmp_path, monkeypatch):
    sets = _load("sample_sets")
    calls = []

    def fake(group, device, deadline, log):
        calls.append(group["name"])
        return {
            "images": __import__("numpy").zeros((1, 2, 4, 4, 1), "uint8"),
            "jobs": [{"seed": 0}],
            "complete": group["name"] != "b",
        }

    monkeypatch.setattr(sets, "sample_group", fake)
    groups = {"groups": [{"name": n} for n in ("a", "b", "c")]}
    (tmp_path / "jobs.json").write_text(json.dumps(groups))
    sets.main([str(tmp_path / "jobs.json"), "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert calls == ["a", "b"]  # b ran out of time: written, and nothing after it starts
    assert sorted(p.name for p in (tmp_path / "o").glob("*.npz")) == ["a.npz", "b.npz"]
