"""GITS step schedules (Chen et al. 2024): the dynamic programme finds the least-cost path, the
schedules are stored with the run and selected by name, and on the exact mixture score they
help iPNDM at a few steps."""

import functools
import itertools

import numpy as np
import pytest
import torch
from tiny import TINY_UNET, as_cli

from ncsn.cli import main
from ncsn.data.toy import OracleModel
from ncsn.metrics import energy_distance
from ncsn.samplers import gits
from ncsn.samplers.multistep import ipndm_sampler
from ncsn.schedule import karras_sigmas

N = 4000
DISTANCE = functools.partial(energy_distance, unbiased=False)


def test_best_path_is_the_least_cost_path():
    rng = np.random.default_rng(0)
    cost = np.triu(rng.random((9, 9)), 1)
    for levels in (2, 3, 5, 9):
        path = gits.best_path(cost, levels)
        assert path[0] == 0 and path[-1] == 8 and len(path) == levels
        brute = min(
            sum(cost[a, b] for a, b in itertools.pairwise((0, *mid, 8)))
            for mid in itertools.combinations(range(1, 8), levels - 2)
        )
        assert sum(cost[a, b] for a, b in itertools.pairwise(path)) == pytest.approx(brute)


def test_gits_schedule_helps_ipndm_on_the_exact_mixture(mixture):
    """Measured (seed 1, 4,000 samples, floor ≈ 1.6e-3): N = 6 Karras 0.074 → GITS 0.036,
    N = 8 0.022 → 0.016. (DPM-Solver++(2M) is not helped there: its second-order term does not
    like the uneven steps GITS picks; docs/benchmarks.md has the MNIST figures.)"""
    model = OracleModel(mixture)
    mean = (mixture.weights[:, None] * mixture.means).sum(0).float()
    grid = gits.fine_grid(80.0, 0.01, 64)
    cost = gits.teacher_costs(model, (256, 2), grid, generator=torch.Generator().manual_seed(0),
                              mean=mean)  # fmt: skip
    ref = mixture.sample(N, torch.Generator().manual_seed(9)).double()
    for levels in (6, 8):
        ladders = [karras_sigmas(80.0, 0.01, levels), gits.gits_sigmas(cost, grid, levels)]
        karras, optimised = (
            DISTANCE(
                ipndm_sampler(
                    model, (N, 2), s, generator=torch.Generator().manual_seed(1), mean=mean
                ).double(),
                ref,
            )  # fmt: skip
            for s in ladders
        )
        assert optimised < 0.8 * karras, (levels, karras, optimised)


def test_steps_command_stores_schedules_that_sample_selects(tmp_path, capsys):
    run = tmp_path / "run"
    tiny = as_cli([*TINY_UNET, "schedule.num_levels=4", "train.steps=2", "train.batch_size=8"])
    assert main(["train", "--config", "digits", *tiny, "--run-dir", str(run), "--no-progress"]) == 0
    argv = ["steps", str(run), "--steps", "3,5", "--warmup", "8", "--grid", "10"]
    assert main(argv) == 0
    first = gits.load(run)
    assert main(argv) == 0 and gits.load(run) == first  # same seed, same levels
    stored = gits.load(run)["gits"]
    assert sorted(stored) == ["3", "5"] and stored["5"][-1] == 0.0 and len(stored["5"]) == 6
    capsys.readouterr()
    out = tmp_path / "s"
    sample = ["sample", str(run), "--sampler", "ipndm", "--step-schedule", "gits", "--n", "4"]
    assert main([*sample, "--steps", "5", "--out", str(out)]) == 0
    assert "the run's GITS levels" in capsys.readouterr().out
    assert main([*sample, "--steps", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no GITS schedule of N = 4 levels (stored: 3, 5)" in err[0]
    assert main(["steps", str(run), "--steps", "12", "--grid", "10"]) == 2
    assert "--steps 12: expected 2 to --grid 10" in capsys.readouterr().err
