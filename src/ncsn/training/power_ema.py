"""Power-function EMA profiles and their post-hoc reconstruction (Karras et al. 2024, EDM2 §3).

A power-function EMA with exponent γ averages the weights θ_τ of steps τ ≤ t with the profile
p_t(τ) = (γ + 1) τ^γ / t^(γ+1) (EDM2 Eq. 2): the discrete update is
θ̂_t = β_t θ̂_{t−1} + (1 − β_t) θ_t with β_t = (1 − 1/t)^(γ+1) (EDM2 Eq. 3), so its length grows
with training. Profiles are named by their relative standard deviation σ_rel, the width of p_t
relative to t (EDM2 Eq. 4): σ_rel² = (γ + 1) / ((γ + 2)² (γ + 3)).

Training tracks a few profiles (``train.ema_stds``, e.g. 0.05 and 0.10) and writes their
averages every ``train.ema_snapshot_every`` steps to ``RUN/ema/pema-<step>.safetensors`` (the
step in 8 digits). Any
other profile (σ_rel, t) is then approximated by a linear combination of the snapshots whose
profiles are closest to it in L² over τ (EDM2 §3.2 and Appendix C.2): the Gram matrix of the
stored profiles, the same products with the target, one least-squares solve. The relative L²
error of the fitted profile is reported; past ``MAX_PROFILE_ERROR`` the reconstruction is refused.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

import ncsn.checkpoint as checkpoint
import ncsn.files as files
from ncsn.errors import NCSNError
from ncsn.limits import MAX_EMA_STD

MAX_STD = MAX_EMA_STD  # σ_rel at γ = 0: the plain running mean, the longest profile kept
MAX_PROFILE_ERROR = 0.1  # relative L² error of a reconstructed profile beyond which we refuse
SNAPSHOT_DIR = "ema"
_PREFIX = "pema-"


def std_of(gamma: float) -> float:
    """σ_rel of the power-function profile with exponent γ (EDM2 Eq. 4)."""
    return math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))


def exponent(std: float) -> float:
    """The exponent γ ≥ 0 whose profile has relative standard deviation ``std``: the largest
    real root of σ²(γ + 2)²(γ + 3) − (γ + 1) = 0, i.e. EDM2 Eq. 4 solved for γ."""
    if not 0 < std <= MAX_STD:
        raise ValueError(f"σ_rel = {std}: expected 0 < σ_rel ≤ {MAX_STD:.4f}")
    s2 = std * std
    roots = np.roots([s2, 7 * s2, 16 * s2 - 1, 12 * s2 - 1])  # σ²(γ³ + 7γ² + 16γ + 12) − γ − 1
    return float(max(r.real for r in roots if abs(r.imag) < 1e-9))


class PowerEMA:
    """The tracked power-function averages of a model's parameters, one per σ_rel."""

    def __init__(self, params: list[torch.Tensor], stds: list[float]):
        self.stds = [float(s) for s in stds]
        self.gammas = [exponent(s) for s in self.stds]
        self.averages = [[p.detach().clone() for p in params] for _ in self.stds]

    @torch.no_grad()
    def update(self, params: list[torch.Tensor], step: int, skip: torch.Tensor) -> None:
        """Fold in the weights after training step ``step`` (1-based), unless ``skip``."""
        for gamma, average in zip(self.gammas, self.averages, strict=True):
            rate = 1.0 - (1.0 - 1.0 / step) ** (gamma + 1)  # 1 − β_t, EDM2 Eq. 3
            weight = rate - rate * skip
            torch._foreach_lerp_(average, params, [weight] * len(average))

    def tensors(self, names: list[str]) -> dict[str, torch.Tensor]:
        """The averages as ``pema.<i>.<parameter name>`` (for checkpoints and snapshots)."""
        return {
            f"pema.{i}.{name}": t
            for i, average in enumerate(self.averages)
            for name, t in zip(names, average, strict=True)
        }

    def load(self, tensors: dict[str, torch.Tensor], names: list[str], path: Path) -> None:
        try:
            for i, average in enumerate(self.averages):
                for name, t in zip(names, average, strict=True):
                    t.copy_(tensors[f"pema.{i}.{name}"])
        except (KeyError, RuntimeError) as e:
            raise NCSNError(
                f"{path}: the checkpoint lacks the power-EMA averages train.ema_stds = "
                f"{self.stds} asks for ({type(e).__name__}: {str(e)[:200]})"
            ) from None

    def snapshot(self, run_dir: Path, names: list[str], step: int) -> Path:
        """Write the averages at ``step`` to RUN/ema/pema-<step, 8 digits>.safetensors
        (atomically)."""
        folder = Path(run_dir) / SNAPSHOT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_PREFIX}{step:08d}.safetensors"
        meta = {"step": step, "stds": self.stds, "gammas": self.gammas}
        checkpoint.save(path, {k: v.detach().cpu() for k, v in self.tensors(names).items()}, meta)
        return path


def list_snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's power-EMA snapshots, in step order."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    found = []
    for p in folder.glob(f"{_PREFIX}*.safetensors") if folder.is_dir() else []:
        digits = p.name[len(_PREFIX) : -len(".safetensors")]
        if digits.isdigit():
            found.append((int(digits), p))
    return sorted(found)


def profile_products(t_a, gamma_a, t_b, gamma_b) -> np.ndarray:
    """⟨p_a, p_b⟩ = ∫ p_a(τ) p_b(τ) dτ of profiles p(τ) = (γ + 1) τ^γ / t^(γ+1) on [0, t]: with
    m = min(t_a, t_b), (γ_a + 1)(γ_b + 1) / (γ_a + γ_b + 1) · (m/t_a)^(γ_a+1) (m/t_b)^(γ_b+1) / m
    (written with ratios so that large γ cannot overflow). Broadcasts over arrays."""
    t_a, g_a, t_b, g_b = (np.asarray(v, dtype=np.float64) for v in (t_a, gamma_a, t_b, gamma_b))
    m = np.minimum(t_a, t_b)
    scale = (g_a + 1) * (g_b + 1) / (g_a + g_b + 1)
    return scale * (m / t_a) ** (g_a + 1) * (m / t_b) ** (g_b + 1) / m


def coefficients(
    steps: list[int], gammas: list[float], target_step: int, target_gamma: float
) -> tuple[np.ndarray, float]:
    """Least-squares weights c of the stored profiles (``steps``[i], ``gammas``[i]) for the target
    profile (EDM2 App. C.2), and the fit's relative L² error ‖Σ cᵢ pᵢ − p‖ / ‖p‖."""
    t = np.asarray(steps, dtype=np.float64) / target_step  # in units of the target time
    g = np.asarray(gammas, dtype=np.float64)
    gram = profile_products(t[:, None], g[:, None], t[None, :], g[None, :])
    b = profile_products(t, g, 1.0, target_gamma)
    c = np.linalg.lstsq(gram, b, rcond=1e-12)[0]
    return c, _fit_error(c, t, g, target_gamma)


def _profile(tau: np.ndarray, t, gamma) -> np.ndarray:
    """p_t(τ) = (γ + 1)/t · (τ/t)^γ on [0, t], 0 after (EDM2 Eq. 2, written with the ratio)."""
    return np.where(tau <= t, (gamma + 1) / t * (np.minimum(tau / t, 1.0) ** gamma), 0.0)


def _fit_error(c: np.ndarray, t: np.ndarray, g: np.ndarray, target_gamma: float) -> float:
    """‖Σ cᵢ pᵢ − p‖ / ‖p‖ (the target p at t = 1), integrating the residual function itself:
    Gauss–Legendre on each piece between the profiles' ends, where every pᵢ is smooth. From the
    Gram matrix (‖p‖² − 2c·b + cᵀGc) it cancels to √ε ≈ 1e-8 of ‖p‖, float64 noise that hid
    smaller errors; pointwise the residual is accurate to about ε·Σ|cᵢ pᵢ|."""
    nodes, weights = np.polynomial.legendre.leggauss(48)
    ends = np.unique(np.concatenate([[0.0, 1.0], t]))
    a, b = ends[:-1, None], ends[1:, None]
    tau = ((a + b) / 2 + (b - a) / 2 * nodes).ravel()  # every piece's nodes
    w = ((b - a) / 2 * weights).ravel()
    residual = c @ _profile(tau[None, :], t[:, None], g[:, None]) - _profile(tau, 1.0, target_gamma)
    norm2 = float(profile_products(1.0, target_gamma, 1.0, target_gamma))
    return math.sqrt(float(w @ residual**2) / norm2)


def reconstruct(run_dir: Path, std: float, step: int | None = None) -> tuple[dict, dict]:
    """The parameters averaged with profile σ_rel = ``std`` at ``step`` (default: the last
    snapshot), from the snapshots up to that step: ({parameter name: tensor}, a summary with
    the coefficients and the profile error). NCSNError when there are no snapshots, the std is
    out of range, or the stored profiles cannot reconstruct it within ``MAX_PROFILE_ERROR``."""
    run_dir = Path(run_dir)
    found = list_snapshots(run_dir)
    if not found:
        raise NCSNError(
            f"{run_dir}: no power-EMA snapshots in {run_dir / SNAPSHOT_DIR} (train with "
            "train.ema_stds, e.g. [0.05, 0.1], to record them)"
        )
    if not 0 < std <= MAX_STD:
        raise NCSNError(f"--std {std}: expected 0 < std ≤ {MAX_STD:.4f} (EDM2's σ_rel)")
    step = found[-1][0] if step is None else step
    used = [(s, p) for s, p in found if s <= step]
    if not used:
        raise NCSNError(f"--step {step}: the first power-EMA snapshot is at step {found[0][0]}")
    rows = []  # (step, gamma, snapshot index, profile index); a file at a time: bounded memory
    for k, (s, path) in enumerate(used):
        rows += [(s, gamma, k, i) for i, gamma in enumerate(checkpoint.load(path)[1]["gammas"])]
    target = exponent(std)
    c, error = coefficients([r[0] for r in rows], [r[1] for r in rows], step, target)
    stored = sorted({round(std_of(r[1]), 6) for r in rows})
    if error > MAX_PROFILE_ERROR:
        steps_, gammas_ = [r[0] for r in rows], [r[1] for r in rows]
        grid = np.geomspace(0.002, MAX_STD, 200)
        ok = [
            g
            for g in grid
            if coefficients(steps_, gammas_, step, exponent(g))[1] <= MAX_PROFILE_ERROR
        ]
        hint = f"from {ok[0]:.3g} to {ok[-1]:.3g}" if ok else "none: train longer"
        raise NCSNError(
            f"--std {std}: the stored profiles (σ_rel {stored}, {len(used)} snapshots up to step "
            f"{step}) reconstruct it only to a relative L² error of {error:.3f} (at most "
            f"{MAX_PROFILE_ERROR}); the stds they can reconstruct run {hint}"
        )
    weights: dict[str, torch.Tensor] = {}  # Σ cᵢ θ̂ᵢ in float64, one snapshot file at a time
    for k, (_, path) in enumerate(used):
        tensors = checkpoint.load(path)[0]
        for coef, (_, _, _, i) in ((c_, r) for c_, r in zip(c, rows, strict=True) if r[2] == k):
            prefix = f"pema.{i}."
            for key, tensor in tensors.items():
                if key.startswith(prefix):
                    name = key[len(prefix) :]
                    term = float(coef) * tensor.double()
                    weights[name] = weights[name] + term if name in weights else term
    weights = {k: v.float() for k, v in weights.items()}
    summary = {
        "std": std,
        "gamma": target,
        "step": step,
        "profile_error": error,
        "snapshots": len(used),
        "stored_stds": stored,
    }
    return weights, summary


def write(run_dir: Path, std: float, out: Path, step: int | None = None) -> tuple[Path, dict]:
    """Write the run's weights averaged with σ_rel = ``std`` as a sampling-only run in ``out``
    (its checkpoint holds those weights as ``ema.*``, so every sampler and ``ncsn sample`` use
    them; config.yaml and schedule.json are copied) or, when ``out`` ends in ``.safetensors``,
    as that one checkpoint file. Returns (checkpoint path, the reconstruction's summary)."""
    run_dir, out = Path(run_dir), Path(out)
    weights, summary = reconstruct(run_dir, std, step)
    found = checkpoint.list_checkpoints(run_dir / "checkpoints")
    if not found:
        raise NCSNError(f"{run_dir}: no checkpoint to take the config and schedule from")
    tensors, meta = checkpoint.load(found[-1][1])
    buffers = {k: v for k, v in tensors.items() if k.startswith("ema.")}
    missing = [k for k in weights if f"ema.{k}" not in buffers]
    if missing:
        raise NCSNError(
            f"{run_dir}: the snapshots hold parameters the checkpoint lacks ({missing[:3]}): "
            "they belong to another model"
        )
    slim = buffers | {f"ema.{k}": v for k, v in weights.items()}
    meta = meta | {"step": summary["step"], "posthoc_ema": summary, "source_run": str(run_dir)}
    if out.suffix == ".safetensors":
        target = out
        target.parent.mkdir(parents=True, exist_ok=True)
    else:
        target = checkpoint.path_for(out / "checkpoints", summary["step"])
        others = [p for _, p in checkpoint.list_checkpoints(out / "checkpoints") if p != target]
        if others:
            raise NCSNError(
                f"--out {out}: already holds other checkpoints ({others[0].name}); choose a new "
                "folder"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        for name in ("config.yaml", "schedule.json"):
            if (run_dir / name).is_file():
                files.atomic_write_bytes(out / name, (run_dir / name).read_bytes())
    checkpoint.save(target, slim, meta)
    return target, summary
