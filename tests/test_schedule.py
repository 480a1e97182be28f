import json
import math

import pytest
import torch
from tiny import TINY_UNET, as_cli

import ncsn.checkpoint as checkpoint
from ncsn import schedule
from ncsn.cli import main
from ncsn.config import ScheduleConfig
from ncsn.data.images import load_digits
from ncsn.errors import NCSNError
from ncsn.training.state import load_run, parse_meta


def test_overlap_rule_gives_design_check_values_for_cifar10():
    gamma = schedule.gamma_for_overlap(0.5, 3072)
    assert gamma == pytest.approx(1.0398, abs=5e-5)
    assert schedule.levels_for_gamma(50.0, 0.01, gamma) == 220


def test_published_cifar10_ladder_has_overlap_0567_and_step_62e_6():
    gamma = (50 / 0.01) ** (1 / 231)
    assert gamma == pytest.approx(1.03756, abs=1e-5)
    assert schedule.overlap(gamma, 3072) == pytest.approx(0.567, abs=1e-3)
    eps = schedule.step_size_for(gamma, 0.01, 5)
    assert eps == pytest.approx(6.2e-6, rel=0.01)


def test_step_rule_makes_variance_ratio_closest_to_one():
    gamma, sigma_min, steps = 1.2, 0.01, 20
    eps = schedule.step_size_for(gamma, sigma_min, steps)
    best = abs(schedule.variance_ratio(eps, gamma, sigma_min, steps) - 1)
    for factor in (0.5, 0.9, 1.1, 2.0):
        other = abs(schedule.variance_ratio(eps * factor, gamma, sigma_min, steps) - 1)
        assert best <= other


def test_geometric_ladder_is_descending_with_constant_ratio():
    sigmas = torch.tensor(schedule.geometric_sigmas(1.0, 0.01, 10))
    assert sigmas[0] == pytest.approx(1.0) and sigmas[-1] == pytest.approx(0.01)
    ratios = sigmas[:-1] / sigmas[1:]
    assert torch.allclose(ratios, torch.full_like(ratios, 100 ** (1 / 9)), rtol=1e-5)


def test_auto_sigma_max_equals_brute_force_maximum_distance():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(301, 3, 4, 4, generator=g)
    value, how = schedule.max_pairwise_distance(x, chunk=64)
    brute = torch.cdist(x.reshape(301, -1).double(), x.reshape(301, -1).double()).max().item()
    assert value == pytest.approx(brute, rel=1e-9)
    assert "exact" in how


def test_auto_sigma_max_above_limit_is_a_documented_lower_bound():
    x = torch.rand(500, 8, generator=torch.Generator().manual_seed(1))
    value, how = schedule.max_pairwise_distance(x, exact_limit=100)
    assert "estimate" in how
    assert value <= torch.cdist(x, x).max().item() + 1e-5


def test_paper_step_is_twice_ours():
    assert schedule.paper_to_official_step(4e-5) == pytest.approx(2e-5)


def test_resolve_auto_reports_how_each_value_was_obtained():
    x = torch.rand(50, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    sched = schedule.resolve(ScheduleConfig(), x)
    assert sched.sigmas[0] > sched.sigmas[-1] == pytest.approx(0.01)
    assert math.isclose(sched.sigma_max, schedule.max_pairwise_distance(x)[0], rel_tol=1e-6)
    for key in ("sigma_max", "num_levels", "step_size"):
        assert "NCSNv2" in sched.how[key]
    assert sched.step_rule
    text = sched.describe()
    assert f"step_size (ε)    = {sched.step_size:.6g}   [{sched.how['step_size']}]" in text
    assert f"num_levels (L)   = {sched.num_levels}   [{sched.how['num_levels']}]" in text


def test_resolve_fixed_values_are_kept():
    cfg = ScheduleConfig(sigma_max=1.0, sigma_min=0.01, num_levels=10, step_size=2e-5)
    sched = schedule.resolve(cfg, None)
    assert sched.num_levels == 10 and sched.step_size == 2e-5 and not sched.step_rule
    assert sched.gamma == pytest.approx(100 ** (1 / 9))


def test_resolve_auto_without_data_is_a_clear_error():
    with pytest.raises(NCSNError, match="sigma_max"):
        schedule.resolve(ScheduleConfig(), None)


def test_overlap_rule_without_solution_in_low_dimension_is_a_clear_error():
    with pytest.raises(NCSNError, match="D = 2"):
        schedule.gamma_for_overlap(0.5, 2)


def test_auto_ladder_below_image_dimension_uses_the_low_dimension_rule_and_says_why():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    sched = schedule.resolve(ScheduleConfig(), x)
    how = sched.how["num_levels"]
    assert "low-dimension rule" in how and "D = 16 < 64" in how
    assert f"would give γ = {schedule.gamma_for_overlap(0.5, 16):.4g}" in how
    expected = schedule.levels_for_gamma(sched.sigma_max, 0.01, schedule.LOW_DIM_GAMMA)
    assert sched.num_levels == expected
    assert f"[{how}]" in sched.describe()


def test_auto_ladder_in_two_dimensions_no_longer_needs_a_number():
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    sched = schedule.resolve(ScheduleConfig(), x)
    assert "has no solution" in sched.how["num_levels"]
    assert sched.gamma == pytest.approx(schedule.LOW_DIM_GAMMA, rel=0.02)


def test_auto_ladder_from_image_dimension_on_keeps_the_overlap_rule():
    x = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0))  # digits' 64-D
    sched = schedule.resolve(ScheduleConfig(), x)
    assert sched.how["num_levels"].startswith("NCSNv2 technique 2")
    gamma = schedule.gamma_for_overlap(0.5, 64)
    assert sched.num_levels == schedule.levels_for_gamma(sched.sigma_max, 0.01, gamma)


def test_data_mean_is_the_mean_example_in_the_data_units():
    x = torch.randint(0, 256, (5000, 1, 2, 3), dtype=torch.uint8, generator=torch.Generator())
    mean = schedule.data_mean(x, lambda c: c.float() / 255.0)  # 5000 rows: two chunks
    expected = (x.double() / 255.0).mean(0).flatten()
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), expected, atol=1e-7, rtol=0)


def test_describe_states_the_recorded_mean_and_the_ode_start():
    sched = schedule.Schedule([1.0, 0.1], 1e-5, 5, {}, False, [3.0, 4.0])
    assert "‖μ‖ = 5 over 2 dimensions" in sched.describe()
    assert "N(μ, σ₁² I)" in sched.describe()
    assert "data_mean" not in schedule.Schedule([1.0, 0.1], 1e-5, 5).describe()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("mean") / "run"
    overrides = as_cli([*TINY_UNET, "train.steps=2", "schedule.num_levels=4"])
    argv = ["train", "--config", "digits", *overrides, "--run-dir", str(run), "--no-progress"]
    assert main(argv) == 0
    return run


def test_training_records_the_data_mean_in_schedule_json_and_the_checkpoint(tiny_run):
    data = load_digits()
    expected = schedule.data_mean(data.x, data.as_float)
    assert json.loads((tiny_run / "schedule.json").read_text())["data_mean"] == expected
    _, sched, _, _ = load_run(tiny_run, log=lambda m: None)
    assert sched.data_mean == expected and len(expected) == 64


@pytest.mark.parametrize(
    "bad",
    [[0.5] * 63, [0.5] * 63 + [float("nan")], "0.5", [0.5] * 63 + [True], [0.5] * 63 + [10**400]],
)
def test_a_malformed_recorded_mean_is_a_one_line_error_naming_the_file(tiny_run, bad):
    (path,) = sorted((tiny_run / "checkpoints").glob("*.safetensors"))[-1:]
    _, meta = checkpoint.load(path)
    meta["schedule"]["data_mean"] = bad
    with pytest.raises(NCSNError, match="data_mean") as e:
        parse_meta(meta, path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_checkpoint_without_a_recorded_mean_still_loads(tiny_run):
    (path,) = sorted((tiny_run / "checkpoints").glob("*.safetensors"))[-1:]
    _, meta = checkpoint.load(path)
    del meta["schedule"]["data_mean"]
    assert parse_meta(meta, path)[1].data_mean is None
