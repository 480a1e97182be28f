"""benchmarks/recipe_speed.py --smoke: both recipes take timed training steps."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_smoke_times_both_recipes():
    spec = importlib.util.spec_from_file_location(
        "recipe_speed", REPO / "benchmarks/recipe_speed.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke", "--threads", "1"])
    for name in ("ncsn", "edm_loguniform"):
        assert len(result[name]["blocks_ms"]) == 1 and result[name]["median_ms"] > 0
