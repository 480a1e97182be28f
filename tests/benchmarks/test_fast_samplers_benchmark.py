"""benchmarks/fast_samplers.py --smoke: a tiny run trained on the shared MNIST digits and its
two-step distillation, each fast sampler (and the Heun ODE, and the consistency model at 1 and
2 NFE) drawn at its NFE, scored like the MNIST benchmark and timed."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MNIST = REPO.parent / "shared" / "data" / "mnist"
CLASSIFIER = REPO / "benchmarks" / "results" / "mnist" / "classifier.safetensors"
JOBS = {  # sampler, NFE, N
    ("ipndm", 4, 4), ("dpmpp_2m", 4, 4), ("dpmpp_2m_sde", 4, 4), ("ode", 5, 3),
    ("ipndm_gits", 4, 4), ("dpmpp_2m_sde_eta01", 4, 4), ("restart_k1m2", 9, 3),
    ("restart_2m_k1m2", 5, 3), ("unipc", 4, 4), ("unipc_order3", 4, 4),
    ("consistency", 1, 1), ("consistency", 2, 2),
}  # fmt: skip


@pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").exists() or not CLASSIFIER.is_file(),
    reason=f"no MNIST test digits in {MNIST} or no classifier at {CLASSIFIER}",
)
def test_smoke_run_draws_scores_and_times_the_fast_samplers(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "fast_samplers", REPO / "benchmarks/fast_samplers.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "default-ald-5-seed0.npz").write_bytes(b"another benchmark's set: not read")
    bench.main(["--smoke", "--out", str(tmp_path), "--data", str(MNIST)])

    record = json.loads((tmp_path / "fast_samplers.json").read_text())
    assert "benchmarks/fast_samplers.py --smoke" in record["command"]
    assert {(r["sampler"], r["nfe"], r["steps"]) for r in record["rows"]} == JOBS
    for row in [*record["rows"], record["data_floor"]]:
        m = row["metrics"]
        for key in ("fd", "fd_train", "precision", "mean_term", "cov_term"):
            assert m[key] is not None and math.isfinite(m[key]), (key, m)
        assert m["mean_term"] + m["cov_term"] == pytest.approx(m["fd"], rel=1e-6, abs=1e-6)
    for sampler, _, _ in JOBS:
        assert f"| {sampler} |" in record["table"]
    assert (tmp_path / "fast_samplers.png").stat().st_size > 0
    # a variant is its library sampler with the options its name says
    (low,) = [r for r in record["rows"] if r["sampler"] == "dpmpp_2m_sde_eta01"]
    (full,) = [r for r in record["rows"] if r["sampler"] == "dpmpp_2m_sde"]
    assert low["options"]["eta"] == 0.1 and full["options"]["eta"] == 1.0
    assert low["metrics"]["fd"] != full["metrics"]["fd"]
    (restart,) = [r for r in record["rows"] if r["sampler"] == "restart_k1m2"]
    assert (restart["options"]["restarts"], restart["options"]["restart_steps"]) == (1, 2)
    (on_2m,) = [r for r in record["rows"] if r["sampler"] == "restart_2m_k1m2"]
    assert (restart["options"]["solver"], on_2m["options"]["solver"]) == ("heun", "dpmpp_2m")
    (u2,) = [r for r in record["rows"] if r["sampler"] == "unipc"]
    (u3,) = [r for r in record["rows"] if r["sampler"] == "unipc_order3"]
    assert (u2["options"]["order"], u3["options"]["order"]) == (2, 3)
    assert all(r["precision"] == "fp32" for r in record["rows"])
    images = np.load(samples / "default-ipndm-4-seed0.npz")["images"]
    assert images.dtype == np.uint8 and images.shape == (16, 28, 28, 1)
    (cm_row,) = [r for r in record["rows"] if r["sampler"] == "consistency" and r["nfe"] == 2]
    assert cm_row["run"].endswith("smoke_cm") and cm_row["step"] == 2

    timing = json.loads((tmp_path / "fast_samplers_time.json").read_text())
    assert [(r["sampler"], r["nfe"]) for r in timing["rows"]] == [
        ("ipndm", 4),
        ("dpmpp_2m", 4),
        ("ipndm_gits", 4),
        ("consistency", 2),
    ]
    assert all(r["seconds"] > 0 for r in timing["rows"])

    # a second run keeps the sets it finds
    before = (samples / "default-ode-3-seed0.npz").stat().st_mtime_ns
    bench.main(["--smoke", "--stage", "sample", "--out", str(tmp_path), "--data", str(MNIST)])
    assert (samples / "default-ode-3-seed0.npz").stat().st_mtime_ns == before

    # the consistency sampler's middle σ and share of fresh noise γ: each pair drawn and scored,
    # the lowest FD against the training digits chosen
    mid = bench.main(["--smoke", "--stage", "mid", "--mids", "0.05,0.5", "--gammas", "1,0.5",
                      "--out", str(tmp_path), "--data", str(MNIST)])  # fmt: skip
    assert mid == json.loads((tmp_path / "fast_samplers_mid.json").read_text())
    pairs = [(0.05, 1.0), (0.05, 0.5), (0.5, 1.0), (0.5, 0.5)]
    assert [(r["sigma_mid"], r["gamma"]) for r in mid["rows"]] == pairs
    shown = [", 0.05, start", ", 0.05, γ 0.5, start", ", 0.5, start", ", 0.5, γ 0.5, start"]
    for row, text in zip(mid["rows"], shown, strict=True):
        assert text in row["description"], row  # the second jump's σ and γ
    fds = [r["metrics"]["fd_train"] for r in mid["rows"]]
    best = mid["rows"][fds.index(min(fds))]
    assert len(set(fds)) == 4 and (mid["chosen"], mid["chosen_gamma"]) == (
        best["sigma_mid"],
        best["gamma"],
    )

    # dpmpp_2m_sde's noise share, tuned the same way
    eta = bench.main(["--smoke", "--stage", "eta", "--etas", "0,1", "--eta-nfe", "4",
                      "--out", str(tmp_path), "--data", str(MNIST)])  # fmt: skip
    assert eta == json.loads((tmp_path / "fast_samplers_eta.json").read_text())
    assert [r["eta"] for r in eta["rows"]] == [0.0, 1.0] and eta["nfe"] == 4
    for row, shown in zip(eta["rows"], ("η = 0.0", "η = 1.0"), strict=True):
        assert shown in row["description"], row
    fds = [r["metrics"]["fd_train"] for r in eta["rows"]]
    assert fds[0] != fds[1] and eta["chosen"] == eta["rows"][fds.index(min(fds))]["eta"]

    # timing in another batch size: its own file, the batch size recorded
    # (and the network under bf16 autocast)
    bench.main(["--smoke", "--stage", "time", "--batch-size", "8", "--precision", "bf16",
                "--out", str(tmp_path), "--data", str(MNIST)])  # fmt: skip
    rows = json.loads((tmp_path / "fast_samplers_time_b8_bf16.json").read_text())["rows"]
    assert rows and all(r["batch_size"] == 8 and r["n"] == 16 for r in rows)
    assert all(r["precision"] == "bf16" for r in rows)
    assert json.loads((tmp_path / "fast_samplers_time.json").read_text()) == timing  # kept


def test_a_bad_list_of_values_is_refused_naming_its_flag():
    spec = importlib.util.spec_from_file_location(
        "fast_samplers", REPO / "benchmarks/fast_samplers.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for flag in ("--mids", "--gammas", "--etas"):
        with pytest.raises(SystemExit, match=f"^{flag} '1.0,x': expected numbers separated by"):
            bench.parse_args(["--stage", "mid", flag, "1.0,x"])
    assert bench.parse_args(["--gammas", "1,0.95"]).gammas == "1,0.95"
