"""benchmarks/sampler_screen.py --smoke: every screened variant on an exact Gaussian denoiser."""

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sampler_screen.py"


def _module():
    spec = importlib.util.spec_from_file_location("sampler_screen", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_counts_nfe_and_reaches_the_gaussian(tmp_path):
    out = tmp_path / "smoke.json"
    record = _module().main(["--smoke", "--out", str(out)])
    assert json.loads(out.read_text()) == record
    rows = record["rows"]
    # N = 10 ρ-levels: churn 2N − 1; ancestral N; Heun + corrector 2N − 1 + (N − 1);
    # Langevin N·T + 1 (T = 4); restart 2·9 + 2·(2·3) + 5 (9 Heun steps, 2 restarts of 3,
    # 3 steps to 0)
    assert {k: r["nfe"] for k, r in rows.items()} == {
        "churn": 19,
        "ancestral": 10,
        "heun-lc": 28,
        "langevin": 41,
        "restart": 35,
    }
    for name in ("churn", "heun-lc", "restart"):  # exact denoiser: close to N(0.5, 0.04 I)
        assert abs(rows[name]["mean"] - 0.5) < 0.03
        assert 0.7 < rows[name]["var_ratio"] < 1.4, (name, rows[name])
    # a 10-level ladder with 4 Langevin steps per level cannot relax: far too wide (issue 5's note)
    assert rows["langevin"]["var_ratio"] > 2


def test_same_seed_same_bytes():
    module = _module()

    class A:
        sigma_max, end, steps, rho = 3.0, 0.01, 6, 7.0
        s_churn, s_min, s_max, s_noise, euler = 40.0, 0.05, 50.0, 1.003, False
        eta, snr, langevin_steps, c = 1.0, 0.16, 2, 0.2
        t_min, t_max, restarts, restart_steps = 0.1, 1.0, 1, 3

    def denoise(x, sigma):
        return 0.5 + 0.04 / (0.04 + sigma.view(-1, 1) ** 2) * (x - 0.5)

    for variant in module.VARIANTS:
        runs = []
        for _ in range(2):
            D, _state = module.counted(denoise)
            runs.append(module.sample(variant, D, (64, 4), A, torch.Generator().manual_seed(3)))
        assert torch.equal(runs[0], runs[1]), variant
