"""The public Python API: ``ncsn.load``/``Run.sample``, ``ncsn.train``, ``ncsn.evaluate``, and the
README's library example run as written."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY_UNET

import ncsn
from ncsn import presets, viz
from ncsn.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = {
    "schedule": {"sigma_max": 3.0, "num_levels": 4, "steps_per_level": 2},
    "model": {"channels": 8, "groups": 4, "num_res_blocks": 1, "embedding_dim": 8},
    "train": {"steps": 3, "batch_size": 8, "preview_every": 0},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("api") / "runs" / "digits"
    ncsn.train("digits", progress=False, run_dir=str(run), **TINY)
    return run


@pytest.fixture(scope="module")
def consistency_dir(tmp_path_factory):
    """A consistency model (``ncsn distill``, 2 steps) of a tiny edm run: what ``--sampler
    consistency`` samples."""
    base = tmp_path_factory.mktemp("cm")
    edm = {**TINY, "model": {**TINY["model"], "parameterization": "edm"}}
    ncsn.train("digits", progress=False, run_dir=str(base / "teacher"), **edm)
    argv = ["distill", str(base / "teacher"), "--out", str(base / "cm"), "--steps", "2"]
    assert main([*argv, "--no-progress"]) == 0
    return base / "cm"


def test_train_with_section_overrides_returns_the_loaded_run(run_dir):
    run = ncsn.load(run_dir)
    assert run.meta["step"] == 3 and run.shape == (1, 8, 8)
    assert run.config.model.channels == 8 and run.schedule.num_levels == 4


def test_train_from_a_config_object_equals_training_from_the_preset(tmp_path, run_dir):
    cfg = ncsn.load_config(presets.find("digits"), [*TINY_UNET, "schedule.num_levels=4"])
    run = ncsn.train(cfg, progress=False, run_dir=str(tmp_path / "again"), **TINY)
    a, b = ncsn.load(run_dir).model.state_dict(), run.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("sampler", ncsn.SAMPLERS)
def test_run_sample_gives_the_bytes_of_ncsn_sample(run_dir, tmp_path, sampler, request):
    if sampler == "consistency":  # a consistency model's sampler (refused on other runs)
        run_dir = request.getfixturevalue("consistency_dir")
    x = ncsn.load(run_dir).sample(5, sampler=sampler, steps=3, seed=4)
    assert x.shape == (5, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    out = tmp_path / sampler
    argv = ["sample", str(run_dir), "--sampler", sampler, "--steps", "3", "--n", "5"]
    assert main([*argv, "--seed", "4", "--out", str(out)]) == 0
    written = np.load(out / "samples.npz")["images"]
    assert np.array_equal(viz.to_uint8(x), written)


def test_sampler_options_by_name_reach_the_sampler(run_dir):
    run = ncsn.load(run_dir)
    a = run.sample(4, sampler="churn", steps=4, seed=0)
    b = run.sample(4, sampler="churn", steps=4, seed=0, s_churn=0.0)
    c = run.sample(4, sampler="churn", steps=4, seed=0, s_churn=0.0, s_noise=5.0)
    assert not torch.equal(a, b) and torch.equal(b, c)  # no churn: S_noise has nothing to scale


def test_evaluate_scores_samples_with_a_classifier(run_dir, tmp_path):
    clf = tmp_path / "clf.safetensors"
    steps = ["--steps", "5", "--batch-size", "32"]
    assert main(["classifier", "train", "--out", str(clf), *steps]) == 0
    run = ncsn.load(run_dir)
    reference = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    result = ncsn.evaluate(run.sample(64, seed=1), reference, extractor=f"classifier:{clf}")
    assert result["num_samples"] == 64 and result["fd"] > 0


def test_the_readme_library_example_runs_as_written(run_dir, monkeypatch):
    text = README.read_text()
    block = re.search(r"### Library\n\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(run_dir.parents[1])  # the example reads runs/digits
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    assert namespace["x"].shape == (16, 1, 8, 8)


def test_help_of_the_package_names_the_api():
    doc = ncsn.__doc__
    for name in ("load", "train", "evaluate", "sample", "heun_sampler", "karras_sigmas"):
        assert name in doc and hasattr(ncsn, name)
    assert os.path.basename(ncsn.__file__) == "__init__.py"


def test_run_likelihood_gives_the_value_of_ncsn_likelihood(run_dir, tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", images=images)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    scores = ncsn.load(run_dir).likelihood(x, solver="heun", steps=3, seed=2)
    assert scores.bits_per_dim.shape == (4,) and scores.nfe == 6
    out = tmp_path / "ll.json"
    argv = ["likelihood", str(run_dir), "--data", str(tmp_path / "x.npz"), "--solver", "heun"]
    argv += ["--steps", "3"]
    assert main([*argv, "--seed", "2", "--out", str(out), "--no-progress"]) == 0
    cli = json.loads(out.read_text())["bits_per_dim"]
    assert cli == pytest.approx(float(scores.bits_per_dim.double().mean()), rel=1e-12)
    with pytest.raises(ncsn.NCSNError, match="shape"):
        ncsn.load(run_dir).likelihood(torch.zeros(2, 1, 4, 4))
