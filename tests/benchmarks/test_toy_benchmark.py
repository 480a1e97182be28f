"""benchmarks/toy.py --smoke: the same code as the full benchmark, with tiny settings."""

import json
import math
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "toy.py"
ROWS = {
    "baseline",
    "sigma_max/10",
    "linear levels",
    "lambda=1",
    "no final denoising",
    "ssm",
    "exact score",
    "exact score, technique-4 ε",
}
ROW_NUMBERS = [
    "energy_distance",
    "ed_over_floor",
    "weight_error",
    "off_mode_share",
    "max_score_error",
    "mean_score_error",
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, Path]:
    bench = runpy.run_path(str(SCRIPT), run_name="toy_benchmark")
    out = tmp_path_factory.mktemp("bench")
    bench["main"](["--smoke", "--out", str(out)])
    return json.loads((out / "toy_smoke.json").read_text()), out


def test_smoke_run_writes_json_and_plot_with_the_exact_command(smoke):
    result, out = smoke
    assert (out / "toy_smoke.png").stat().st_size > 0
    assert result["command"] == f"python benchmarks/toy.py --smoke --out {out}"
    assert result["smoke"] is True


def test_score_tables_have_a_finite_error_per_level_for_dsm_and_ssm(smoke):
    table = smoke[0]["score_error"]
    for key in ("dsm", "ssm"):
        assert len(table[key]) == len(table["sigmas"]) > 1
        assert all(math.isfinite(e) for e in table[key])
        assert table[f"{key}_meets_target"] == (max(table[key]) < smoke[0]["target"])


def test_every_ablation_row_is_present_with_finite_numbers(smoke):
    rows = {row["name"]: row for row in smoke[0]["ablation"]}
    assert set(rows) == ROWS
    for row in rows.values():
        assert all(math.isfinite(row[key]) for key in ROW_NUMBERS)
        assert sum(row["weights"]) == pytest.approx(1.0)
    assert math.isfinite(smoke[0]["noise_floor"]) and smoke[0]["noise_floor"] > 0
