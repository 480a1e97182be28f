"""Each sampler's options as a frozen dataclass whose field defaults are the library's defaults
(the command line reads them from here), by sampler name: :data:`OPTIONS`, :func:`options`.
:mod:`ncsn.samplers.run` runs a sampler with them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ncsn.errors import NCSNError
from ncsn.samplers.unipc import ORDER as UNIPC_ORDER


@dataclass(frozen=True)
class ALD:
    """Annealed Langevin (Song & Ermon 2019, Alg. 1). ``eps`` (official convention): None takes
    the run's ε for its own T and the NCSNv2 rule's for another T (:func:`ald_eps`). ``levels``:
    a geometric ladder of that many levels between the run's σ₁ and σ_L instead of the training
    ladder (networks conditioned on σ, not on the level index, only)."""

    eps: float | None = None
    init: str = "uniform"
    denoise_final: bool = True
    levels: int | None = None


@dataclass(frozen=True)
class PC:
    """Predictor–corrector (Song et al. 2021, Alg. 2): M corrector steps at signal-to-noise r."""

    correctors: int = 1
    snr: float = 0.16
    denoise_final: bool = True


@dataclass(frozen=True)
class ODE:
    """Probability-flow ODE, Heun steps on Karras et al.'s ρ ladder (their Alg. 1)."""

    rho: float = 7.0


@dataclass(frozen=True)
class Churn:
    """Heun with churn (Karras et al. 2022, Alg. 2); their ImageNet-64 values, tune for your
    data."""

    rho: float = 7.0
    s_churn: float = 40.0
    s_min: float = 0.05
    s_max: float = 50.0
    s_noise: float = 1.003


@dataclass(frozen=True)
class IPNDM:
    """iPNDM (Zhang & Chen 2023): variable-step Adams–Bashforth of order ≤ ``max_order`` (1–4)
    on the probability-flow ODE, one evaluation per level; ``schedule`` "karras" (spacing ρ) or
    "loguniform"."""

    max_order: int = 4
    rho: float = 7.0
    schedule: str = "karras"


@dataclass(frozen=True)
class DPMpp2M:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), data prediction, one evaluation per level."""

    rho: float = 7.0
    schedule: str = "karras"


@dataclass(frozen=True)
class DPMpp2MSDE:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022; k-diffusion's ``sample_dpmpp_2m_sde``,
    midpoint): noise share η (0: the deterministic 2M)."""

    eta: float = 1.0
    rho: float = 7.0
    schedule: str = "karras"


@dataclass(frozen=True)
class UniPC:
    """UniPC (Zhao et al. 2023) with B(h) = e^h − 1, data prediction: a predictor of order
    ``order`` (1–3) and the corrector that raises it by one, one evaluation per level."""

    order: int = UNIPC_ORDER
    rho: float = 7.0
    schedule: str = "karras"


@dataclass(frozen=True)
class Restart:
    """Restart sampling (Xu et al. 2023, Alg. 1) on the ODE ``solver`` ("heun", the paper's, or
    "dpmpp_2m"): at the first level σ_j ≤ ``restart_min`` (t_min, a σ value, snapped to the
    ladder), ``restarts`` = K times noise up to t_max = ``restart_max`` and ``restart_steps`` = M
    solver steps back down a ρ ladder. Defaults as benchmarks/sampler_screen.py's restart (MNIST
    FD 81 at 25 NFE); tune for your data."""

    rho: float = 7.0
    schedule: str = "karras"
    restart_min: float = 0.1
    restart_max: float = 1.0
    restarts: int = 2
    restart_steps: int = 4
    solver: str = "heun"


@dataclass(frozen=True)
class Consistency:
    """Multistep consistency sampling (Song et al. 2023, Alg. 1) of a consistency model: a jump
    from σ₁, then N − 1 times noise up and jump again, at ``sigma_mid`` for N = 2 and on a ρ
    ladder from ``sigma_mid`` down to σ_L for N > 2. ``sigma_mid`` None: ECT's CIFAR-10 middle
    level 0.821 (Geng et al. 2024, ``ct_train.py --mid_t``) in units of the data:
    0.821·σ_data/0.5. ``gamma``: the share of fresh noise in each re-noising, 0 to 1 (the
    γ-sampling of Kim et al. 2024, "Consistency Trajectory Models"; 1: Song et al.'s)."""

    sigma_mid: float | None = None
    rho: float = 7.0
    gamma: float = 1.0


ECT_MID = 0.821  # Geng et al. 2024: the two-step sampler's middle σ for data with σ_data = 0.5
Options = ALD | PC | ODE | Churn | IPNDM | DPMpp2M | DPMpp2MSDE | UniPC | Restart | Consistency
OPTIONS = {
    "ald": ALD,
    "pc": PC,
    "ode": ODE,
    "churn": Churn,
    "ipndm": IPNDM,
    "dpmpp_2m": DPMpp2M,
    "dpmpp_2m_sde": DPMpp2MSDE,
    "unipc": UniPC,
    "restart": Restart,
    "consistency": Consistency,
}
SAMPLERS = tuple(OPTIONS)
ODE_STEPS = 18  # Karras et al.'s N for CIFAR-10 (35 NFE for Heun): ODE samplers without --steps


def options(name: str, **given) -> Options:
    """The options of sampler ``name`` with the ``given`` values that are its fields and not None
    (the others are the defaults); values meant for other samplers are ignored."""
    cls = options_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in given.items() if k in fields and v is not None})


def options_class(name: str) -> type:
    if name not in OPTIONS:
        raise NCSNError(f"sampler {name!r}: expected one of {', '.join(SAMPLERS)}")
    return OPTIONS[name]
