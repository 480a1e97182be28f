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
