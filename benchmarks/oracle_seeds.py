"""The fast samplers' exact-score test (tests/samplers/test_multistep_oracle.py) over many seeds.

The test draws each case with sampler seed 0 and asks for an energy distance within 3 noise
floors of exact mixture samples. One seed can be lucky or unlucky, so this script draws every
case of the test (its ``CASES``: sampler, ladder, options, NFE) with seeds 0…S−1 and reports the
distances in floors, how many are within 3, and the median, plus references the test's
comments and docs/benchmarks.md quote: Heun at N = 10 (19 NFE), dpmpp_2m_sde at k-diffusion's
η = 1 with N = 20, dpmpp_2m alone on the 11 levels of the restart case, and dpmpp_2m, unipc and
unipc of order 3 at 10 NFE. Same floor, same exact set as the test.

    python benchmarks/oracle_seeds.py                    # seeds 0-7: results/oracle_seeds.json
    python benchmarks/oracle_seeds.py --smoke --out X    # 2 seeds, 400 points
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import statistics
import sys
from pathlib import Path

import torch

from ncsn.data.toy import OracleModel, make_toy
from ncsn.files import atomic_write_bytes
from ncsn.metrics import noise_floor
from ncsn.samplers.multistep import dpmpp_2m_sampler, dpmpp_2m_sde_sampler
from ncsn.samplers.ode import heun_sampler
from ncsn.samplers.unipc import unipc_sampler
from ncsn.schedule import karras_sigmas

REPO = Path(__file__).resolve().parents[1]
TEST = REPO / "tests/samplers/test_multistep_oracle.py"


def _test_module():
    spec = importlib.util.spec_from_file_location("test_multistep_oracle", TEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8, help="sampler seeds 0…S−1 per case")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/oracle_seeds.json"))
    p.add_argument("--smoke", action="store_true", help="2 seeds, 400 points")
    args = p.parse_args(argv)
    test = _test_module()
    n = 400 if args.smoke else test.N
    seeds = range(2 if args.smoke else args.seeds)
    mixture = make_toy("mixture")
    model = OracleModel(mixture)
    floor = noise_floor(  # as tests/samplers/conftest.py
        mixture.sample, n, test.DISTANCE, repeats=3, generator=torch.Generator().manual_seed(1)
    ).mean
    exact = mixture.sample(n, torch.Generator().manual_seed(2))
    cases = {name: (*case, True) for name, case in test.CASES.items()}
    ladder = karras_sigmas(80.0, 0.01, 11)
    cases |= {
        "heun N=10": (heun_sampler, karras_sigmas(80.0, 0.01, 10), {}, 19, False),
        "dpmpp_2m_sde eta=1 N=20": (
            dpmpp_2m_sde_sampler,
            karras_sigmas(80.0, 0.01, 20),
            {},
            20,
            False,
        ),  # fmt: skip
        "dpmpp_2m N=11 (restart's ladder)": (dpmpp_2m_sampler, ladder, {}, 11, False),
        "dpmpp_2m N=10": (dpmpp_2m_sampler, karras_sigmas(80.0, 0.01, 10), {}, 10, False),
        "unipc N=10": (unipc_sampler, karras_sigmas(80.0, 0.01, 10), {}, 10, False),
        "unipc order 3 N=10": (
            unipc_sampler,
            karras_sigmas(80.0, 0.01, 10),
            {"order": 3},
            10,
            False,
        ),  # fmt: skip
    }
    rows = {}
    for name, (sampler, sigmas, options, nfe, tested) in cases.items():
        floors = []
        for seed in seeds:
            x, calls = test._draw(sampler, model, (n, 2), sigmas, seed=seed, **options)
            assert calls[-1]["nfe"] == nfe, (name, calls[-1]["nfe"])
            floors.append(float(test.DISTANCE(x, exact)) / float(floor))
        rows[name] = {
            "in_test": tested,
            "nfe": nfe,
            "options": dict(options),
            "levels": len(sigmas) - 1,
            "floors": [round(f, 3) for f in floors],
            "within_3": sum(f < 3 for f in floors),
            "median": round(statistics.median(floors), 3),
        }
        row = rows[name]
        print(f"{name:34s} NFE {nfe:3d}  within 3 floors {row['within_3']}/{len(floors)}  "
              f"median {row['median']:.2f}  max {max(floors):.2f}", flush=True)  # fmt: skip
    record = {
        "command": shlex.join(["python", "benchmarks/oracle_seeds.py", *(argv or sys.argv[1:])]),
        "points": n,
        "seeds": list(seeds),
        "floor": float(floor),
        "rows": rows,
    }
    atomic_write_bytes(Path(args.out), (json.dumps(record, indent=1) + "\n").encode())
    return record


if __name__ == "__main__":
    main()
