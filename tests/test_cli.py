import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tiny import TINY_UNET, as_cli

from ncsn.cli import build_parser, main

TINY = as_cli(
    [
        *TINY_UNET,
        "schedule.num_levels=4",
        "schedule.steps_per_level=2",
        "train.steps=4",
        "train.batch_size=8",
    ]
)


def test_train_then_sample_writes_grid_gif_and_npz(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", "digits", *TINY, "--run-dir", str(run), "--no-progress"]) == 0
    out = tmp_path / "out"
    assert main(["sample", str(run), "--n", "12", "--seed", "3", "--out", str(out)]) == 0
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (12, 8, 8, 1) and images.dtype == np.uint8
    grid = Image.open(out / "grid.png")
    gif = Image.open(out / "chain.gif")
    assert grid.size[0] >= 4 * 32 and gif.n_frames > 2
    text = capsys.readouterr().out
    assert "NFE 9 per sample" in text  # L·T + 1 final denoising step
    assert (
        main(["sample", str(run), "--n", "12", "--seed", "3", "--out", str(tmp_path / "again")])
        == 0
    )
    assert np.array_equal(np.load(tmp_path / "again" / "samples.npz")["images"], images)
    assert main(["info", str(run)]) == 0
    assert "step 4 of 4" in capsys.readouterr().out


def test_schedule_prints_every_quantity_and_its_origin(capsys):
    assert main(["schedule", "--config", "digits", "--list"]) == 0
    out = capsys.readouterr().out
    for text in (
        "σ₁",
        "gamma",
        "num_levels",
        "step_size",
        "technique 1",
        "technique 2",
        "technique 4",
        "sigmas:",
    ):
        assert text in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--set", "train.stpes=3"], "did you mean 'train.steps'"),
        (["train", "--config", "nonexistent"], "presets"),
        (["sample", "/nonexistent/run"], "run directory not found"),
        (["info", "/nonexistent/run"], "run directory not found"),
    ],
)
def test_user_errors_exit_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ncsn: error:") and message in err and "Traceback" not in err


def test_errors_from_the_console_script_have_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps: -5\n")
    result = subprocess.run(
        [sys.executable, "-m", "ncsn.cli", "train", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "train.steps" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["train", "sample", "schedule", "info"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([command, "--help"])
    assert e.value.code == 0 and len(capsys.readouterr().out) > 200
