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


def test_profile_mode_lists_the_top_kernels_of_old_and_new_refinenet_and_of_the_unet(tmp_path):
    main = runpy.run_path(str(ROOT / "benchmarks" / "speed.py"))["main"]
    result = main(
        ["--smoke", "--layers", "--profile", "--out", str(tmp_path), "--variants", "fp32"]
    )
    by_measure = {r["measure"].split(",")[0]: r for r in result["rows"]}
    assert set(by_measure) == {
        "RefineNet training step",
        "RefineNet forward",
        "U-Net training step",
        "U-Net forward",
    }
    for name, row in by_measure.items():
        contenders = ("old", "new") if name.startswith("RefineNet") else ("new",)
        for contender in contenders:
            top = row[contender]["top"]
            assert row[contender]["total_s"] > 0 and top
            shares = [op["share"] for op in top]
            assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
    # the training step runs the convolutions' backward; the forward under inference mode does not
    step_ops = {op["op"] for op in by_measure["U-Net training step"]["new"]["top"]}
    assert any("backward" in op for op in step_ops)
    assert (tmp_path / "speed_smoke.json").exists()
