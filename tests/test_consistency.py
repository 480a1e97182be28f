"""Issue 16, item 5: the consistency parameterization, ECT's loss, ``ncsn distill`` and the
consistency sampler."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny import TINY_UNET, as_cli
from torch import nn

import ncsn
import ncsn.config as config
import ncsn.consistency as consistency
import ncsn.samplers.run as samplers
from ncsn import checkpoint
from ncsn.cli import main
from ncsn.devices import cpp_compiler
from ncsn.errors import NCSNError
from ncsn.model import ScoreModel
from ncsn.samplers.consistency import consistency_sampler
from ncsn.training.preview import save_preview
from ncsn.training.state import load_run

SIGMA_DATA, SIGMA_MIN = 0.37, 0.02


class Net(nn.Module):
    """A fixed smooth function of (x, σ) with one parameter, so the loss has a gradient."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.7, dtype=torch.float64))

    def forward(self, x, sigma):
        return torch.sin(self.a * x) + 0.1 * torch.log(sigma)[:, None]


def _model():
    return ScoreModel(Net(), "consistency", sigma_data=SIGMA_DATA, sigma_min=SIGMA_MIN)


def test_the_boundary_condition_holds_exactly():
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 4
    model = _model()
    assert torch.equal(model.denoise(x, SIGMA_MIN), x)
    x32 = x.float()
    assert torch.equal(model.float().denoise(x32, SIGMA_MIN), x32)


def test_consistency_coefficients_are_the_formulas():
    """Song et al. 2023, App. C: c_skip = σ_d²/((σ − σ_min)² + σ_d²),
    c_out = (σ − σ_min)σ_d/√(σ² + σ_d²)."""
    x = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64)
    sigma = torch.tensor([0.2, 5.0], dtype=torch.float64)
    model = _model()
    f = model.denoise(x, sigma)
    for i in range(2):
        s, sd = float(sigma[i]), SIGMA_DATA
        c_skip = sd**2 / ((s - SIGMA_MIN) ** 2 + sd**2)
        c_out = (s - SIGMA_MIN) * sd / math.sqrt(s**2 + sd**2)
        c_in = 1 / math.sqrt(s**2 + sd**2)
        F = torch.sin(0.7 * c_in * x[i]) + 0.1 * math.log(s)
        assert torch.allclose(f[i], c_skip * x[i] + c_out * F, atol=1e-14, rtol=0)
    assert torch.allclose(model.score(x, sigma), (f - x) / sigma[:, None] ** 2, atol=1e-12)


ECT = consistency.ECT(
    sigma_min=SIGMA_MIN, sigma_max=8.0, p_mean=-1.0, p_std=1.5, q=2.0, k=8.0, b=1.3, c=0.05,
    stage_steps=10,
)  # fmt: skip


def test_the_mapping_shrinks_the_gap_by_q_each_stage():
    t = torch.tensor([0.02, 0.05, 0.3, 1.0, 7.0], dtype=torch.float64)
    for stage in range(6):
        r = ECT.r(t, stage)
        n = 1 + 8 * torch.sigmoid(-1.3 * t)
        expected = torch.clamp(t - t * n / 2 ** (stage + 1), min=SIGMA_MIN)
        assert torch.allclose(r, expected, rtol=1e-15, atol=0)
        assert (r >= SIGMA_MIN).all() and (r <= t).all()
    gap = [(t - ECT.r(t, s))[-1].item() for s in (3, 4)]
    assert gap[1] == pytest.approx(gap[0] / 2, rel=1e-12)
    assert (ECT.stage(0), ECT.stage(9), ECT.stage(10), ECT.stage(35)) == (0, 0, 1, 3)


def _f(v, s):
    """The consistency function of ``_model()`` at one σ, by hand (Song et al. 2023, App. C)."""
    c_skip = SIGMA_DATA**2 / ((s - SIGMA_MIN) ** 2 + SIGMA_DATA**2)
    c_out = (s - SIGMA_MIN) * SIGMA_DATA / math.sqrt(s**2 + SIGMA_DATA**2)
    c_in = 1 / math.sqrt(s**2 + SIGMA_DATA**2)
    return c_skip * v + c_out * (torch.sin(0.7 * c_in * v) + 0.1 * math.log(s))


def _draws(n: int, seed: int, stage: int):
    """ECT's draws for ``n`` examples of dimension 3 by hand, in its order (t, then z), with
    r(t) at ``stage`` for the module's ECT constants: (t, r, z) per example."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.exp(-1.0 + 1.5 * torch.randn(n, generator=gen, dtype=torch.float64))
    t = t.clamp(SIGMA_MIN, 8.0)
    z = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    for i in range(n):
        ti = float(t[i])
        ri = max(SIGMA_MIN, ti - ti * (1 + 8 / (1 + math.exp(1.3 * ti))) / 2 ** (stage + 1))
        yield ti, ri, z[i]


@pytest.mark.parametrize(
    "weight, metric",
    [("inverse_gap", "pseudo_huber"), ("uniform", "pseudo_huber"), ("inverse_gap", "l1")],
)
def test_the_loss_equals_a_hand_computation_on_a_fixed_batch(weight, metric):
    """ECT's 1/(t − r), or consistency distillation's λ ≡ 1 (``train.ect_weight = uniform``),
    both 0 where r = t; the pseudo-Huber distance, or ‖·‖₁ (``train.ect_distance = l1``)."""
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = _model()
    step = 23  # stage 2
    loss = consistency.ect_loss(
        model, x, dataclasses.replace(ECT, weight=weight, metric=metric), step=step,
        generator=torch.Generator().manual_seed(5),
    )  # fmt: skip
    total, draws = 0.0, list(_draws(6, seed=5, stage=2))
    assert min(ti - ri for ti, ri, _ in draws) < 0.1 < 0.5 < max(ti - ri for ti, ri, _ in draws)
    for i, (ti, ri, zi) in enumerate(draws):
        diff = _f(x[i] + ti * zi, ti) - _f(x[i] + ri * zi, ri)
        d = math.sqrt(float(diff.pow(2).sum()) + 0.05**2) - 0.05
        if metric == "l1":
            d = float(diff.abs().sum())
        if ti > ri:
            total += d / (ti - ri) if weight == "inverse_gap" else d
    assert loss.item() == pytest.approx(total / 6, rel=1e-9)
    loss.backward()  # the gradient flows through f(x_t, t) only (the target has none)
    assert model.net.a.grad is not None and model.net.a.grad.abs() > 0


def test_the_grid_pairs_adjacent_levels_and_the_loss_equals_a_hand_computation():
    """``train.ect_grid``: consistency distillation's discrete pairs (Song et al. 2023, Alg. 2)
    on σ₁ = 8 > 1.5 > 0.3 > σ_min: t uniform over the upper three levels (drawn first, as
    integers), r the next level below, then z; the stage, P_mean and q play no part."""
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ect = dataclasses.replace(ECT, grid=(1.5, 0.3))
    model = _model()
    losses = [consistency.ect_loss(model, x, ect, step=step, generator=torch.Generator()
                                   .manual_seed(4)).item() for step in (0, 35)]  # fmt: skip
    assert losses[0] == losses[1]  # no stages
    gen = torch.Generator().manual_seed(4)
    levels = [8.0, 1.5, 0.3, SIGMA_MIN]
    index = torch.randint(3, (8,), generator=gen)
    z = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    assert set(index.tolist()) == {0, 1, 2}  # every pair of adjacent levels occurs
    total = 0.0
    for i, k in enumerate(index.tolist()):
        ti, ri = levels[k], levels[k + 1]
        diff = _f(x[i] + ti * z[i], ti) - _f(x[i] + ri * z[i], ri)
        total += (math.sqrt(float(diff.pow(2).sum()) + 0.05**2) - 0.05) / (ti - ri)
    assert losses[0] == pytest.approx(total / 8, rel=1e-9)
    t, r = ect.draw_pairs(1000, 0, torch.Generator().manual_seed(0), "cpu", torch.float64)
    counts = [int((t == v).sum()) for v in levels[:3]]
    assert sum(counts) == 1000 and min(counts) > 280  # each level a third (± 5σ)
    assert torch.equal(r, torch.tensor(levels[1:], dtype=torch.float64)[
        torch.tensor([levels.index(v) for v in t.tolist()])])  # fmt: skip


def test_rollout_moves_the_pairs_below_sigma_max_onto_the_students_own_draws():
    """``train.ect_rollout`` = p: after t, r and z, the loss draws u ~ U[0, 1) and z′ for every
    example; where t < σ₁ and u < p the clean image is f(x + σ₁·z′, σ₁) instead of x (the hand
    computation below, at p = 0.6); p = 0 draws nothing more (the grid test's bytes)."""
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model = _model()
    ect = dataclasses.replace(ECT, grid=(1.5, 0.3))
    loss0 = consistency.ect_loss(model, x, ect, step=0, generator=torch.Generator().manual_seed(4))
    off = consistency.ect_loss(model, x, dataclasses.replace(ect, rollout=0.0), step=0,
                               generator=torch.Generator().manual_seed(4))  # fmt: skip
    assert off.item() == loss0.item()
    none = consistency.ect_loss(model, x, dataclasses.replace(ect, rollout=1e-12), step=0,
                                generator=torch.Generator().manual_seed(4))  # fmt: skip
    assert none.item() == loss0.item()  # u, z′ come after t, r, z; nothing moved: an empty jump
    ect = dataclasses.replace(ect, rollout=0.6)
    assert "0.6 of the pairs below σ₁ on the student's own draws" in ect.describe()
    loss = consistency.ect_loss(model, x, ect, step=0, generator=torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(4)
    levels = [8.0, 1.5, 0.3, SIGMA_MIN]
    index = torch.randint(3, (8,), generator=gen)
    z = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    u = torch.rand(8, generator=gen, dtype=torch.float64)
    z1 = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    moved = [k > 0 and float(u[i]) < 0.6 for i, k in enumerate(index.tolist())]
    assert 0 < sum(moved) < sum(k > 0 for k in index.tolist())  # some moved, some kept
    total = 0.0
    for i, k in enumerate(index.tolist()):
        ti, ri = levels[k], levels[k + 1]
        xi = _f(x[i] + 8.0 * z1[i], 8.0) if moved[i] else x[i]
        diff = _f(xi + ti * z[i], ti) - _f(xi + ri * z[i], ri)
        total += (math.sqrt(float(diff.pow(2).sum()) + 0.05**2) - 0.05) / (ti - ri)
    assert loss.item() == pytest.approx(total / 8, rel=1e-9)
    assert loss.item() != loss0.item()
    loss.backward()  # the draws carry no gradient: only f(x_t, t) does
    assert model.net.a.grad is not None and model.net.a.grad.abs() > 0


class GaussianDenoiser:
    """The exact denoiser of data N(μ, s²I): D(x, σ) = μ + (x − μ)·s²/(s² + σ²)."""

    def __init__(self, mu, s):
        self.mu, self.s = mu, s

    def denoise(self, x, sigma):
        return self.mu + (x - self.mu) * (self.s**2 / (self.s**2 + sigma**2))[:, None]


def test_the_teacher_heun_step_is_second_order_on_a_gaussian():
    """On N(μ, s²) the ODE's solution is x(r) = μ + (x − μ)·√(s² + r²)/√(s² + t²); one Heun step's
    error shrinks as (t − r)³ (local error of a second-order method)."""
    mu, s = 0.3, 0.5
    teacher = GaussianDenoiser(mu, s)
    x = torch.tensor([[1.7, -0.4]], dtype=torch.float64)
    t = torch.tensor([2.0], dtype=torch.float64)
    errors = []
    gaps = (0.2, 0.1, 0.05)
    for gap in gaps:
        r = t - gap
        exact = mu + (x - mu) * math.sqrt(s**2 + r.item() ** 2) / math.sqrt(s**2 + t.item() ** 2)
        errors.append((consistency.heun_step(teacher, x, t, r) - exact).abs().max().item())
    slope = np.polyfit(np.log(gaps), np.log(errors), 1)[0]  # local error ∝ gap^slope
    assert 2.8 < slope < 3.3, (errors, slope)


def test_k_teacher_steps_converge_to_the_odes_solution_at_second_order():
    """``train.ect_teacher_steps`` = K: K Heun steps from t to r over the ρ = 7 ladder between
    them; K = 1 is the single step byte for byte, and the global error falls as K⁻² (fitted
    over K = 4, 8, 16), to t = 8 → r = σ_min in one solve."""
    mu, s = 0.3, 0.5
    teacher = GaussianDenoiser(mu, s)
    x = torch.tensor([[1.7, -0.4], [0.2, 2.5]], dtype=torch.float64)
    t = torch.tensor([8.0, 1.0], dtype=torch.float64)
    r = torch.tensor([SIGMA_MIN, 0.3], dtype=torch.float64)
    one = consistency.teacher_solve(teacher, x, t, r, 1)
    assert torch.equal(one, consistency.heun_step(teacher, x, t, r))
    exact = mu + (x - mu) * (torch.sqrt(s**2 + r**2) / torch.sqrt(s**2 + t**2))[:, None]
    ks = (4, 8, 16)
    errors = [(consistency.teacher_solve(teacher, x, t, r, k) - exact).abs().max().item()
              for k in ks]  # fmt: skip
    slope = np.polyfit(np.log(ks), np.log(errors), 1)[0]
    assert -2.4 < slope < -1.7, (errors, slope)


@pytest.mark.parametrize("steps", [1, 3])
def test_the_teacher_pair_loss_equals_a_hand_computation(steps):
    """``train.ect_pair = teacher``: x_r is the teacher's Heun step from x_t (Song et al. 2023,
    Algorithm 2), or ``steps`` of them over t^(1/7) … r^(1/7) spaced evenly; the rest as ECT."""
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mu, s = 0.2, 0.6
    ect = dataclasses.replace(
        ECT, pair="teacher", teacher=GaussianDenoiser(mu, s), teacher_steps=steps
    )
    model = _model()
    loss = consistency.ect_loss(model, x, ect, step=0, generator=torch.Generator().manual_seed(9))
    total = 0.0
    for i, (ti, ri, zi) in enumerate(_draws(5, seed=9, stage=0)):
        xt = x[i] + ti * zi

        def slope(v, sig):  # (x − D(x, σ))/σ
            return (v - (mu + (v - mu) * s**2 / (s**2 + sig**2))) / sig

        levels = [(ti ** (1 / 7) + k / steps * (ri ** (1 / 7) - ti ** (1 / 7))) ** 7
                  for k in range(steps + 1)]  # fmt: skip
        xr = xt
        for hi, lo in zip(levels[:-1], levels[1:], strict=True):
            euler = xr + (lo - hi) * slope(xr, hi)
            xr = xr + (lo - hi) * (slope(xr, hi) + slope(euler, lo)) / 2

        d = math.sqrt(float((_f(xt, ti) - _f(xr, ri)).pow(2).sum()) + 0.05**2) - 0.05
        total += d / (ti - ri) if ti > ri else 0.0
    assert loss.item() == pytest.approx(total / 5, rel=1e-9 if steps == 1 else 1e-7)


@pytest.mark.parametrize("weight", ["inverse_gap", "uniform"])
def test_an_example_at_sigma_min_has_weight_zero_not_nan(weight):
    ect = consistency.ECT(SIGMA_MIN, 8.0, -50.0, 0.01, 2.0, 8.0, 1.0, 0.0, 10, weight=weight)
    x = torch.randn(4, 3, dtype=torch.float64)
    loss = consistency.ect_loss(_model(), x, ect, step=0, generator=torch.Generator())
    assert loss.item() == 0.0


def test_auto_constants_move_ect_to_the_datas_scale():
    t = config.TrainConfig(objective="ect")
    ect = consistency.from_config(t, [16.0, 1.0, 0.01], sigma_data=0.25, dim=784)
    assert ect.p_mean == pytest.approx(-1.1 + math.log(0.5))
    assert ect.b == pytest.approx(2.0) and ect.c == pytest.approx(0.00054 * 28 * 0.5)
    assert (ect.sigma_min, ect.sigma_max) == (0.01, 16.0)


class GaussianConsistency:
    """The exact consistency function of data N(μ, s²I): the probability-flow ODE moves
    x − μ by √(s² + σ²) (Karras et al. 2022, Eq. 3 for a Gaussian), so
    f(x, σ) = μ + (x − μ)·√(s² + σ_min²)/√(s² + σ²)."""

    def __init__(self, mu, s, sigma_min):
        self.mu, self.s, self.sigma_min = mu, s, sigma_min

    def denoise(self, x, sigma):
        scale = math.sqrt(self.s**2 + self.sigma_min**2) / torch.sqrt(self.s**2 + sigma**2)
        return self.mu + (x - self.mu) * scale[:, None]


def test_one_jump_of_the_exact_consistency_function_is_the_odes_endpoint():
    mu, s, s_min, s_max = 1.5, 0.4, 0.01, 30.0
    oracle = GaussianConsistency(mu, s, s_min)
    gen = torch.Generator().manual_seed(0)
    x = consistency_sampler(oracle, (200_000, 1), [s_max], generator=gen,
                            sigma_min=s_min, mean=torch.tensor([mu]))  # fmt: skip
    # start N(μ, σ₁²): one jump scales the spread by √(s² + σ_min²)/√(s² + σ₁²)
    want = s_max * math.sqrt(s**2 + s_min**2) / math.sqrt(s**2 + s_max**2)
    assert x.mean().item() == pytest.approx(mu, abs=0.01)
    assert x.std().item() == pytest.approx(want, rel=0.01)


def test_two_jumps_renoise_from_the_first_jump_and_count_two_evaluations():
    oracle = GaussianConsistency(0.0, 1.0, 0.01)
    seen = []
    x = consistency_sampler(oracle, (4, 3), [20.0, 0.5], generator=torch.Generator().manual_seed(3),
                            sigma_min=0.01, callback=seen.append)  # fmt: skip
    gen = torch.Generator().manual_seed(3)
    x0 = oracle.denoise(20.0 * torch.randn(4, 3, generator=gen), torch.full((4,), 20.0))
    x1 = x0 + math.sqrt(0.5**2 - 0.01**2) * torch.randn(4, 3, generator=gen)
    assert torch.equal(x, oracle.denoise(x1, torch.full((4,), 0.5)))
    assert [state["nfe"] for state in seen] == [1, 2]


def test_gamma_renoises_partly_along_the_last_jump():
    """CTM's γ-sampling: G(x, σ₁, s) = x₀ + s·(x − x₀)/σ₁ to s = √(1 − γ²)σ, plus γ of the
    fresh noise; γ = 1 is the test above's Algorithm 1 to the byte."""
    oracle = GaussianConsistency(0.0, 1.0, 0.01)
    draw = lambda gamma, gen: consistency_sampler(  # noqa: E731
        oracle, (4, 3), [20.0, 0.5], generator=gen, sigma_min=0.01, gamma=gamma
    )
    gen = torch.Generator().manual_seed(3)
    x_start = 20.0 * torch.randn(4, 3, generator=gen)
    x0 = oracle.denoise(x_start, torch.full((4,), 20.0))
    z = torch.randn(4, 3, generator=gen)
    s = math.sqrt(1 - 0.6**2) * 0.5
    x1 = x0 + (s / 20.0) * (x_start - x0) + 0.6 * math.sqrt(0.5**2 - 0.01**2) * z
    want = oracle.denoise(x1, torch.full((4,), 0.5))
    assert torch.allclose(draw(0.6, torch.Generator().manual_seed(3)), want, rtol=0, atol=1e-6)
    default = consistency_sampler(
        oracle, (4, 3), [20.0, 0.5], generator=torch.Generator().manual_seed(3), sigma_min=0.01
    )
    assert torch.equal(draw(1.0, torch.Generator().manual_seed(3)), default)
    assert not torch.allclose(draw(0.6, torch.Generator().manual_seed(3)), default)
    # γ = 0: nothing random after the start, so any generator state gives the same jumps
    start = torch.randn(4, 3, generator=torch.Generator().manual_seed(5)) * 20.0
    runs = [consistency_sampler(oracle, (4, 3), [20.0, 0.5, 0.1], sigma_min=0.01, gamma=0.0,
                                x=start, generator=torch.Generator().manual_seed(k))
            for k in (0, 1)]  # fmt: skip
    assert torch.equal(runs[0], runs[1])


# --- ncsn distill on a tiny edm run ---------------------------------------------------------

TEACHER = [*TINY_UNET, "model.parameterization=edm", "train.batch_size=16", "train.steps=4"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    run = tmp_path_factory.mktemp("teacher") / "run"
    assert main(["train", "--run-dir", str(run), "--no-progress", *as_cli(TEACHER)]) == 0
    return run


def _tensors(run):
    return load_file(str(checkpoint.list_checkpoints(run / "checkpoints")[-1][1]))


def test_distill_starts_from_the_teacher_and_samples_in_one_and_two_jumps(
    teacher, tmp_path, capsys
):
    out = tmp_path / "student"
    args = ["distill", str(teacher), "--out", str(out), "--steps", "4", "--no-progress",
            "--set", "train.ect_stage_steps=2"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "objective: ect; ECT: ln t ~ N(" in capsys.readouterr().out
    student, sched, cfg, meta = load_run(out)
    assert cfg.model.parameterization == "consistency" and cfg.train.objective == "ect"
    assert cfg.train.init_from == str(teacher) and meta["step"] == 4
    teacher_model, teacher_sched, _, _ = load_run(teacher)
    # the teacher's ladder: the same ends, the same levels up to float32 rounding
    assert (sched.sigmas[0], sched.sigmas[-1]) == (
        teacher_sched.sigmas[0],
        teacher_sched.sigmas[-1],
    )
    assert sched.sigmas == pytest.approx(teacher_sched.sigmas, rel=1e-6)
    assert student.sigma_min == pytest.approx(min(teacher_sched.sigmas))
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(student.denoise(x, student.sigma_min), x)
    for steps in (1, 2):
        images, info = samplers.draw(student, sched, 6, (1, 8, 8), seed=2, sampler="consistency",
                                     steps=steps)  # fmt: skip
        again, _ = samplers.draw(student, sched, 6, (1, 8, 8), seed=2, sampler="consistency",
                                 steps=steps)  # fmt: skip
        assert info["nfe"] == steps and torch.equal(images, again)
        assert torch.isfinite(images).all()


def test_teacher_pairs_load_the_teacher_and_train_differently(teacher, tmp_path, capsys):
    runs = {}
    words = {"noise": "weight 1/(t − r), x_r = x + r·z",
             "teacher": "weight 1/(t − r), x_r = the teacher's Heun step from x_t",
             "teacher3": "weight 1/(t − r), x_r = 3 Heun steps of the teacher from x_t",
             "teacher3u": "weight 1, x_r = 3 Heun steps of the teacher from x_t",
             "teacher3l": "L1, weight 1/(t − r), x_r = 3 Heun steps",
             "teacher3g": "adjacent levels of the grid "}  # fmt: skip
    for name, said in words.items():
        out = tmp_path / name
        weight = "uniform" if name.endswith("u") else "inverse_gap"
        metric = "l1" if name.endswith("l") else "pseudo_huber"
        args = ["distill", str(teacher), "--out", str(out), "--steps", "2", "--no-progress",
                "--set", f"train.ect_pair={name[:7]}",
                "--set", f"train.ect_teacher_steps={3 if 'teacher3' in name else 1}",
                "--set", f"train.ect_weight={weight}",
                "--set", f"train.ect_distance={metric}"]  # fmt: skip
        if name.endswith("g"):
            args += ["--set", "train.ect_grid=[1.0]"]
        assert main(args) == 0
        log = capsys.readouterr().out
        assert ("teacher of the ECT pairs" in log) == (name != "noise")
        assert said in log
        runs[name] = _tensors(out)
        assert main(["info", str(out)]) == 0  # the description, without loading the teacher
        assert said in capsys.readouterr().out
    key = "model.net.conv_out.weight"
    assert not torch.equal(runs["noise"][key], runs["teacher"][key])
    assert not torch.equal(runs["teacher"][key], runs["teacher3"][key])
    assert not torch.equal(runs["teacher3"][key], runs["teacher3u"][key])
    assert not torch.equal(runs["teacher3"][key], runs["teacher3l"][key])
    assert not torch.equal(runs["teacher3"][key], runs["teacher3g"][key])
    images = {}  # the grid run jumps from its grid's level unless --sigma-mid says otherwise
    for mid in ([], ["--sigma-mid", "1.0"], ["--sigma-mid", "0.5"]):
        folder = tmp_path / f"sample{len(images)}"
        assert main(["sample", str(tmp_path / "teacher3g"), "--sampler", "consistency",
                     "--steps", "2", "--n", "4", "--out", str(folder), *mid]) == 0  # fmt: skip
        assert (", 0.5," if mid[1:] == ["0.5"] else ", 1,") in capsys.readouterr().out
        images[tuple(mid)] = np.load(folder / "samples.npz")["images"]
    assert np.array_equal(images[()], images[("--sigma-mid", "1.0")])
    assert not np.array_equal(images[()], images[("--sigma-mid", "0.5")])
    run = ncsn.load(tmp_path / "teacher3g", device="cpu")  # the Python API defaults alike
    drawn = {mid: run.sample(4, sampler="consistency", steps=2, sigma_mid=mid)
             for mid in (None, 1.0, 0.5)}  # fmt: skip
    assert torch.equal(drawn[None], drawn[1.0])
    assert not torch.equal(drawn[None], drawn[0.5])
    # --gamma: the share of fresh noise when re-noising, 1 by default, refused outside [0, 1]
    folder = tmp_path / "sample_gamma"
    assert main(["sample", str(tmp_path / "teacher3g"), "--sampler", "consistency", "--steps", "2",
                 "--n", "4", "--out", str(folder), "--gamma", "0.5"]) == 0  # fmt: skip
    assert ", γ 0.5, start" in capsys.readouterr().out
    with_gamma = np.load(folder / "samples.npz")["images"]
    assert not np.array_equal(with_gamma, images[()])
    api = run.sample(4, sampler="consistency", steps=2, gamma=0.5)
    assert not torch.equal(api, drawn[None])
    assert torch.equal(run.sample(4, sampler="consistency", steps=2, gamma=1.0), drawn[None])
    for bad in ("1.5", "-0.1", "nan"):
        assert main(["sample", str(tmp_path / "teacher3g"), "--sampler", "consistency",
                     "--steps", "2", "--n", "4", "--out", str(tmp_path / "bad"),
                     "--gamma", bad]) == 2  # fmt: skip
        assert f"--gamma {float(bad)}: expected a share of fresh noise from 0 to 1" in (
            capsys.readouterr().err
        )
        assert not (tmp_path / "bad").exists()


@pytest.mark.skipif(cpp_compiler() is None, reason="no C++ compiler")
def test_a_compiled_teacher_trains_the_same_student(teacher, tmp_path, monkeypatch):
    """``train.compile_teacher``: the same pairs from the compiled teacher, up to rounding."""
    compiled, real = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(m) or real(m, **kw))
    runs = {}
    for switch in ("false", "true"):
        out = tmp_path / f"compile_{switch}"
        assert main(["distill", str(teacher), "--out", str(out), "--steps", "2", "--no-progress",
                     "--set", "train.ect_pair=teacher", "--set", "train.ect_teacher_steps=2",
                     "--set", f"train.compile_teacher={switch}"]) == 0  # fmt: skip
        runs[switch] = _tensors(out)
        assert load_run(out)[2].train.compile_teacher == (switch == "true")
        assert len(compiled) == (switch == "true")  # the teacher's network, once
    initial = _tensors(teacher)
    key = "model.net.conv_out.weight"
    assert not torch.equal(runs["true"][key], initial[key])  # the student did learn
    for name, weight in runs["false"].items():
        torch.testing.assert_close(runs["true"][name], weight, rtol=1e-4, atol=1e-5)


def test_compile_teacher_is_refused_without_a_teacher_or_a_cpp_compiler(
    teacher, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "student"
    args = ["distill", str(teacher), "--out", str(out), "--steps", "2", "--no-progress",
            "--set", "train.compile_teacher=true"]  # fmt: skip
    assert main(args) == 2  # ECT's own pairs (train.ect_pair = noise): no teacher to compile
    assert "train.compile_teacher" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CXX", raising=False)
    assert main([*args, "--set", "train.ect_pair=teacher"]) == 2
    assert "train.compile_teacher = true: torch.compile on the CPU needs a C++ compiler" in (
        capsys.readouterr().err
    )
    assert not out.exists()


def test_a_post_hoc_ema_of_the_student_is_a_consistency_model(teacher, tmp_path, capsys):
    out = tmp_path / "student"
    snapshots = ["--set", "train.ema_stds=[0.05,0.1]", "--set", "train.ema_snapshot_every=2"]
    args = ["distill", str(teacher), "--out", str(out), "--steps", "6", "--no-progress"]
    assert main([*args, *snapshots]) == 0
    assert main(["ema", str(out), "--std", "0.08"]) == 0  # between the stored profiles
    assert "σ_rel = 0.08" in capsys.readouterr().out
    posthoc, sched, cfg, meta = load_run(out / "posthoc" / "std-0.080")
    trained, _, _, _ = load_run(out)
    assert cfg.model.parameterization == "consistency" and meta["step"] == 6
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(posthoc.denoise(x, posthoc.sigma_min), x)  # f(x, σ_min) = x still
    weights = dict(posthoc.named_parameters())
    assert any(not torch.equal(w, weights[k]) for k, w in trained.named_parameters())
    images, info = samplers.draw(posthoc, sched, 4, (1, 8, 8), seed=0, sampler="consistency",
                                 steps=2)  # fmt: skip
    assert info["nfe"] == 2 and torch.isfinite(images).all()


def test_loading_a_run_leaves_the_global_generator_alone(teacher):
    """The global generator is training state (checkpoints record it); a distillation loads its
    teacher after a resume restored it."""
    before = torch.get_rng_state()
    load_run(teacher)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("pair", ["noise", "teacher"])
def test_a_resumed_distillation_gives_the_same_bytes(teacher, tmp_path, pair):
    common = [
        "--no-progress",
        "--set",
        "train.ect_stage_steps=2",
        "--set",
        "train.checkpoint_every=3",
        "--set",
        f"train.ect_pair={pair}",
    ]
    assert (
        main(["distill", str(teacher), "--out", str(tmp_path / "once"), "--steps", "6", *common])
        == 0
    )
    split = tmp_path / "split"
    assert main(["distill", str(teacher), "--out", str(split), "--steps", "3", *common]) == 0
    assert main(["distill", str(teacher), "--out", str(split), "--steps", "6", *common]) == 0
    a, b = _tensors(tmp_path / "once"), _tensors(split)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_minutes_stop_with_a_checkpoint_and_a_rerun_continues(teacher, tmp_path, capsys):
    out = tmp_path / "timed"
    args = ["distill", str(teacher), "--out", str(out), "--minutes", "0.0001", "--no-progress"]
    assert main(args) == 0
    first = checkpoint.list_checkpoints(out / "checkpoints")[-1][0]
    assert first >= 1 and "stopped after" in capsys.readouterr().out
    assert main(args) == 0
    assert checkpoint.list_checkpoints(out / "checkpoints")[-1][0] > first


def test_distill_refuses_bad_requests(teacher, tmp_path, capsys):
    s = str(tmp_path / "s")
    cases = [
        (["distill", str(tmp_path / "none"), "--out", s], "run directory not found"),
        (["distill", str(teacher), "--out", str(teacher)], "is the teacher's run directory"),
        (["distill", str(teacher), "--out", s, "--minutes", "-1"], "--minutes -1"),
        (["distill", str(teacher), "--out", s, "--steps", "0"], "--steps 0"),
        (["distill", str(teacher), "--out", s, "--set", "train.ect_q=1"], "train.ect_q = 1"),
        (["distill", str(teacher), "--out", s, "--set", "train.ect_teacher_steps=0"],
         "train.ect_teacher_steps = 0"),
        (["distill", str(teacher), "--out", s, "--set", "train.ect_teacher_steps=65",
          "--set", "train.ect_pair=teacher"], "at most 64"),
        (["distill", str(teacher), "--out", s, "--set", "train.ect_teacher_steps=2"],
         "1 unless train.ect_pair = teacher"),
        (["distill", str(teacher), "--out", s, "--set", "train.ect_weight=snr"],
         "train.ect_weight"),
        (["distill", str(teacher), "--out", s, "--set", "train.ect_distance=lpips"],
         "train.ect_distance"),
        (["distill", str(teacher), "--out", s, "--set", "train.ect_grid=[0.5,1.0]"],
         "train.ect_grid = [0.5, 1.0]: expected at most 64 σ levels, descending"),
        (["distill", str(teacher), "--out", s, "--set", "train.ect_grid=[1000.0]"],
         "train.ect_grid = [1000.0]"),
        (["distill", str(teacher), "--out", s, "--set", "train.ect_grid=[0.0001]"],
         "train.ect_grid = [0.0001]"),
        (["distill", str(teacher), "--out", s, "--set", "train.ect_grid=[.nan]"],
         "train.ect_grid = [nan]"),
        (["distill", str(teacher), "--out", s, "--set", "train.ect_rollout=0.5"],
         "train.ect_rollout = 0.5: expected a number in [0, 1], and 0 unless train.ect_grid"),
        (["distill", str(teacher), "--out", s, "--set", "train.ect_rollout=1.5",
          "--set", "train.ect_grid=[1.0]"], "train.ect_rollout = 1.5"),
    ]  # fmt: skip
    for args, words in cases:
        assert main(args) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # refused before anything was written
    with pytest.raises(SystemExit) as e:
        main(
            [
                "distill",
                str(teacher),
                "--out",
                str(tmp_path / "s"),
                "--steps",
                "3",
                "--minutes",
                "1",
            ]
        )
    assert e.value.code == 2
    noise = tmp_path / "noise"
    assert main(["train", "--run-dir", str(noise), "--no-progress",
                 *as_cli([*TINY_UNET, "train.batch_size=16", "train.steps=1"])]) == 0  # fmt: skip
    assert main(["distill", str(noise), "--out", str(tmp_path / "s2")]) == 2
    assert "needs an edm run" in capsys.readouterr().err
    assert main(["sample", str(teacher), "--sampler", "consistency", "--n", "2"]) == 2
    assert "not a consistency model" in capsys.readouterr().err


def test_ect_and_the_consistency_parameterization_go_together():
    for overrides, field in [
        (["train.objective=ect"], "train.objective"),
        (["model.parameterization=consistency"], "model.parameterization"),
        (["train.objective=ect", "model.parameterization=consistency", "model.net=refinenet"],
         "train.objective"),
        (["train.objective=ect", "model.parameterization=consistency", "train.ect_pair=teacher"],
         "train.ect_pair"),
    ]:  # fmt: skip
        with pytest.raises(NCSNError, match=field):
            config.load(None, overrides)


def test_the_preview_of_a_consistency_model_is_its_two_jump_sampler(teacher, tmp_path):
    """A distillation's preview draws with the consistency sampler at 2 NFE, not annealed
    Langevin's L·T evaluations (which took most of a 15-minute MNIST distillation)."""
    out = tmp_path / "student"
    args = ["distill", str(teacher), "--out", str(out), "--steps", "2", "--no-progress"]
    assert main(args) == 0
    student, sched, _, _ = load_run(out)
    calls = []
    student.net.register_forward_hook(lambda module, inputs, output: calls.append(len(output)))
    save_preview(student, sched, (1, 8, 8), 5, 7, tmp_path / "preview.png")
    assert calls == [5, 5]  # two evaluations of the 5 previewed examples
    assert (tmp_path / "preview.png").stat().st_size > 0
    teacher_model, teacher_sched, _, _ = load_run(teacher)
    calls.clear()
    teacher_model.net.register_forward_hook(lambda module, inputs, output: calls.append(1))
    save_preview(teacher_model, teacher_sched, (1, 8, 8), 5, 7, tmp_path / "teacher.png")
    # annealed Langevin: L·T steps and the final denoising step
    assert len(calls) == teacher_sched.num_levels * teacher_sched.steps_per_level + 1
