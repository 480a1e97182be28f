import math

import pytest
import torch

from ncsn import schedule
from ncsn.config import ScheduleConfig
from ncsn.errors import NCSNError


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
