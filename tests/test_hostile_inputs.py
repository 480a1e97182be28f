"""Inputs meant to hang ``ncsn``, exhaust its memory or make it print a traceback (issue 14).

Each case must end in exit status 2 with one ``ncsn: error:`` line naming what was typed, within a
few seconds and a bounded amount of memory (the process's peak RSS may not grow by more than
``MEMORY_MB`` during the call), leaving nothing behind in the run directory.
"""

import json
import resource
import shutil
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image
from tiny import TINY_UNET, as_cli

from ncsn.cli import main

SECONDS = 10.0  # per case, in-process (CI machines are shared: generous, but not minutes)
MEMORY_MB = 300


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _refused(argv, capsys, *, names: str) -> str:
    """Run ``ncsn argv`` in-process: exit 2, one error line that contains ``names``, no
    traceback, within SECONDS and MEMORY_MB of new peak memory."""
    before, start = _peak_mb(), time.perf_counter()
    code = main([str(a) for a in argv])
    seconds, grown = time.perf_counter() - start, _peak_mb() - before
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ncsn: error:"), err[:2000]
    assert names in lines[0] and "Traceback" not in err
    assert seconds < SECONDS and grown < MEMORY_MB, (seconds, grown)
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("hostile") / "run"
    tiny = as_cli([*TINY_UNET, "schedule.num_levels=3", "train.steps=2", "train.batch_size=8"])
    assert main(["train", "--config", "digits", *tiny, "--run-dir", str(run), "--no-progress"]) == 0
    return run


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _laughs(levels: int) -> str:
    """YAML whose aliases expand to 9^levels entries under a valid key."""
    lines = ["model:", "  channel_mult: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines[1] = "x0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"
    for i in range(1, levels):
        lines.append(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines[1:]) + f"\nmodel:\n  channel_mult: *a{levels - 1}\n"


def test_a_billion_laughs_config_is_refused_without_expanding_it(tmp_path, capsys):
    path = tmp_path / "laughs.yaml"
    path.write_text(_laughs(10))
    line = _refused(
        ["train", "--config", path, "--run-dir", tmp_path / "r"], capsys, names=str(path)
    )
    assert "alias" in line and len(line) < 400
    assert not (tmp_path / "r").exists()


def test_an_alias_in_a_set_override_is_refused(tmp_path, capsys):
    item = "model.channel_mult=[&a [1, 1], *a, *a]"
    _refused(["schedule", "--set", item], capsys, names=f"--set {item}")


def test_a_config_file_over_the_size_limit_is_refused_unread(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (2 << 20) + "\n")
    _refused(["schedule", "--config", path], capsys, names=str(path))


@pytest.mark.parametrize(
    "argv_tail, names",
    [
        (["--n", "10000000000"], "--n 10000000000"),
        (["--steps", "100000000000"], "--steps 100000000000"),
        (["--batch-size", "10000000000"], "--batch-size 10000000000"),
        (["--seed", str(2**70)], f"--seed {2**70}"),
        (["--seed", "-1"], "--seed -1"),
        (["--levels", str(10**9)], f"--levels {10**9}"),
        (["--eps", "inf"], "--eps inf"),
        (["--s-noise", "nan"], "--s-noise nan"),
        (["--device", "cuda:7"], "--device 'cuda:7'"),
    ],
)
def test_sample_refuses_sizes_seeds_and_devices_it_cannot_serve(run, capsys, argv_tail, names):
    before = _listing(run)
    _refused(["sample", run, *argv_tail], capsys, names=names)
    assert _listing(run) == before


def test_a_sample_set_larger_than_the_free_disk_is_refused_before_sampling(
    run, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("shutil.disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 10**6))
    line = _refused(["sample", run, "--n", "100000", "--out", tmp_path / "o"], capsys, names="--n")
    assert "GiB" in line and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "command", [["bands", "--experts", "2"], ["inpaint", "--image", "x", "--mask", "m"]]
)
def test_a_huge_seed_is_refused_by_every_command_that_takes_one(run, capsys, command):
    name, *rest = command
    _refused([name, run, *rest, "--seed", str(2**64)], capsys, names=f"--seed {2**64}")


def test_classifier_and_toy_refuse_a_huge_seed(tmp_path, capsys):
    out = tmp_path / "c.safetensors"
    _refused(["classifier", "train", "--out", out, "--seed", str(2**70)], capsys, names="--seed")
    _refused(["toy", "--out", tmp_path / "t", "--seed", str(2**70)], capsys, names="--seed")
    assert not out.exists() and not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    "item",
    [
        "schedule.num_levels=1000000000",
        "schedule.steps_per_level=10000000000",
        "train.seed=1180591620717411303424",
        "model.channels=100000000",
        "data.image_size=1000000",
    ],
)
def test_absurd_config_sizes_are_refused_naming_the_set_override(tmp_path, capsys, item):
    run = tmp_path / "r"
    _refused(["train", "--set", item, "--run-dir", run], capsys, names=f"--set {item}")
    assert not run.exists()


def test_a_model_too_large_for_the_machine_is_refused_with_the_estimate(tmp_path, capsys):
    run = tmp_path / "r"
    line = _refused(["train", "--set", "model.channels=4096", "--run-dir", run], capsys,
                    names="parameters need about")  # fmt: skip
    assert "GiB" in line and not run.exists()


def test_a_bad_set_override_is_blamed_not_the_preset_it_overrides(tmp_path, capsys):
    line = _refused(
        ["schedule", "--config", "digits", "--set", "schedule.sigma_min=.nan"],
        capsys,
        names="--set schedule.sigma_min=.nan",
    )
    assert "digits.yaml" not in line


def _bomb(path, width=9_000, height=9_000):
    """A tiny PNG whose header claims ``width`` × ``height`` pixels (a decompression bomb)."""
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("flag", ["--image", "--mask"])
def test_a_decompression_bomb_is_refused_by_inpaint(run, tmp_path, capsys, flag):
    bomb, good = _bomb(tmp_path / "bomb.png"), tmp_path / "good.png"
    Image.new("L", (8, 8), 255).save(good)
    images = {"--image": good, "--mask": good, flag: bomb}
    argv = ["inpaint", run, "--image", images["--image"], "--mask", images["--mask"]]
    line = _refused(argv, capsys, names=f"{flag} {bomb}")
    assert "9000×9000" in line and "decompression bomb" in line
    _bomb(bomb, 40_000, 40_000)  # beyond Pillow's own limit: refused by Pillow, still one line
    assert "decompression bomb" in _refused(argv, capsys, names=f"{flag} {bomb}")
    assert not (run / "inpaint").exists()


@pytest.mark.parametrize("command", [["denoise"], ["refine", "--sigma", "0.3"]])
def test_a_decompression_bomb_is_refused_by_denoise_and_refine(run, tmp_path, capsys, command):
    bomb = _bomb(tmp_path / "bomb.png")
    _refused([command[0], run, "--image", bomb, *command[1:]], capsys, names=f"--image {bomb}")
    assert not (run / command[0]).exists()


def test_a_decompression_bomb_in_an_image_folder_is_named(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a.png")
    bomb = _bomb(tmp_path / "imgs" / "b.png")
    sets = ["data.name=folder", f"data.root={tmp_path / 'imgs'}", "data.image_size=8"]
    _refused(["schedule", *as_cli(sets)], capsys, names=str(bomb))


@pytest.mark.parametrize("command", [["inpaint", "--mask"], ["refine", "--sigma", "0.3"]])
def test_more_completions_than_memory_holds_are_refused_up_front(run, tmp_path, capsys, command):
    image = tmp_path / "x.png"
    Image.new("L", (8, 8), 255).save(image)
    argv = [command[0], run, "--image", image, *command[1:]]
    argv += [image] if command[1] == "--mask" else []
    line = _refused([*argv, "--n", "900000000"], capsys, names="--n 900,000,000")
    assert "GiB" in line and not (run / command[0]).exists()


def test_a_mask_of_another_size_is_refused_unless_resize_is_asked(run, tmp_path, capsys):
    image, mask = tmp_path / "x.png", tmp_path / "m.png"
    Image.new("L", (8, 8), 128).save(image)
    Image.new("L", (16, 16), 255).save(mask)
    argv = ["inpaint", run, "--image", image, "--mask", mask, "--n", "1", "--steps", "1"]
    line = _refused(argv, capsys, names=f"--mask {mask}")
    assert "16×16" in line and "--resize" in line and not (run / "inpaint").exists()
    assert main([*map(str, argv), "--resize"]) == 0
    assert "resized from 16×16 to 8×8" in capsys.readouterr().out


def test_cuda_without_a_gpu_names_the_device_flag(run, capsys):
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    _refused(["sample", run, "--device", "cuda"], capsys, names="--device 'cuda'")


def test_a_checkpoints_file_in_the_run_directory_is_named_and_nothing_is_written(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "checkpoints").write_text("not a folder")
    tiny = as_cli([*TINY_UNET, "train.steps=1", "train.batch_size=8"])
    line = _refused(["train", *tiny, "--run-dir", run], capsys, names=str(run / "checkpoints"))
    assert "is a file; expected a folder" in line
    assert _listing(run) == ["checkpoints"]


@pytest.mark.parametrize(
    "argv, names",
    [
        (lambda t, r: ["schedule", "--config", t], "is a directory"),
        (lambda t, r: ["sample", r, "--out", t / "afile"], "--out"),
        (lambda t, r: ["inpaint", r, "--image", t, "--mask", t], "--image"),
        (lambda t, r: ["info", t / "afile"], "afile"),
        (lambda t, r: ["train", "--run-dir", t / "afile"], "afile"),
    ],
)
def test_paths_of_the_wrong_kind_are_said_to_be_so(run, tmp_path, capsys, argv, names):
    (tmp_path / "afile").write_text("x")
    _refused(argv(tmp_path, run), capsys, names=names)


def test_a_local_directory_that_shadows_a_preset_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    line = _refused(["schedule", "--config", "digits"], capsys, names="--config 'digits'")
    assert "is a directory" in line and "hides the preset" in line


def test_in_a_fresh_process_a_bomb_ends_in_one_line_and_exit_2(tmp_path):
    """End to end, as a user runs it: no traceback, bounded time and memory."""
    path = tmp_path / "laughs.yaml"
    path.write_text(_laughs(9))
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ncsn.cli", "train", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    _, status, usage = __import__("os").wait4(proc.pid, 0)
    err = proc.stderr.read()
    assert status >> 8 == 2 and err.count("\n") == 1 and "alias" in err
    assert time.perf_counter() - start < 60 and usage.ru_maxrss / 1024 < 1500
    assert json.dumps(err)  # printable, short
    assert not any(p.name == "runs" for p in tmp_path.iterdir())


def test_an_npz_written_in_batches_loads_like_np_savez(run, tmp_path):
    out = tmp_path / "s"
    assert main(["sample", str(run), "--n", "7", "--batch-size", "3", "--out", str(out)]) == 0
    with np.load(out / "samples.npz") as f:
        assert f.files == ["images"] and f["images"].shape == (7, 8, 8, 1)
