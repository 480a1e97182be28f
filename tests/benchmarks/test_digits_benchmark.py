import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("digits_bench", ROOT / "benchmarks" / "digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_mode_trains_samples_and_scores(tmp_path):
    result = _load().main(["--smoke", "--out", str(tmp_path)])
    assert result["classifier_heldout_accuracy"] > 0.9
    assert result["real_digits"]["classes_present"] == 10  # the scorer sees every real class
    assert sum(result["samples"]["class_histogram"]) == result["n_samples"] == 20
    assert result["command"].startswith("python benchmarks/digits.py --smoke")
    assert (tmp_path / "digits_smoke.json").exists()
