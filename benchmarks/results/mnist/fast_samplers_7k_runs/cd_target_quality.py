"""How good are consistency distillation's targets (twentieth session, docs/benchmarks.md)?

With teacher pairs, q = 2 and k = 8, every t ≤ 1.2 is regressed onto the teacher's K-step Heun
solve to σ_min (``ncsn.consistency.teacher_solve``). This scores that solve as the 2-NFE
sampler's second jump, from σ_mid = 1.0, after a converged first jump (DPM-Solver++(2M), 40
steps from σ₁); K = 25 stands for the converged second jump (DPM-Solver++(2M), 25 steps). 500
samples, seed 100, FD held-out / train like benchmarks/fast_samplers.py.

    python benchmarks/results/mnist/fast_samplers_7k_runs/cd_target_quality.py TEACHER_RUN
"""

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import fast_samplers as fs  # noqa: E402

from ncsn import consistency  # noqa: E402
from ncsn.samplers.multistep import dpmpp_2m_sampler  # noqa: E402
from ncsn.samplers.ode import ode_start  # noqa: E402
from ncsn.schedule import karras_sigmas  # noqa: E402
from ncsn.viz import quantize  # noqa: E402

args = fs.parse_args(["--channels-last"])
args.precision = "fp32"
teacher, sched, meta = fs.load(args, sys.argv[1])
mean = fs.samplers.ode_mean(sched, (1, *meta["data_shape"]))
sigma_min, sigma_mid = 0.01, 1.0
gen = torch.Generator().manual_seed(100)
ks = [1, 2, 3, 4, 6, 25]
sets = {k: [] for k in ks}
with torch.inference_mode():
    for _ in range(2):
        shape = (250, *meta["data_shape"])
        x = ode_start(shape, sched.sigma_max, gen, mean)
        z = torch.randn(shape, generator=gen)
        levels = karras_sigmas(sched.sigma_max, sigma_min, 40)
        x0 = dpmpp_2m_sampler(teacher, shape, levels, generator=gen, x=x)
        x_mid = x0 + math.sqrt(sigma_mid**2 - sigma_min**2) * z
        t, r = torch.full((250,), sigma_mid), torch.full((250,), sigma_min)
        for k in ks:
            if k == 25:
                levels = karras_sigmas(sigma_mid, sigma_min, 25)
                y = dpmpp_2m_sampler(teacher, shape, levels, generator=gen, x=x_mid)
            else:
                y = consistency.teacher_solve(teacher, x_mid, t, r, k)
            sets[k].append(y)
score = fs.scorer(args, *fs.digits(args))
for k in ks:
    m = score(quantize(torch.cat(sets[k])))
    print("K", k, "(25: dpmpp 25 steps)", round(m["fd"], 1), round(m["fd_train"], 1), flush=True)
