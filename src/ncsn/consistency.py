"""Easy Consistency Tuning (ECT: Geng et al. 2024, "Consistency Models Made Easy"): the objective
that turns a trained EDM denoiser into a consistency function f(x, σ) (``model.parameterization
= consistency``, whose f(x, σ_min) = x exactly), used by ``ncsn distill``.

Per example (ECT §3 and their training/loss.py, ``ECMLoss``):
- t with ln t ~ N(P_mean, P_std²), clamped to the ladder's [σ_min, σ₁];
- r = max(σ_min, t − Δt), Δt = t·n(t)/q^(s+1), n(t) = 1 + k·sigmoid(−b·t) (their "sigmoid"
  mapping), s = ⌊step / d⌋ the stage: every d steps Δt shrinks by q, so r approaches t and the
  target moves from "the clean data" (r = σ_min) towards the model's own nearer level;
- one noise z for both levels: x_t = x + t·z, x_r = x + r·z;
- the target f_θ⁻(x_r, r) is the same network without gradient, with the same dropout mask;
- ``train.ect_pair = teacher`` replaces ECT's x_r by consistency *distillation*'s (Song et al.
  2023, "Consistency Models", Algorithm 2, with Heun's method as the ODE solver Φ, as there for
  EDM teachers): x_r = one Heun step of the teacher's probability-flow ODE
  dx/dσ = (x − D(x, σ))/σ (Karras et al. 2022, Alg. 1) from (x_t, t) to r, the teacher being
  the frozen EMA weights of ``train.init_from``; two teacher evaluations per example, and a
  target on x_t's own ODE trajectory instead of a one-sample estimate of it;
  ``train.ect_teacher_steps`` = K > 1 takes K Heun steps from t to r instead, over Karras et
  al.'s ρ = 7 ladder between them (their Eq. 5), 2K evaluations: a large Δt (small q; q → 1
  makes r = σ_min, the ODE's end) with the solver's error of a small one;
- the loss w(t, r)·d(f_θ(x_t, t), f_θ⁻(x_r, r)) with w = 1/(t − r) (ECT's CIFAR-10 weighting,
  "the 1/Δt weighting") and the pseudo-Huber distance d(a, b) = √(‖a − b‖² + c²) − c
  (Song & Dhariwal 2023, "Improved Techniques for Training Consistency Models", §3.3);
  mean over the batch. An example with t = σ_min (r = t) has weight 0. ``train.ect_weight =
  uniform`` takes w = 1 instead, consistency distillation's λ(t_n) ≡ 1 (Song et al. 2023, §3,
  their choice in every experiment): 1/(t − r) suits a chain of small gaps, whose differences
  shrink with the gap; with teacher pairs over large gaps (Δt ∝ t) it is ∝ 1/t and weights σ₁,
  where the sampler's first jump starts, several times less than σ_mid (8× on MNIST, q = 2).
  ``train.ect_distance = l1`` takes d(a, b) = ‖a − b‖₁ instead of pseudo-Huber, one of the metrics
  consistency distillation compares (ibid., §3 and §6: ℓ₂, ℓ₁, LPIPS).
- ``train.ect_grid`` = [g₁, …] replaces ECT's continuous t and its stages by consistency
  distillation's discrete grid (Song et al. 2023, Algorithm 2: n ~ U[1, N − 1], the pair
  (t_{n+1}, t_n) of adjacent levels) on the levels σ₁ > g₁ > … > σ_min: t is one of σ₁, g₁, …
  with equal probability and r the next level below it. With the 2-NFE sampler's middle level
  as the one g (``--set train.ect_grid=[1.0]``, ``ncsn sample --sigma-mid 1.0``), every example
  trains one of the sampler's two jumps: σ₁ towards the student's own jump from g, g towards
  the teacher's solve to σ_min (ECT's lognormal t, P_mean 0 and P_std 2 on MNIST, clips about
  8% of the examples to σ₁ and puts about 9% within a factor 1.25 of 1.0). P_mean, P_std, q,
  k, b and the stages are then unused. A run distilled on a grid samples from its first level
  by default (:func:`trained_mid`). ``train.ect_rollout`` = p (ours, off by default) trains a
  share p of the pairs below σ₁ on the student's own first-jump draws (:func:`_rollout`).

Constants, from ECT (data in [−1, 1], σ_d = 0.5) moved to our data by its σ_data, as
``train.p_mean = auto`` moves EDM's (noise_levels.py): σ is measured in units of the data's
spread, so a σ of theirs is σ·σ_data/0.5 of ours.

- P_mean, P_std: ECT's −1.1, 2.0 (``ct_train.py`` defaults); here ``train.p_mean = auto`` is
  −1.1 + ln(σ_data/0.5) and ``ncsn distill`` sets ``train.p_std`` = 2.0;
- q, k: ECT's 2 and 8 (``train.ect_q``, ``train.ect_k``);
- b: ECT's 1; ``train.ect_b = auto`` is 0.5/σ_data, the same sigmoid in units of the data;
- c: 0 in ECT's CIFAR-10 runs (the plain L2 norm), iCT's 0.00054·√D; ``train.ect_c = auto`` is
  0.00054·√D·σ_data/0.5;
- d, steps per stage: ECT's 500 ticks of 50 kimg (8 stages in 200 Mimg);
  ``train.ect_stage_steps`` = 200 here, 5–6 stages in 15 CPU-minutes on MNIST.
- ECT's short-budget run (``run_ecm_1hour.sh``: ``-q 256 --double 10000`` over 2,000 ticks)
  instead keeps a single stage with q = 256, Δt = t·n(t)/256 from the first step:
  ``--set train.ect_q=256 --set train.ect_stage_steps=1000000000`` (docs/benchmarks.md, issue
  16, compares the two on MNIST).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import torch

from ncsn.errors import NCSNError
from ncsn.noise_levels import EDM_SIGMA_DATA
from ncsn.schedule import append_dims, karras_sigmas

ECT_P_MEAN, ECT_P_STD = -1.1, 2.0  # Geng et al. 2024, ct_train.py defaults (σ_d = 0.5)
ECT_Q, ECT_K, ECT_B = 2.0, 8.0, 1.0  # ibid., the sigmoid mapping's q, k, b
ICT_C = 0.00054  # Song & Dhariwal 2023, §3.3: c = 0.00054·√D for data in [−1, 1]


@dataclass(frozen=True)
class ECT:
    """ECT's constants, on our data's scale (see the module docstring)."""

    sigma_min: float
    sigma_max: float
    p_mean: float
    p_std: float
    q: float
    k: float
    b: float
    c: float
    stage_steps: int
    pair: str = "noise"  # train.ect_pair: x_r = x + r·z, or the teacher's Heun steps
    teacher: torch.nn.Module | None = None  # pair teacher: the frozen denoiser D (training)
    teacher_steps: int = 1  # pair teacher: Heun steps from t to r
    weight: str = "inverse_gap"  # train.ect_weight: w(t, r) = 1/(t − r), or 1 ("uniform")
    metric: str = "pseudo_huber"  # train.ect_distance: d = pseudo-Huber, or "l1" (Σ|a − b|)
    grid: tuple[float, ...] = ()  # train.ect_grid: CD's levels between σ₁ and σ_min, or ()
    rollout: float = 0.0  # train.ect_rollout: share of the pairs below σ₁ on the student's draws

    def draw_pairs(self, n: int, step: int, generator: torch.Generator, device, dtype):
        """(t, r) for ``n`` examples at training step ``step``: ECT's lognormal t and its r(t)
        in the current stage, or, with a grid, adjacent levels of σ₁ > g₁ > … > σ_min."""
        if not self.grid:
            t = self.draw_t(n, generator, device, dtype)
            return t, self.r(t, self.stage(step))
        levels = _levels((self.sigma_max, *self.grid, self.sigma_min), device, dtype)
        i = torch.randint(len(levels) - 1, (n,), generator=generator, device=device)
        return levels[i], levels[i + 1]

    def stage(self, step: int) -> int:
        """s = ⌊step / d⌋: how many times Δt has shrunk by q."""
        return step // self.stage_steps

    def r(self, t: torch.Tensor, stage: int) -> torch.Tensor:
        """r(t) = max(σ_min, t − t·n(t)/q^(s+1)), n(t) = 1 + k·sigmoid(−b·t) (ECT's mapping)."""
        n = 1.0 + self.k * torch.sigmoid(-self.b * t)
        return torch.clamp(t - t * n / self.q ** (stage + 1), min=self.sigma_min)

    def draw_t(self, n: int, generator: torch.Generator, device, dtype) -> torch.Tensor:
        """t with ln t ~ N(P_mean, P_std²), clamped to [σ_min, σ₁]."""
        z = torch.randn(n, generator=generator, device=device, dtype=dtype)
        return torch.exp(self.p_mean + self.p_std * z).clamp(self.sigma_min, self.sigma_max)

    def weigh(self, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """w(t, r) per example: 1/(t − r) (ECT) or 1 (CD's λ ≡ 1); 0 where r = t (t = σ_min)."""
        gap = t - r
        if self.weight == "uniform":
            return (gap > 0).to(gap.dtype)
        return torch.where(gap > 0, 1.0 / gap.clamp(min=torch.finfo(gap.dtype).tiny), 0.0)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Pseudo-Huber d(a, b) = √(‖a − b‖² + c²) − c per example, or ‖a − b‖₁."""
        if self.metric == "l1":
            return (a - b).abs().flatten(1).sum(1)
        squared = (a - b).pow(2).flatten(1).sum(1)
        return torch.sqrt(squared + self.c**2) - self.c

    def describe(self) -> str:
        if self.grid:
            levels = ", ".join(f"{v:.4g}" for v in (self.sigma_max, *self.grid, self.sigma_min))
            pairs = f"ECT: (t, r) adjacent levels of the grid {levels}, "
            if self.rollout > 0:
                pairs += f"{self.rollout:g} of the pairs below σ₁ on the student's own draws, "
        else:
            pairs = (
                f"ECT: ln t ~ N({self.p_mean:.4g}, {self.p_std:.4g}²) on [{self.sigma_min:.4g}, "
                f"{self.sigma_max:.4g}], r = t − t·(1 + {self.k:g}·sigmoid(−{self.b:.4g} t))/"
                f"{self.q:g}^(stage + 1), stage = step // {self.stage_steps}, "
            )
        return (
            pairs
            + (f"pseudo-Huber c {self.c:.4g}" if self.metric == "pseudo_huber" else "L1")
            + f", weight {'1/(t − r)' if self.weight == 'inverse_gap' else '1'}, x_r = "
            + ("x + r·z" if self.pair == "noise" else self._teacher_text())
        )

    def _teacher_text(self) -> str:
        if self.teacher_steps == 1:
            return "the teacher's Heun step from x_t"
        return f"{self.teacher_steps} Heun steps of the teacher from x_t (ρ = 7 ladder)"


@functools.lru_cache(maxsize=8)
def _levels(values: tuple[float, ...], device, dtype) -> torch.Tensor:
    """The grid's levels as a tensor, made once per device and dtype: a training step would
    otherwise copy them from the host (a blocking copy on a GPU). Read, never written."""
    return torch.tensor(values, device=device, dtype=dtype)


def trained_mid(t) -> float | None:
    """The 2-NFE sampler's middle σ that a run with train config ``t`` was distilled for: the
    first level of ``train.ect_grid``; None without a grid (the sampler's default, ECT's)."""
    return t.ect_grid[0] if t.ect_grid else None


def from_config(t, sigmas: list[float], sigma_data: float, dim: int, teacher=None) -> ECT:
    """The ECT constants a TrainConfig asks for, ``auto`` resolved for data of pixel standard
    deviation ``sigma_data`` and ``dim`` values per example, on the ladder ``sigmas``;
    ``teacher`` for ``train.ect_pair = teacher`` (None where only the description is needed)."""
    scale = sigma_data / EDM_SIGMA_DATA
    if t.ect_grid and not t.ect_grid[0] < max(sigmas):  # (limits.py checked the rest)
        raise NCSNError(
            f"train.ect_grid = {t.ect_grid}: expected levels below σ₁ = {max(sigmas):.6g}"
        )
    return ECT(
        sigma_min=float(min(sigmas)),
        sigma_max=float(max(sigmas)),
        p_mean=t.p_mean if t.p_mean != "auto" else ECT_P_MEAN + math.log(scale),
        p_std=t.p_std,
        q=t.ect_q,
        k=t.ect_k,
        b=t.ect_b if t.ect_b != "auto" else ECT_B / scale,
        c=t.ect_c if t.ect_c != "auto" else ICT_C * math.sqrt(dim) * scale,
        stage_steps=t.ect_stage_steps,
        pair=t.ect_pair,
        teacher=teacher,
        teacher_steps=t.ect_teacher_steps,
        weight=t.ect_weight,
        metric=t.ect_distance,
        grid=tuple(t.ect_grid),
        rollout=t.ect_rollout,
    )


def ect_loss(
    model,
    x: torch.Tensor,
    ect: ECT,
    *,
    step: int,
    generator: torch.Generator,
    shard: tuple[int, int] = (0, 1),
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """ECT's loss on the batch ``x`` at training step ``step`` (module docstring).

    ``model(x, σ)`` is the score of a consistency model, s = (f − x)/σ², so f = x + σ²·s: the
    call goes through the model's forward (DistributedDataParallel and torch.compile see it).
    ``shard`` as in :func:`ncsn.objectives.dsm_loss`.
    """
    rank, world = shard
    n = x.shape[0] * world
    t, r = ect.draw_pairs(n, step, generator, x.device, x.dtype)
    z = torch.randn((n, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)
    t, r, z = t.chunk(world)[rank], r.chunk(world)[rank], z.chunk(world)[rank]
    extra = () if labels is None else (labels,)
    if ect.rollout > 0:
        x = _rollout(model, x, t, ect, n, generator, shard, extra)
    x_t = x + append_dims(t, x.dim()) * z
    dropout_state = _rng_state(x.device)
    f_t = _consistency(model, x_t, t, extra)
    with torch.no_grad():  # the target: the same network, the same dropout mask, no gradient
        if ect.pair == "noise":
            x_r = x + append_dims(r, x.dim()) * z
        else:
            x_r = teacher_solve(ect.teacher, x_t, t, r, ect.teacher_steps, extra)
        _set_rng_state(x.device, dropout_state)
        f_r = _consistency(model, x_r, r, extra)
    return (ect.weigh(t, r) * ect.distance(f_t, f_r.detach())).mean()


def _rollout(model, x, t, ect: ECT, n: int, generator, shard, extra) -> torch.Tensor:
    """``train.ect_rollout`` = p: each example whose pair starts below σ₁ keeps its training
    image with probability 1 − p; otherwise its clean image is the student's own one-jump draw
    f_θ⁻(x + σ₁·z′, σ₁) (no gradient; the same network as the target). Ours, not ECT's or CD's:
    the 2-NFE sampler evaluates its second jump on f(·, σ₁)'s draws re-noised to σ_mid, not on
    training images re-noised (docs/benchmarks.md, issue 16, measured it: the student's second
    jump costs more after its own first jump than after the teacher's). The pair, its target and
    the loss are made from the moved image as from a training image (with teacher pairs, the
    teacher's solve from wherever x_t lies)."""
    rank, world = shard
    u = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype).chunk(world)[rank]
    z1 = torch.randn((n, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)
    z1 = z1.chunk(world)[rank]
    take = (t < ect.sigma_max) & (u < ect.rollout)
    # only the moved examples are evaluated (a share p/2 with the grid [1.0]; the whole batch
    # would add one forward of it, about 7% of the step on the CPU): the mask's size is read on
    # the host once per step, an empty one included (an empty batch goes through the network)
    sigma1 = torch.full_like(t[take], ect.sigma_max)
    with torch.no_grad():
        drawn = _consistency(model, x[take] + ect.sigma_max * z1[take], sigma1,
                             tuple(e[take] for e in extra))  # fmt: skip
    x = x.clone()
    x[take] = drawn
    return x


def teacher_solve(teacher, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor, steps: int, extra=()):
    """``steps`` Heun steps of the teacher's ODE from σ = t to σ = r per example, over Karras et
    al.'s (2022, Eq. 5) ρ = 7 levels between t and r: σ_k = (t^(1/ρ) + k/K·(r^(1/ρ) − t^(1/ρ)))^ρ,
    with σ_0 = t and σ_K = r exactly (so one step is :func:`heun_step` from t to r)."""
    # the schedule's ladder, per example (tensors t, r); its inner levels only: the ends are
    # t and r themselves, not (t^(1/ρ))^ρ, and its trailing 0 is not a level here
    levels = [t, *karras_sigmas(t, r, steps + 1)[1:-2], r]
    for high, low in itertools.pairwise(levels):
        x = heun_step(teacher, x, high, low, extra)
    return x


def heun_step(teacher, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor, extra=()):
    """One Heun step of dx/dσ = (x − D(x, σ))/σ from σ = t to σ = r, per example (Karras et al.
    2022, Algorithm 1, lines 5–8; r > 0 here, so the second-order correction always applies).
    Not :func:`ncsn.samplers.ode.heun_step`: that one takes one scalar σ for the whole batch
    (and branches on σ = 0 on the host), here every example has its own t, r and label."""
    t_, r_ = append_dims(t, x.dim()), append_dims(r, x.dim())
    d = (x - teacher.denoise(x, t, *extra).to(x.dtype)) / t_
    x_euler = x + (r_ - t_) * d
    d_r = (x_euler - teacher.denoise(x_euler, r, *extra).to(x.dtype)) / r_
    return x + (r_ - t_) * (d + d_r) / 2


def _consistency(model, x_noisy: torch.Tensor, sigma: torch.Tensor, extra) -> torch.Tensor:
    """f(x, σ) = x + σ²·s(x, σ) from the model's forward (the score)."""
    s = append_dims(sigma, x_noisy.dim())
    return x_noisy + s * s * model(x_noisy, sigma, *extra).to(x_noisy.dtype)


def _rng_state(device: torch.device):
    """The generator dropout draws from (the global one of ``device``)."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng_state(device: torch.device, state) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)
