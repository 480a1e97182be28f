"""Training-step time of the NCSN recipe (noise, ladder, λ = σ²) against EDM's (edm, log-uniform
σ, EDM's λ) on the MNIST preset's U-Net, in one process, alternated in blocks (issue 15).

Each block times ``--steps`` optimizer steps (``ncsn.objectives.dsm_loss`` under bf16 autocast,
backward, Adam) of one recipe, then of the other; the first block is a warm-up; the table is the
median step time over the other blocks. Random digits-shaped data, batch 64.

    python benchmarks/recipe_speed.py --threads 2      # ~1 minute
    python benchmarks/recipe_speed.py --smoke          # tiny network, seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from ncsn import config
from ncsn.model import build_model
from ncsn.noise_levels import NoiseLevels
from ncsn.objectives import dsm_loss

REPO = Path(__file__).resolve().parents[1]
RECIPES = {  # name: parameterization, σ law, loss weight
    "ncsn": ("noise", "ladder", "power"),
    "edm_loguniform": ("edm", "loguniform", "edm"),
}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--steps", type=int, default=8, help="steps per block")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = ["model.channels=8", "model.groups=4", "model.attention_resolutions=[]"]
    cfg = config.load(REPO / "configs" / "mnist.yaml", overrides if args.smoke else [])
    blocks, steps = (2, 1) if args.smoke else (args.blocks, args.steps)
    sigmas = torch.tensor([16.0 * (0.01 / 16.0) ** (i / 94) for i in range(95)])
    runs = {}
    for name, (parameterization, law, weight) in RECIPES.items():
        cfg.model.parameterization, cfg.model.sigma_data = parameterization, 0.3077
        torch.manual_seed(0)
        model = build_model(cfg.model, (1, 28, 28), sigmas.tolist())
        opt = torch.optim.Adam(model.parameters(), lr=5e-4)
        runs[name] = (model, opt, NoiseLevels(sigmas, law, weighting=weight, sigma_data=0.3077))
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for block in range(blocks):
        for name, (model, opt, levels) in runs.items():
            start = time.perf_counter()
            for _ in range(steps):
                opt.zero_grad()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = dsm_loss(model, x, levels, generator=gen)
                loss.backward()
                opt.step()
            if block:  # the first block warms up
                times[name].append((time.perf_counter() - start) / steps)
    result = {
        name: {"median_ms": 1000 * statistics.median(t), "blocks_ms": [1000 * v for v in t]}
        for name, t in times.items()
    }
    result["settings"] = vars(args)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
