"""benchmarks/toy_experts.py --smoke: the same code as the full benchmark, with tiny settings."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "toy_experts.py"


def test_smoke_writes_errors_per_level_for_each_variant(tmp_path):
    spec = importlib.util.spec_from_file_location("toy_experts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--smoke", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "toy_experts_smoke.json").read_text())
    assert "benchmarks/toy_experts.py --smoke" in result["command"]
    data = result["presets"]["mixture"]
    assert set(data["rows"]) == {"one network", "2 experts", "FP regulariser 0.1"}
    for row in data["rows"].values():
        assert len(row["errors"]) == len(data["sigmas"]) == 30
        assert row["error_max"] >= row["error_mean"] > 0 and row["fp_residual"] > 0
    assert data["rows"]["2 experts"]["parameters"] == 2 * data["rows"]["one network"]["parameters"]
    assert (tmp_path / "toy_experts_smoke.png").stat().st_size > 0
