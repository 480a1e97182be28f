"""benchmarks/consistency_jumps.py --smoke: a tiny run and its two-step distillation, the
2-NFE consistency sampler with either jump (or both) replaced by the teacher's ODE solve, scored
like the MNIST benchmark."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MNIST = REPO.parent / "shared" / "data" / "mnist"
CLASSIFIER = REPO / "benchmarks" / "results" / "mnist" / "classifier.safetensors"


def _bench():
    spec = importlib.util.spec_from_file_location(
        "consistency_jumps", REPO / "benchmarks/consistency_jumps.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").exists() or not CLASSIFIER.is_file(),
    reason=f"no MNIST test digits in {MNIST} or no classifier at {CLASSIFIER}",
)
def test_smoke_run_scores_each_jump_replaced_by_the_teacher(tmp_path):
    record = _bench().main(["--smoke", "--out", str(tmp_path), "--data", str(MNIST),
                            "--sigma-mid", "0.5", "--teacher-steps", "3,2",
                            "--heun-steps", "1,2", "--heun-precision", "fp32,bf16"])  # fmt: skip
    assert record == json.loads((tmp_path / "consistency_jumps_default.json").read_text())
    assert "benchmarks/consistency_jumps.py --smoke" in record["command"]
    assert record["student"]["run"].endswith("smoke_cm") and record["student"]["step"] == 2
    pairs = [(r["first_jump"], r["second_jump"]) for r in record["rows"]]
    assert pairs == [("teacher", "teacher"), ("teacher", "student"), ("student", "teacher"),
                     ("student", "student"), ("teacher", "heun 1"), ("teacher", "heun 1 bf16"),
                     ("teacher", "heun 2"), ("teacher", "heun 2 bf16")]  # fmt: skip
    for row in record["rows"]:
        m = row["metrics"]
        for key in ("fd", "fd_train", "mean_term", "cov_term"):
            assert math.isfinite(m[key]), (key, m)
        assert m["mean_term"] + m["cov_term"] == pytest.approx(m["fd"], rel=1e-6, abs=1e-6)
    # two steps of distillation leave the student far from the teacher's 3-step solve
    fds = {pair: row["metrics"]["fd"] for pair, row in zip(pairs, record["rows"], strict=True)}
    assert fds["teacher", "teacher"] != fds["student", "student"]
    # the distillation's targets: one Heun step and two are different solves
    assert fds["teacher", "heun 1"] != fds["teacher", "heun 2"]


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--teacher-steps", "10"], "expected two integers"), (["--teacher-steps", "0,6"], "positive"),
     (["--n", "0"], "positive"), (["--heun-steps", "3,x"], "expected integers"),
     (["--heun-steps", "0"], "positive"), (["--heun-precision", "fp16"], "expected fp32, bf16")],
)  # fmt: skip
def test_bad_arguments_are_refused_before_any_work(args, words, capsys):
    with pytest.raises(SystemExit) as e:
        _bench().main(["--cm-run", "x", *args])
    assert words in str(e.value)
