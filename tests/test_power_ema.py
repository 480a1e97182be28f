"""Issue 15: power-function EMA profiles, their post-hoc reconstruction, per-σ diagnostics, and
training with the new options (resume, old runs unchanged, errors)."""

import csv
import hashlib
import re

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from tiny import TINY_UNET, as_cli, recorded

import ncsn
from ncsn import checkpoint, config
from ncsn.cli import main
from ncsn.errors import NCSNError
from ncsn.training import power_ema
from ncsn.training.loop import train


def test_exponents_of_edm2s_two_profiles():
    """EDM2 §3.1: σ_rel = 0.05 and 0.10 are the exponents γ = 16.97 and 6.94."""
    assert power_ema.exponent(0.05) == pytest.approx(16.97, abs=0.01)
    assert power_ema.exponent(0.10) == pytest.approx(6.94, abs=0.01)
    for std in (0.01, 0.05, 0.2, power_ema.MAX_STD):
        assert power_ema.std_of(power_ema.exponent(std)) == pytest.approx(std, rel=1e-9)
    for bad in (0.0, -0.1, 0.3):
        with pytest.raises(ValueError):
            power_ema.exponent(bad)


def _track(stds, steps, every):
    """Track ``stds`` over a random walk of 50 parameters; snapshots every ``every`` steps."""
    gen = torch.Generator().manual_seed(0)
    walk = torch.cumsum(torch.randn(steps, 50, generator=gen, dtype=torch.float64), 0)
    theta = torch.zeros(50, dtype=torch.float64)
    tracker = power_ema.PowerEMA([theta], stds)
    snapshots = []
    for t in range(1, steps + 1):
        theta.copy_(walk[t - 1])
        tracker.update([theta], t, torch.zeros((), dtype=torch.float64))
        if t % every == 0:
            snapshots.append((t, [a[0].clone() for a in tracker.averages]))
    return tracker, walk, snapshots


def test_the_discrete_update_weights_each_step_by_the_profiles_integral():
    """θ̂_t weights θ_τ by ∫_{τ−1}^{τ} (γ + 1) u^γ / t^(γ+1) du, i.e.
    (τ^(γ+1) − (τ−1)^(γ+1)) / t^(γ+1)."""
    steps = 200
    theta = torch.zeros(steps, dtype=torch.float64)
    tracker = power_ema.PowerEMA([theta], [0.1])
    for t in range(1, steps + 1):
        theta.zero_()
        theta[t - 1] = 1.0  # a one-hot trajectory: the average is the weight vector
        tracker.update([theta], t, torch.zeros((), dtype=torch.float64))
    g = tracker.gammas[0]
    tau = torch.arange(1, steps + 1, dtype=torch.float64)
    expected = (tau ** (g + 1) - (tau - 1) ** (g + 1)) / steps ** (g + 1)
    assert torch.allclose(tracker.averages[0][0], expected, atol=1e-12)


def test_a_skipped_step_leaves_every_profile_unchanged():
    theta = torch.ones(3)
    tracker = power_ema.PowerEMA([theta], [0.05, 0.1])
    theta.fill_(5.0)
    tracker.update([theta], 7, torch.ones(()))
    assert all(torch.equal(a[0], torch.ones(3)) for a in tracker.averages)


def test_post_hoc_reconstruction_of_a_tracked_profile_matches_it():
    """σ_rel = 0.07, tracked directly, against its reconstruction from snapshots of 0.05 and 0.10
    every 20 of 1,000 steps (EDM2 §3.2): within 1e-5 of the weights' scale."""
    tracker, walk, snapshots = _track([0.05, 0.1, 0.07], 1000, 20)
    steps = [t for t, _ in snapshots for _ in range(2)]
    gammas = [g for _ in snapshots for g in tracker.gammas[:2]]
    c, error = power_ema.coefficients(steps, gammas, 1000, tracker.gammas[2])
    rebuilt = sum(
        ci * a for ci, a in zip(c, [a for _, av in snapshots for a in av[:2]], strict=True)
    )
    direct = tracker.averages[2][0]
    assert error < 1e-3
    assert (rebuilt - direct).abs().max() < 1e-5 * direct.abs().max()
    # and a wrong target is visibly different: the tracked 0.05 average is not 0.07's
    assert (tracker.averages[0][0] - direct).abs().max() > 1e-3 * direct.abs().max()
    # a stored profile at its own snapshot is rebuilt from that snapshot alone
    c, error = power_ema.coefficients(steps, gammas, 1000, tracker.gammas[0])
    assert error < 1e-9 and c[-2] == pytest.approx(1.0, abs=1e-9)


TINY = [
    *TINY_UNET,
    "data.name=digits",
    "schedule.num_levels=6",
    "train.batch_size=16",
    "train.log_every=1",
    "train.checkpoint_every=3",
    "train.keep_last=10",
]
OPTIONS = {
    "edm_lognormal": ["model.parameterization=edm", "model.sigma_data=auto",
                      "train.sigma_distribution=lognormal"],
    "loguniform": ["train.sigma_distribution=loguniform", "train.loss_weight=edm"],
    "power_ema": ["train.ema_stds=[0.05,0.1]", "train.ema_snapshot_every=2"],
    "holdout": ["train.holdout=200", "train.per_sigma_levels=4", "train.p_mean=-1.0",
                "train.p_std=0.8", "train.sigma_distribution=lognormal"],
}  # fmt: skip


def _cfg(run_dir, steps, extra):
    return config.load(None, [*TINY, f"train.steps={steps}", f"run_dir={run_dir}", *extra])


@pytest.mark.parametrize("option", list(OPTIONS))
def test_training_with_each_new_option_resumes_bit_exactly(tmp_path, option):
    quiet = {"progress": False, "log": lambda *_: None}
    train(_cfg(tmp_path / "straight", 8, OPTIONS[option]), **quiet)
    train(_cfg(tmp_path / "resumed", 3, OPTIONS[option]), **quiet)
    train(_cfg(tmp_path / "resumed", 8, OPTIONS[option]), **quiet)
    a, meta = checkpoint.load(checkpoint.path_for(tmp_path / "straight" / "checkpoints", 8))
    b, _ = checkpoint.load(checkpoint.path_for(tmp_path / "resumed" / "checkpoints", 8))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("metrics.csv", "per_sigma.csv"):
        rows = [(tmp_path / run / name).read_text().splitlines() for run in ("straight", "resumed")]
        if name == "metrics.csv":  # timings differ: compare step and loss
            rows = [[line.split(",")[:2] for line in r] for r in rows]
        assert rows[0] == rows[1]
    straight = power_ema.list_snapshots(tmp_path / "straight")
    if option == "power_ema":
        assert [s for s, _ in straight] == [2, 4, 6, 8]
        assert sum(k.startswith("pema.") for k in a) == 2 * sum(k.startswith("model.") for k in a)
        resumed = dict(power_ema.list_snapshots(tmp_path / "resumed"))
        assert sorted(resumed) == [2, 3, 4, 6, 8]  # and one where the first part ended
        for step, path in straight:
            x, y = checkpoint.load(path)[0], checkpoint.load(resumed[step])[0]
            assert all(torch.equal(x[k], y[k]) for k in x)
    else:
        assert straight == []
    if option == "edm_lognormal":
        assert 0.2 < meta["config"]["model"]["sigma_data"] < 0.6  # measured, recorded
        assert meta["config"]["model"]["sigma_data"] == pytest.approx(meta["data_std"], abs=1e-6)


def test_held_out_examples_are_not_trained_on_and_carry_the_per_sigma_loss(tmp_path):
    run = tmp_path / "run"
    train(_cfg(run, 3, OPTIONS["holdout"]), progress=False, log=lambda *_: None)
    with open(run / "per_sigma.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [3] * 4
    assert all(r["held_out"] == "1" and r["examples"] == "200" for r in rows)
    sigmas = [float(r["sigma"]) for r in rows]
    sched = ncsn.load(run).schedule
    assert sigmas[0] == pytest.approx(sched.sigma_max) and sigmas[-1] == pytest.approx(0.01)
    assert (run / "per_sigma.png").stat().st_size > 1000
    with pytest.raises(NCSNError, match="train.holdout = 1797"):
        train(_cfg(tmp_path / "all", 3, ["train.holdout=1797"]), progress=False, log=print)


def test_ncsn_ema_writes_a_run_that_samples_and_refuses_what_it_cannot_build(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--config", "digits", *as_cli([*TINY, *OPTIONS["power_ema"]])]
    assert main([*argv, "--set", "train.steps=12", "--run-dir", str(run), "--no-progress"]) == 0
    assert main(["ema", str(run), "--std", "0.07"]) == 0
    out = run / "posthoc" / "std-0.070"
    assert "relative L² error" in capsys.readouterr().out
    tensors, meta = checkpoint.load(checkpoint.path_for(out / "checkpoints", 12))
    assert meta["posthoc_ema"]["std"] == 0.07 and all(k.startswith("ema.") for k in tensors)
    assert main(["sample", str(out), "--sampler", "ode", "--steps", "3", "--n", "4",
                 "--out", str(tmp_path / "s")]) == 0  # fmt: skip
    assert np.load(tmp_path / "s" / "samples.npz")["images"].shape[0] == 4
    refusals = [
        ("0", "--std 0.0: expected 0 < std"),
        ("0.5", "--std 0.5: expected"),
        ("0.005", "--std 0.005: the stored profiles .* reconstruct it only"),
    ]
    for std, expected in refusals:
        assert main(["ema", str(run), "--std", std]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert re.search(expected, err), err
    plain = tmp_path / "plain"
    assert main([*argv[:3], *as_cli(TINY), "--set", "train.steps=3", "--run-dir", str(plain),
                 "--no-progress"]) == 0  # fmt: skip
    assert main(["ema", str(plain), "--std", "0.05"]) == 2
    assert "train with train.ema_stds" in capsys.readouterr().err
    assert main(["info", str(run), "--per-sigma"]) == 0
    text = capsys.readouterr().out
    assert "per-σ DSM loss" in text and "power-EMA snapshots: 6" in text


@pytest.mark.parametrize(
    "setting, field",
    [
        ("train.p_std=0", "train.p_std"),
        ("train.p_std=-1", "train.p_std"),
        ("train.sigma_distribution=uniform", "train.sigma_distribution"),
        ("model.sigma_data=0", "model.sigma_data"),
        ("model.sigma_data=-0.5", "model.sigma_data"),
        ("train.loss_weight=snr", "train.loss_weight"),
        ("train.ema_stds=[0.5]", "train.ema_stds"),
        ("model.parameterization=edm2", "model.parameterization"),
    ],
)
def test_bad_values_of_the_new_options_name_the_field(tmp_path, capsys, setting, field):
    argv = ["train", "--config", "digits", "--set", setting, "--run-dir", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"--set {setting}" in err and field in err
    assert not (tmp_path / "r").exists()


def test_continuous_sigmas_are_refused_where_the_ladder_is_needed(capsys, tmp_path):
    argv = ["train", "--config", "digits", "--set", "train.sigma_distribution=lognormal",
            "--set", "train.objective=ssm", "--run-dir", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    assert "train.sigma_distribution" in capsys.readouterr().err


# Issue 15 changed how ScoreModel computes a score; runs of the older parameterizations must
# load and sample exactly as before. Hashes recorded with the code before the change (commit
# 278864c): the final checkpoint's tensors, the score on a fixed input, and float samples, per
# CPU kind (tiny.recorded): on an Intel CPU with AVX-512, on an AMD EPYC with AVX2 and on an
# Intel Xeon with AMX (recorded there with the code of 278864c; today's code gives the same).
OLD = {
    "AVX512": {
        "noise": ("65069644c30c333f07ca8f2c5630cd170aa5fbdd7ad3976732fd96f854e5740d",
                  "a5c8ba4fdaf060b56ef60b7821eebd345d660faba90b9e30cd1a7329901c4304",
                  "e6b097f5ad47bbd1fe869578b327a317a2e3ea9daac2e458cc77c79ed5781bff",
                  "0414e182d7425c729d68db48bb6cfafc6179c18f484b99b8f862e65f9a498d5d"),
        "score_sigma": ("ce32ab30c1c24f5bf6373e6ac3f9e9926950491cf06a40ac3b71cdfd17e790ff",
                        "a5c8ba4fdaf060b56ef60b7821eebd345d660faba90b9e30cd1a7329901c4304",
                        "e6b097f5ad47bbd1fe869578b327a317a2e3ea9daac2e458cc77c79ed5781bff",
                        "0414e182d7425c729d68db48bb6cfafc6179c18f484b99b8f862e65f9a498d5d"),
        "denoiser": ("aae4bc48c8b0b2e9dab0e69798eb9ae09f2fb3d20c1800ed5248e16b0ee0e630",
                     "fedc6f40e370bb4b935048ea4dc936b546040bf7cf72e39248679f58bd662019",
                     "7e8c87b1fae221b160ce81e6e21fcdafbaeda1314b003e5fe51de879793e7e58",
                     "c42ca2923ad6572bb9a39223385197ae6b1d9a898a2228f4ca3bfedaf5a1e1f2"),
    },
    "AVX2": {
        "noise": ("2dc930b33d6b2e24112aa327b596db846712bcde65b5240edf1f98785b15a7ab",
                  "54790825a10edffca05a998abf86be066eec7dc447c6609caf683e681e20afad",
                  "e6b097f5ad47bbd1fe869578b327a317a2e3ea9daac2e458cc77c79ed5781bff",
                  "0414e182d7425c729d68db48bb6cfafc6179c18f484b99b8f862e65f9a498d5d"),
        "score_sigma": ("98f6cf06ae10f84c344886b984e87fec7e4bc3cc9e852d7f92c45194230fae00",
                        "54790825a10edffca05a998abf86be066eec7dc447c6609caf683e681e20afad",
                        "e6b097f5ad47bbd1fe869578b327a317a2e3ea9daac2e458cc77c79ed5781bff",
                        "0414e182d7425c729d68db48bb6cfafc6179c18f484b99b8f862e65f9a498d5d"),
        "denoiser": ("629383c462db0ba1e2f243b09f5fd7b28d67ad1fd8fbe0d72ac12c562240b3f8",
                     "fedc6f40e370bb4b935048ea4dc936b546040bf7cf72e39248679f58bd662019",
                     "7e8c87b1fae221b160ce81e6e21fcdafbaeda1314b003e5fe51de879793e7e58",
                     "f96c93ca42f05d9ee6300783d589be2b52b440e3175a279fe5d70cf559bf5619"),
    },
    "AVX512+AMX": {
        "noise": ("8ab32d3d571a0a474d973f17660dfca505ed1a20eb933e7653ebcf942699dcb9",
                  "4a78debdf0bdc8613f8f68895866099ca99af6c51d03962924f1a6c4a96f4c93",
                  "e6b097f5ad47bbd1fe869578b327a317a2e3ea9daac2e458cc77c79ed5781bff",
                  "0414e182d7425c729d68db48bb6cfafc6179c18f484b99b8f862e65f9a498d5d"),
        "score_sigma": ("ccaada6bbf765b55dc9e9dab825c2010dfd1d8993667022ca227a4de675e5dd1",
                        "4a78debdf0bdc8613f8f68895866099ca99af6c51d03962924f1a6c4a96f4c93",
                        "e6b097f5ad47bbd1fe869578b327a317a2e3ea9daac2e458cc77c79ed5781bff",
                        "0414e182d7425c729d68db48bb6cfafc6179c18f484b99b8f862e65f9a498d5d"),
        "denoiser": ("438d441a22f82930a1bb7b2b474139f868696038fb87b5fa0aca2a363ed3f408",
                     "fedc6f40e370bb4b935048ea4dc936b546040bf7cf72e39248679f58bd662019",
                     "7e8c87b1fae221b160ce81e6e21fcdafbaeda1314b003e5fe51de879793e7e58",
                     "c42ca2923ad6572bb9a39223385197ae6b1d9a898a2228f4ca3bfedaf5a1e1f2"),
    },
}  # fmt: skip
# (noise and score_sigma agree past the checkpoint: the U-Net's last layer starts at zero, so
# Adam's first steps move it to exactly opposite weights and F/σ = −(−F)/σ.)


def _sha(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.parametrize("parameterization", list(OLD["AVX512"]))
def test_runs_of_the_older_parameterizations_load_and_sample_the_same_bytes(
    tmp_path, parameterization
):
    checkpoint_hash, score_hash, ald_hash, ode_hash = recorded(OLD)[parameterization]
    run = tmp_path / parameterization
    tiny = as_cli([*TINY_UNET, "schedule.num_levels=4", "schedule.steps_per_level=2",
                   "train.steps=3", "train.batch_size=8"])  # fmt: skip
    setting = f"model.parameterization={parameterization}"
    argv = ["train", "--config", "digits", *tiny, "--set", setting, "--run-dir", str(run)]
    argv.append("--no-progress")
    assert main(argv) == 0
    tensors = load_file(str(sorted((run / "checkpoints").glob("*.safetensors"))[-1]))
    digest = hashlib.sha256()
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(tensors[key]).tobytes())
    assert digest.hexdigest() == checkpoint_hash
    loaded = ncsn.load(run)
    x = torch.rand((4, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        score = loaded.model.score(x, torch.tensor([3.0, 1.0, 0.1, 0.01]))
    assert _sha(score.numpy()) == score_hash
    for sampler, steps, expected in (("ald", 2, ald_hash), ("ode", 6, ode_hash)):
        samples = loaded.sample(6, sampler=sampler, steps=steps, seed=3)
        samples = samples[0] if isinstance(samples, tuple) else samples
        assert _sha(samples.numpy()) == expected
