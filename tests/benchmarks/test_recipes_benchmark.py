"""benchmarks/recipes.py --smoke: the four recipes trained tiny on the shared MNIST digits, their
post-hoc EMA chosen, sample sets drawn, named and scored (FD against held-out and training
digits, its split), and the per-σ errors measured."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MNIST = REPO.parent / "shared" / "data" / "mnist"
CLASSIFIER = REPO / "benchmarks" / "results" / "mnist" / "classifier.safetensors"
RECIPES = {"ncsn", "edm_lognormal", "edm_loguniform", "noise_lognormal"}


@pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").exists() or not CLASSIFIER.is_file(),
    reason=f"no MNIST test digits in {MNIST} or no classifier at {CLASSIFIER}",
)
def test_smoke_trains_chooses_the_ema_samples_and_scores_every_recipe(tmp_path):
    spec = importlib.util.spec_from_file_location("recipes", REPO / "benchmarks/recipes.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--smoke", "--out", str(tmp_path), "--data", str(MNIST)]
    record = bench.main([*argv, "--classifier", str(CLASSIFIER)])

    for recipe in RECIPES:
        run = tmp_path / "runs" / recipe
        snapshots = sorted(p.name for p in (run / "ema").glob("pema-*.safetensors"))
        assert snapshots == [f"pema-{k:08d}.safetensors" for k in (2, 3, 4, 6)]
        assert (run / "per_sigma.csv").read_text().count("\n") > 1
        choice = record["ema"][recipe]
        assert choice["best"] in choice["candidates"] and "train.ema" in choice["candidates"]
    config = (tmp_path / "runs" / "edm_lognormal" / "config.yaml").read_text()
    assert "parameterization: edm" in config and "sigma_distribution: lognormal" in config
    assert {(r["recipe"], r["sampler"], r["steps"]) for r in record["rows"]} == {
        (recipe, sampler, steps)
        for recipe in RECIPES
        for sampler, steps in (("ode", 2), ("churn", 2), ("ald", 1))
    }
    for row in [*record["rows"]]:
        m = row["metrics"]
        assert math.isclose(m["fd"], m["mean_term"] + m["cov_term"], rel_tol=1e-9)
        assert all(math.isfinite(m[k]) for k in ("fd", "fd_train", "precision", "recall"))
        path = tmp_path / "samples" / row["file"]
        assert path.name == f"{row['recipe']}-{row['sampler']}-{row['steps']}-seed0.npz"
        with np.load(path) as f:
            assert f["images"].dtype == np.uint8 and f["images"].shape == (16, 28, 28, 1)
    for errors in record["per_sigma_mse"].values():
        assert len(errors["mse"]) == 24 and all(e >= 0 for e in errors["mse"])
    assert (tmp_path / "recipes_smoke_fd_vs_nfe.png").stat().st_size > 1000
    assert "| edm_lognormal" in (tmp_path / "recipes_smoke.md").read_text()
    json.loads((tmp_path / "recipes_ema_smoke.json").read_text())
