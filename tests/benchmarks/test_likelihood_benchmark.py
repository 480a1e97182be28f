"""benchmarks/likelihood.py --smoke: a tiny run trained here, every part (convergence, held-out
and training digits, out-of-distribution sets) at tiny sizes; the shared MNIST digits when they
exist, random 8-bit images otherwise."""

import importlib.util
import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MNIST = REPO.parent / "shared" / "data" / "mnist"


def test_smoke_writes_every_part(tmp_path):
    spec = importlib.util.spec_from_file_location("likelihood", REPO / "benchmarks/likelihood.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke", "--out", str(tmp_path), "--data", str(MNIST)])

    saved = json.loads((tmp_path / "likelihood_smoke.json").read_text())
    assert saved.keys() == result.keys()
    assert saved["command"].startswith("python benchmarks/likelihood.py --smoke")
    assert {r["options"]["solver"] for r in saved["convergence"]} == {"heun", "rk45"}
    assert any(r["options"]["probes"] == 2 for r in saved["convergence"])
    for row in [*saved["convergence"], *saved["main"].values(), *saved["ood"].values()]:
        assert math.isfinite(row["bits_per_dim"]) and row["nfe"] > 0
    assert set(saved["ood"]) == {"uniform_noise", "inverted_digits", "sklearn_digits_upscaled"}
    assert len(saved["main"]["held_out"]["per_example_bits_per_dim"]) == 4
    assert (tmp_path / "likelihood_convergence_smoke.png").stat().st_size > 0
