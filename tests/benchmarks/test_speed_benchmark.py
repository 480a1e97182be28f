import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_mode_measures_training_and_sampling_against_the_bare_network(tmp_path):
    main = runpy.run_path(str(ROOT / "benchmarks" / "speed.py"))["main"]
    result = main(["--smoke", "--out", str(tmp_path)])
    assert [r["precision"] for r in result["rows"]] == ["fp32", "bf16"]
    for row in result["rows"]:
        for key in (
            "train_steps_per_s",
            "bare_fwd_bwd_per_s",
            "sampler_nfe_per_s",
            "bare_forward_per_s",
            "peak_memory_mb",
        ):
            assert row[key] > 0
        assert row["train_overhead"] > -0.5 and row["sampler_overhead"] > -0.5
        # two training blocks, each bracketed by bare timings; the row reports their median
        assert len(row["train_overhead_blocks"]) == 2
        assert min(row["train_overhead_blocks"]) <= row["train_overhead"]
        assert row["train_overhead"] <= max(row["train_overhead_blocks"])
    assert (tmp_path / "speed_smoke.json").exists() and "speed.py" in result["command"]


def test_layers_mode_times_the_old_and_new_refinenet_layers_side_by_side(tmp_path):
    main = runpy.run_path(str(ROOT / "benchmarks" / "speed.py"))["main"]
    result = main(["--smoke", "--layers", "--out", str(tmp_path), "--variants", "fp32,bf16"])
    measures = {(r["measure"].split(" ")[0], r["precision"]) for r in result["rows"]}
    assert measures == {
        (name, precision)
        for name in ("CondInstanceNorm++", "5×5", "RefineNet")
        for precision in ("fp32", "bf16")
    }
    for row in result["rows"]:
        assert row["blocks"] == 2 and row["old_s"] > 0 and row["new_s"] > 0
        low, high = row["speedup_range"]
        assert low <= row["speedup"] <= high
    assert (tmp_path / "speed_smoke.json").exists()
