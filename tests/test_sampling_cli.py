import numpy as np
import pytest
from PIL import Image
from tiny import TINY_UNET, as_cli

from ncsn.cli import main
from ncsn.devices import cpp_compiler

TINY = as_cli(
    [
        *TINY_UNET,
        "schedule.num_levels=4",
        "schedule.steps_per_level=2",
        "train.steps=2",
        "train.batch_size=8",
    ]
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--config", "digits", *TINY, "--run-dir", str(run), "--no-progress"]) == 0
    return run


@pytest.mark.parametrize(
    "sampler, steps, nfe",
    [("ald", 3, 4 * 3 + 1), ("pc", 5, 4 * 2 + 1), ("ode", 6, 2 * 6 - 1), ("churn", 6, 2 * 6 - 1)],
)
def test_each_sampler_writes_samples_and_reports_nfe(run, tmp_path, capsys, sampler, steps, nfe):
    out = tmp_path / sampler
    argv = [
        "sample",
        str(run),
        "--sampler",
        sampler,
        "--steps",
        str(steps),
        "--n",
        "5",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert f"NFE {nfe} per sample" in capsys.readouterr().out
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (5, 8, 8, 1)
    assert Image.open(out / "chain.gif").format == "GIF"
    assert main([*argv[:-1], str(tmp_path / "again")]) == 0
    assert np.array_equal(np.load(tmp_path / "again" / "samples.npz")["images"], images)


def _png(path, array):
    Image.fromarray(array.astype(np.uint8)).save(path)
    return str(path)


def test_inpaint_denoise_refine_write_their_images(run, tmp_path, capsys):
    rng = np.random.default_rng(0)
    image = _png(tmp_path / "x.png", rng.integers(0, 256, (8, 8)))
    mask = np.zeros((8, 8))
    mask[:, :4] = 255
    mask = _png(tmp_path / "m.png", mask)
    assert (
        main(
            [
                "inpaint",
                str(run),
                "--image",
                image,
                "--mask",
                mask,
                "--n",
                "3",
                "--out",
                str(tmp_path / "i"),
            ]
        )
        == 0
    )
    assert (tmp_path / "i" / "inpainted.png").exists()
    assert main(["denoise", str(run), "--image", image, "--out", str(tmp_path / "d")]) == 0
    assert "estimated" in capsys.readouterr().out
    assert (
        main(
            ["denoise", str(run), "--image", image, "--sigma", "0.1", "--out", str(tmp_path / "d")]
        )
        == 0
    )
    assert (
        main(
            [
                "refine",
                str(run),
                "--image",
                image,
                "--sigma",
                "0.3",
                "--n",
                "2",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    assert (tmp_path / "r" / "refined.png").exists()


def test_bad_image_is_a_clear_error(run, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["denoise", str(run), "--image", str(bad)]) == 2
    assert "bad.png" in capsys.readouterr().err


def test_ald_step_follows_the_ncsnv2_rule_for_another_t_only_when_the_run_used_it():
    from ncsn import schedule
    from ncsn.samplers.run import ald_eps

    ruled = schedule.resolve(schedule_cfg(step_size="auto"), None)
    fixed = schedule.resolve(schedule_cfg(step_size=2e-5), None)
    assert ald_eps(ruled, 5, None) == ruled.step_size
    assert ald_eps(ruled, 50, None) == schedule.step_size_for(ruled.gamma, ruled.sigma_min, 50)
    assert ald_eps(fixed, 50, None) == 2e-5
    assert ald_eps(ruled, 50, 1e-4) == 1e-4


def test_ald_on_a_coarser_ladder_uses_its_levels_and_the_rule_for_its_gamma(run, capsys):
    import torch

    from ncsn import schedule
    from ncsn.samplers import run as samplers
    from ncsn.training.state import load_run

    model, sched, _, _ = load_run(run, log=lambda m: None)
    seen = []
    x, nfe, text = samplers.sample(
        model,
        sched,
        (3, 1, 8, 8),
        generator=torch.Generator().manual_seed(0),
        sampler="ald",
        steps=2,
        opts=samplers.ALD(levels=7),
        callback=lambda s: seen.append(s["sigma"]),
    )
    sigmas = schedule.geometric_sigmas(sched.sigma_max, sched.sigma_min, 7)
    gamma = (sched.sigma_max / sched.sigma_min) ** (1 / 6)
    assert nfe == 7 * 2 + 1 and text.startswith("ald (L = 7, T = 2")
    assert f"ε = {schedule.step_size_for(gamma, sched.sigma_min, 2):.4g}" in text
    assert sorted(set(round(s, 6) for s in seen[:-1]), reverse=True) == [
        round(s, 6) for s in sigmas
    ]
    assert main(["sample", str(run), "--levels", "0", "--n", "2"]) == 2


def schedule_cfg(**kw):
    from ncsn.config import ScheduleConfig

    return ScheduleConfig(sigma_max=1.0, num_levels=10, steps_per_level=5, **kw)


@pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile on the CPU needs a C++ compiler")
def test_compile_gives_the_same_samples_up_to_rounding(run, tmp_path, capsys):
    argv = ["sample", str(run), "--sampler", "ode", "--steps", "3", "--n", "4", "--out"]
    assert main([*argv, str(tmp_path / "eager")]) == 0
    assert main([*argv, str(tmp_path / "compiled"), "--compile"]) == 0
    eager = np.load(tmp_path / "eager" / "samples.npz")["images"].astype(int)
    compiled = np.load(tmp_path / "compiled" / "samples.npz")["images"].astype(int)
    assert np.abs(eager - compiled).max() <= 1  # fused kernels round differently, nothing more


def test_compile_without_a_cpp_compiler_is_a_clear_error(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    monkeypatch.delenv("CXX", raising=False)
    argv = ["sample", str(run), "--sampler", "ode", "--steps", "3", "--n", "2"]
    assert main([*argv, "--out", str(tmp_path / "s"), "--compile", "--device", "cpu"]) != 0
    err = capsys.readouterr().err
    assert "--compile" in err and "C++ compiler" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


# --- the fast samplers (ipndm, dpmpp_2m, dpmpp_2m_sde, unipc, restart) --------------------------


@pytest.mark.parametrize(
    "sampler, flags, nfe",
    [
        ("ipndm", [], 10),
        ("ipndm", ["--max-order", "2", "--step-schedule", "loguniform"], 10),
        ("dpmpp_2m", [], 10),
        ("dpmpp_2m_sde", ["--eta", "0.5"], 10),
        ("unipc", [], 10),
        ("unipc", ["--unipc-order", "3", "--step-schedule", "loguniform"], 10),
        ("restart", [], 2 * 10 - 1 + 2 * 2 * 4),  # defaults K = 2, M = 4
        ("restart", ["--restarts", "1", "--restart-steps", "3", "--restart-max", "2"], 19 + 6),
        ("restart", ["--restarts", "0"], 19),
        ("restart", ["--restart-solver", "dpmpp_2m"], 10 + 2 * 4),  # N + K·M
        ("restart", ["--restart-solver", "dpmpp_2m", "--restarts", "0"], 10),
    ],
)
def test_each_fast_sampler_writes_samples_and_reports_nfe(
    run, tmp_path, capsys, sampler, flags, nfe
):
    out = tmp_path / sampler
    argv = ["sample", str(run), "--sampler", sampler, "--steps", "10", "--n", "5", *flags]
    assert main([*argv, "--out", str(out)]) == 0
    assert f"NFE {nfe} per sample" in capsys.readouterr().out
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (5, 8, 8, 1)
    assert main([*argv, "--out", str(tmp_path / "again")]) == 0
    assert np.array_equal(np.load(tmp_path / "again" / "samples.npz")["images"], images)


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--max-order", "0"),
        ("--max-order", "5"),
        ("--unipc-order", "0"),
        ("--unipc-order", "4"),
        ("--eta", "-1"),
        ("--eta", "nan"),
        ("--restarts", "-1"),
        ("--restart-steps", "0"),
        ("--restart-min", "0"),
        ("--restart-max", "inf"),
        ("--restart-max", "0.05"),  # not above --restart-min (0.1)
    ],
)
def test_bad_fast_sampler_flags_exit_2_in_one_line_naming_the_flag(run, capsys, flag, value):
    assert main(["sample", str(run), "--sampler", "restart", flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ncsn: error: {flag} ")


@pytest.mark.parametrize(
    "sampler, flag, value",
    [("ipndm", "--step-schedule", "linear"), ("restart", "--restart-solver", "euler")],
)
def test_unknown_choices_are_refused_by_the_parser(run, capsys, sampler, flag, value):
    with pytest.raises(SystemExit) as stop:
        main(["sample", str(run), "--sampler", sampler, flag, value])
    assert stop.value.code == 2
    assert flag in capsys.readouterr().err.strip().splitlines()[-1]


def test_the_runs_sample_section_names_the_default_sampler(tmp_path, capsys):
    run = tmp_path / "ode-run"
    sets = [*TINY, "--set", "sample.sampler=ode", "--set", "sample.steps=4"]
    assert main(["train", "--config", "digits", *sets, "--run-dir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "2", "--out", str(tmp_path / "a")]) == 0
    assert "ode (Heun, N = 4" in capsys.readouterr().out  # its sampler and steps
    assert (
        main(["sample", str(run), "--n", "2", "--sampler", "ode", "--out", str(tmp_path / "b")])
        == 0
    )
    assert "N = 18" in capsys.readouterr().out  # another --sampler: that sampler's default steps
    assert main(["sample", str(run), "--n", "2", "--steps", "3", "--out", str(tmp_path / "c")]) == 0
    assert "ode (Heun, N = 3" in capsys.readouterr().out
