"""Few-step sampler variants screened on the MNIST benchmark model (issue 5); what FD is made of.

Issue 5 asks for a sampler at ≤ 50 NFE that matches annealed Langevin at ~1,000 NFE. The library's
samplers (benchmarks/results/mnist/sets.md) do not, so this script tries variants *outside* the
library, one seed per row, on the same model and with the same score (domain FD of 1,000 samples
against the 2,000 held-out digits); a variant that came close would then move into
``ncsn.samplers`` and be measured with three seeds by benchmarks/sample_sets.py. Variants (D is the
Tweedie denoiser of the trained model, σ_i the Karras et al. 2022 ρ-spaced ladder, Eq. 5):

- ``churn``: Karras et al. 2022 Algorithm 2 (Heun; ``--euler`` drops the 2nd-order correction);
- ``ancestral``: the DDPM posterior step in variance-exploding form (Ho et al. 2020 Eq. 7; DDIM
  η = 1, Song et al. 2021 Eq. 12): x ← D + (σ_down/σ_i)(x − D) + σ_up z with
  σ_up² = σ_{i+1}²(σ_i² − σ_{i+1}²)/σ_i², σ_down² = σ_{i+1}² − σ_up²;
- ``heun-lc``: Heun predictor (Karras Alg. 1) and one Langevin corrector with the snr rule
  (Song et al. 2021 Alg. 4) at each σ_{i+1};
- ``langevin``: T Langevin steps per ρ-spaced level with α = c σ_i² (Song & Ermon 2019 Alg. 1 on a
  coarse ladder), then D at the last level;
- ``restart``: Restart sampling (Xu et al. 2023 Alg. 1): Heun ODE down to t_min, then K times: add
  noise from t_min to t_max and solve the ODE back; then the ODE to 0.

``--split SETS.npz ...`` splits the FD of sample sets (from sample_sets.py) into its mean term
‖μ₁ − μ₂‖² and covariance term (Heusel et al. 2017 Eq. 6), reports the same for real training
digits (the floor), and scores every set against the *training* digits too (the distribution the
model learned; the 1,000 floor digits are left out of that reference).

    python benchmarks/sampler_screen.py churn --steps 10 --seed 0 --out screen.jsonl
    python benchmarks/sampler_screen.py --split SETS/*.npz --out fd_split.json
    python benchmarks/sampler_screen.py --smoke      # every variant on an exact Gaussian denoiser
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ncsn.files import atomic_write_bytes
from ncsn.schedule import karras_sigmas

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks/results/mnist/runs/_slim/default-3014"
CLASSIFIER = REPO / "benchmarks/results/mnist/classifier.safetensors"
DATA = REPO.parent / "shared/data/mnist"
VARIANTS = ("churn", "ancestral", "heun-lc", "langevin", "restart")


def heun(D, x, sigmas):
    """Heun's method for dx/dσ = (x − D(x, σ))/σ over descending ``sigmas`` (Karras Alg. 1)."""
    for s, t in zip(sigmas[:-1], sigmas[1:], strict=True):
        d = (x - D(x, s)) / s
        x_next = x + (t - s) * d
        if t != 0:
            x_next = x + (t - s) * 0.5 * (d + (x_next - D(x_next, t)) / t)
        x = x_next
    return x


def sample(variant: str, D, shape, a: argparse.Namespace, g: torch.Generator) -> torch.Tensor:
    """One variant; every random draw from ``g``, the first being the starting noise σ₀ z."""

    def noise(x):
        return torch.randn(x.shape, generator=g)

    sig = karras_sigmas(a.sigma_max, a.end, a.steps, a.rho)
    x = sig[0] * torch.randn(shape, generator=g)
    if variant == "churn":  # Karras et al. 2022, Algorithm 2
        n = len(sig) - 1
        for s, t in zip(sig[:-1], sig[1:], strict=True):
            gamma = min(a.s_churn / n, math.sqrt(2) - 1) if a.s_min <= s <= a.s_max else 0.0
            s_hat = s * (1 + gamma)
            if gamma > 0:
                x = x + math.sqrt(s_hat**2 - s**2) * a.s_noise * noise(x)
            d = (x - D(x, s_hat)) / s_hat
            x_next = x + (t - s_hat) * d
            if t != 0 and not a.euler:
                x_next = x + (t - s_hat) * 0.5 * (d + (x_next - D(x_next, t)) / t)
            x = x_next
    elif variant == "ancestral":  # DDPM posterior step, VE form (DDIM η)
        for s, t in zip(sig[:-1], sig[1:], strict=True):
            x0 = D(x, s)
            if t == 0:
                return x0
            up = a.eta * math.sqrt(t**2 * (s**2 - t**2) / s**2)
            x = x0 + (math.sqrt(t**2 - up**2) / s) * (x - x0) + up * noise(x)
    elif variant == "heun-lc":  # Heun predictor + Langevin corrector (snr rule, batch-mean norms)
        for s, t in zip(sig[:-1], sig[1:], strict=True):
            x = heun(D, x, [s, t])
            if t != 0:
                score = (D(x, t) - x) / t**2
                z = noise(x)
                ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean()
                eps = 2 * (a.snr * ratio) ** 2
                x = x + eps * score + torch.sqrt(2 * eps) * z
    elif variant == "langevin":  # T Langevin steps per level, α = c σ²: x += c(D − x) + √(2c) σ z
        for s in sig[:-1]:
            for _ in range(a.langevin_steps):
                x = x + a.c * (D(x, s) - x) + math.sqrt(2 * a.c) * s * noise(x)
        x = D(x, sig[-2])
    elif variant == "restart":  # Xu et al. 2023, Algorithm 1
        x = heun(D, x, karras_sigmas(sig[0], a.t_min, a.steps, a.rho)[:-1])
        for _ in range(a.restarts):
            x = x + math.sqrt(a.t_max**2 - a.t_min**2) * noise(x)
            x = heun(D, x, karras_sigmas(a.t_max, a.t_min, a.restart_steps, a.rho)[:-1])
        x = heun(D, x, karras_sigmas(a.t_min, a.end, 3, a.rho))
    else:
        raise SystemExit(f"variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    return x


def counted(denoise):
    """D(x, σ) with σ a float, counting calls (NFE per sample)."""
    state = {"nfe": 0}

    def D(x, sigma):
        state["nfe"] += 1
        return denoise(x, torch.full((x.shape[0],), float(sigma)))

    return D, state


def _mnist_features():
    from ncsn.data.images import load_mnist
    from ncsn.metrics.classifier import load_classifier
    from ncsn.metrics.evaluate import classifier_extractor

    x = load_mnist(str(DATA), "test").as_float()
    return x, classifier_extractor(load_classifier(CLASSIFIER), str(CLASSIFIER))


def split(paths: list[str]) -> dict:
    from ncsn.metrics.fid import feature_stats, frechet_terms

    x, extract = _mnist_features()
    held = feature_stats(extract(x[8000:10000]))
    train_features = extract(x[:8000])
    pick = torch.randperm(8000, generator=torch.Generator().manual_seed(0))
    train_ref = feature_stats(train_features[pick[1000:]])  # the training digits but the floor's

    def row(features) -> dict:
        stats = feature_stats(features)
        mean, cov = frechet_terms(*stats, *held)
        mean_t, cov_t = frechet_terms(*stats, *train_ref)
        return {
            "fd": round(mean + cov, 2),
            "mean_term": round(mean, 2),
            "cov_term": round(cov, 2),
            "fd_vs_train": round(mean_t + cov_t, 2),
        }

    rows = [{"set": "real training digits (floor, 1,000)", **row(train_features[pick[:1000]])}]
    for path in paths:
        with np.load(path) as f:
            images, info = f["images"], json.loads(str(f["jobs"]))
        for job, batch in zip(info["jobs"], images, strict=True):
            imgs = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0
            rows.append(
                {
                    "set": Path(path).stem,
                    "description": job["description"],
                    "nfe": job["nfe"],
                    "seed": job["seed"],
                    "ink": round(float(imgs.mean()), 4),
                    **row(extract(imgs)),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    ink = {"train": round(float(x[:8000].mean()), 4), "held": round(float(x[8000:].mean()), 4)}
    return {"rows": rows, "ink": ink}


def screen(a: argparse.Namespace) -> dict:
    from ncsn.metrics.fid import feature_stats, frechet_distance
    from ncsn.training.state import load_run
    from ncsn.viz import to_uint8

    model, sched, _, meta = load_run(a.run, log=lambda m: None)
    a.sigma_max = sched.sigma_max
    D, state = counted(model.denoise)
    start = time.perf_counter()
    with torch.inference_mode():
        gen = torch.Generator().manual_seed(a.seed)
        x = sample(a.variant, D, (a.n, *meta["data_shape"]), a, gen)
    seconds = time.perf_counter() - start
    images = torch.from_numpy(to_uint8(x)).permute(0, 3, 1, 2).float() / 255.0
    data, extract = _mnist_features()
    held = feature_stats(extract(data[8000:10000]))
    fd = frechet_distance(*feature_stats(extract(images)), *held)
    return {"nfe": state["nfe"], "fd": round(fd, 2), "seconds": round(seconds, 1)}


def smoke(a: argparse.Namespace) -> dict:
    """Every variant with the exact denoiser of N(μ, s² I) in 16 dimensions: NFE and the
    sample variance against s² (the coarse-ladder Langevin is expected to miss)."""
    mu, s2 = 0.5, 0.04
    a.sigma_max = 3.0
    rows = {}
    for variant in VARIANTS:
        D, state = counted(lambda x, sigma: mu + s2 / (s2 + sigma.view(-1, 1) ** 2) * (x - mu))
        x = sample(variant, D, (4000, 16), a, torch.Generator().manual_seed(0))
        rows[variant] = {
            "nfe": state["nfe"],
            "mean": round(float(x.mean()), 4),
            "var_ratio": round(float(x.var(dim=0).mean()) / s2, 4),
        }
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("variant", nargs="?", choices=VARIANTS)
    p.add_argument("--steps", type=int, default=10, help="N: ρ-spaced levels (restart: main ODE)")
    p.add_argument("--rho", type=float, default=7.0)
    p.add_argument("--end", type=float, default=0.01, help="σ_min of the ρ ladder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--s-churn", type=float, default=40.0)
    p.add_argument("--s-min", type=float, default=0.05)
    p.add_argument("--s-max", type=float, default=50.0)
    p.add_argument("--s-noise", type=float, default=1.003)
    p.add_argument("--euler", action="store_true", help="churn: first order")
    p.add_argument("--eta", type=float, default=1.0, help="ancestral: DDIM η")
    p.add_argument("--snr", type=float, default=0.16, help="heun-lc: corrector snr")
    p.add_argument("--langevin-steps", type=int, default=4)
    p.add_argument("--c", type=float, default=0.2, help="langevin: α = c σ²")
    p.add_argument("--t-min", type=float, default=0.1)
    p.add_argument("--t-max", type=float, default=1.0)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--restart-steps", type=int, default=4)
    p.add_argument("--run", default=str(RUN))
    p.add_argument("--split", nargs="+", metavar="SETS.npz")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", help="screen: JSON lines file to append to; split/smoke: JSON file")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    command = shlex.join(["python", "benchmarks/sampler_screen.py", *(argv or sys.argv[1:])])
    if a.smoke:
        a.steps, a.s_churn = 10, 40.0
        record = {"command": command, "rows": smoke(a)}
    elif a.split:
        record = {"command": command, **split(a.split)}
    elif a.variant:
        settings = {k: v for k, v in vars(a).items() if k not in ("split", "smoke", "out")}
        record = {"command": command, **settings, **screen(a)}
        print(json.dumps(record), flush=True)
        if a.out:
            with open(a.out, "a") as f:
                f.write(json.dumps(record) + "\n")
        return record
    else:
        p.error("a variant, --split or --smoke")
    if a.out:
        atomic_write_bytes(Path(a.out), json.dumps(record, indent=1).encode())
    print(json.dumps(record["rows"] if a.smoke else record["rows"][:1], indent=1))
    return record


if __name__ == "__main__":
    main()
