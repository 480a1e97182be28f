"""Every bad input ends in ``ncsn: error: …``, exit status 2, no traceback, nothing half-written.

Covers invalid config values, missing/empty/truncated/malformed data files, image folders that
cannot be reconciled, wrong-shaped arrays, tampered and foreign checkpoints, a full disk while
writing a checkpoint, running out of memory, malicious pickles posing as checkpoints, and names
from configs or checkpoints that could lead outside the run directory.
"""

import errno
import gzip
import json
import os
import pathlib
import pickle
import shutil
import struct
import sys
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn import checkpoint, config
from ncsn.cli import main
from ncsn.training.loop import train

TOY = [
    "data.name=toy",
    "data.toy_n=64",
    "model.net=mlp",
    "model.hidden=16",
    "model.layers=1",
    "model.embedding_dim=8",
    "schedule.sigma_max=10.0",
    "schedule.num_levels=3",
    "schedule.steps_per_level=1",
    "train.batch_size=8",
    "train.preview_every=0",
    "train.checkpoint_every=3",
    "sample.gif_frames=2",
]


def _cli(argv, capsys) -> str:
    """Run ``ncsn argv``; assert exit status 2 and a one-line error; return stderr."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "ncsn: error:" in err and "Traceback" not in err
    return err


def _ok(argv) -> None:
    assert main([str(a) for a in argv]) == 0


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("toy") / "run"
    cfg = config.load(None, [*TOY, "train.steps=3", f"run_dir={run}"])
    train(cfg, progress=False, log=lambda *_: None)
    return run


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize(
    "items, message",
    [
        (["schedule.sigma_max=0.01"], "schedule.sigma_max = 0.01: expected greater than"),
        (["schedule.sigma_max=0.005"], "schedule.sigma_max = 0.005: expected greater than"),
        (["schedule.num_levels=0"], "schedule.num_levels = 0: expected at least 1"),
        (["train.steps=0"], "train.steps = 0: expected a positive integer"),
        (["train.steps=-5"], "train.steps = -5: expected a positive integer"),
        (["train.batch_size=0"], "train.batch_size = 0"),
        (["train.batch_size=5000"], "larger than the data set (1797 examples)"),
        (["train.stpes=3"], "did you mean 'train.steps'"),
        (["model.chanels=8"], "did you mean 'model.channels'"),
        (["trian.steps=3"], "did you mean 'train'"),
        (["train.steps=abc"], "train.steps = 'abc': expected an integer"),
        (["train.lr=.inf"], "train.lr = inf: expected a finite number"),
        (["schedule.sigma_min=.nan"], "schedule.sigma_min = nan: expected a finite number"),
        (["train.weight_decay=-1"], "train.weight_decay"),
        (["train.nonfinite_patience=0"], "train.nonfinite_patience"),
        (["train.nonfinite_lr_factor=1.5"], "train.nonfinite_lr_factor"),
        (["train.device=meta"], "expected auto, cpu, cuda, cuda:N or mps"),
        (["data.toy=../../escape", "data.name=toy", "model.net=mlp"], "unknown toy data set"),
    ],
)
def test_invalid_config_values_are_refused_before_anything_is_written(
    items, message, tmp_path, capsys
):
    run = tmp_path / "run"
    err = _cli(["train", *_sets(items), "--run-dir", run, "--no-progress"], capsys)
    assert message in err
    assert not run.exists()


def _idx(path, dims, payload=None, magic=0x0803):
    header = struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)
    path.write_bytes(header + (payload if payload is not None else bytes(int(np.prod(dims)))))


def _mnist(root):
    root.mkdir()
    return root / "train-images-idx3-ubyte"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda r: None, "MNIST train images not found"),
        (lambda r: _mnist(r).write_bytes(b""), "truncated: 0 bytes"),
        (lambda r: _idx(_mnist(r), (3, 28, 28), bytes(100)), "truncated"),
        (lambda r: _idx(_mnist(r), (3, 28, 28), magic=0x0801), "not an IDX images file"),
        (lambda r: _mnist(r).with_suffix(".gz").write_bytes(b"\x1f\x8bgarbage"), "gzip"),
    ],
)
def test_missing_empty_truncated_or_malformed_mnist_files(make, message, tmp_path, capsys):
    make(tmp_path / "mnist")
    items = ["data.name=mnist", f"data.root={tmp_path / 'mnist'}"]
    err = _cli(["train", *_sets(items), "--run-dir", tmp_path / "run"], capsys)
    assert message in err
    assert not (tmp_path / "run").exists()


def test_a_malformed_cifar_batch_is_refused(tmp_path, capsys):
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"):
        (folder / name).write_bytes(pickle.dumps({b"data": [1, 2, 3], b"labels": [0]}))
    err = _cli(
        ["schedule", *_sets(["data.name=cifar10", f"data.root={tmp_path / 'cifar'}"])], capsys
    )
    assert "data_batch_1: b'data' should be a uint8 array of shape (N, 3072)" in err


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 8, 8, 5), np.uint8), "5 channels in the last axis"),
        (np.zeros((4, 8, 8, 4), np.uint8), "drop the alpha channel"),
        (np.zeros((4,), np.float32), "expected (N, D), (N, H, W) or (N, H, W, C)"),
        (np.zeros((0, 3), np.float32), "holds no examples"),
        (np.zeros((5, 0), np.float32), "every example is empty"),
        (np.full((4, 2), 2.0, np.float32), "must lie in [0, 1]"),
        (np.full((4, 2), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((4, 2), np.int32), "int32 array: expected uint8 images"),
    ],
)
def test_wrong_shaped_or_typed_arrays_are_refused(array, message, tmp_path, capsys):
    np.save(tmp_path / "x.npy", array)
    err = _cli(["schedule", *_sets(["data.name=npy", f"data.root={tmp_path / 'x.npy'}"])], capsys)
    assert message in err


def test_an_npz_with_a_truncated_member_is_refused(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", images=np.zeros((4, 8, 8), np.uint8))
    data = (tmp_path / "x.npz").read_bytes()
    (tmp_path / "x.npz").write_bytes(data[: len(data) // 2])
    err = _cli(["schedule", *_sets(["data.name=npz", f"data.root={tmp_path / 'x.npz'}"])], capsys)
    assert "x.npz" in err


def _folder_items(root, channels=3):
    return [
        "data.name=folder",
        f"data.root={root}",
        "data.image_size=4",
        f"data.channels={channels}",
    ]


def test_a_folder_of_mixed_sizes_and_modes_is_reconciled(tmp_path, capsys):
    root = tmp_path / "images"
    root.mkdir()
    Image.fromarray(np.full((7, 10), 40000, np.uint16)).save(root / "grey16.png")
    Image.new("CMYK", (9, 5), (0, 128, 255, 0)).save(root / "cmyk.jpg")
    palette = Image.new("P", (6, 6))
    palette.info["transparency"] = 0
    palette.save(root / "palette.png", transparency=0)
    Image.new("RGBA", (12, 12), (255, 0, 0, 128)).save(root / "rgba.png")
    Image.new("1", (8, 3)).save(root / "bits.bmp")
    Image.new("LA", (5, 9), (30, 200)).save(root / "la.png")
    Image.new("F", (4, 4), 0.5).save(root / "float.tiff")
    for channels in (1, 3):
        assert main(["schedule", *_sets(_folder_items(root, channels))]) == 0
        assert f"7 examples of shape ({channels}, 4, 4)" in capsys.readouterr().out


def test_a_folder_image_that_cannot_be_converted_is_named(tmp_path, capsys):
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (6, 6)).save(root / "ok.png")
    Image.new("RGB", (6, 6)).convert("LAB").save(root / "lab.tiff")
    err = _cli(["schedule", *_sets(_folder_items(root, channels=1))], capsys)
    assert "lab.tiff: cannot convert its LAB pixels to L" in err


@pytest.mark.parametrize(
    "files, message",
    [
        ({}, "no images found"),
        ({"notes.txt": b"hello"}, "no images found"),
        ({"broken.png": b"\x89PNG\r\n\x1a\nnot really"}, "broken.png: cannot read image"),
        ({".hidden.png": b"whatever"}, "no images found"),
    ],
)
def test_a_folder_without_readable_images_is_refused(files, message, tmp_path, capsys):
    root = tmp_path / "images"
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    err = _cli(["train", *_sets(_folder_items(root)), "--run-dir", tmp_path / "run"], capsys)
    assert message in err
    assert not (tmp_path / "run").exists()


def _tamper(run, change):
    """Rewrite the run's checkpoint with ``change(meta)`` applied and a valid checksum."""
    (_, path), *_ = checkpoint.list_checkpoints(run / "checkpoints")
    tensors, meta = checkpoint.load(path)
    checkpoint.save(path, tensors, change(meta))


def _set_hidden(meta):
    meta["config"]["model"]["hidden"] = 32
    return meta


@pytest.mark.parametrize(
    "change, message",
    [
        (_set_hidden, "weights do not fit the model its config describes"),
        (lambda m: m | {"data_shape": [10**9]}, "malformed schedule.data_mean"),
        (lambda m: m | {"data_shape": "big"}, "checkpoint metadata has data_shape = 'big'"),
        (lambda m: {k: v for k, v in m.items() if k != "schedule"}, "lacks schedule"),
        (lambda m: m | {"schedule": {"sigmas": [-1.0]}}, "malformed schedule"),
        (lambda m: m | {"config": {"model": {"net": "transformer"}}}, "model.net = 'transformer'"),
        (lambda m: [m], "checkpoint metadata is a list"),
    ],
)
def test_sample_refuses_a_tampered_or_foreign_checkpoint(
    change, message, toy_run, tmp_path, capsys
):
    run = _copy(toy_run, tmp_path)
    _tamper(run, change)
    err = _cli(["sample", run, "--n", 2, "--out", tmp_path / "out"], capsys)
    assert message in err
    assert not (tmp_path / "out").exists()


def test_resume_refuses_a_checkpoint_of_another_architecture(toy_run, tmp_path, capsys):
    run = _copy(toy_run, tmp_path)
    items = [*TOY, "train.steps=6", "model.hidden=32"]
    err = _cli(["train", *_sets(items), "--run-dir", run, "--no-progress"], capsys)
    assert "model.hidden: checkpoint 16, config 32" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
    tmp_path, capsys, monkeypatch
):
    real_fsync = os.fsync

    def fsync(fd):
        if "ckpt-00000006" in os.readlink(f"/proc/self/fd/{fd}"):
            os.ftruncate(fd, os.fstat(fd).st_size // 2)  # half the bytes made it to disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    run = tmp_path / "run"
    argv = ["train", *_sets([*TOY, "train.steps=9"]), "--run-dir", run, "--no-progress"]
    monkeypatch.setattr(os, "fsync", fsync)
    err = _cli(argv, capsys)
    monkeypatch.undo()
    assert "disk full while writing" in err and "ckpt-00000006" in err
    ckpts = run / "checkpoints"
    assert [s for s, _ in checkpoint.list_checkpoints(ckpts)] == [3]
    checkpoint.load(checkpoint.path_for(ckpts, 3))  # intact: loads and verifies
    assert [p.name for p in run.rglob("*") if ".tmp-" in p.name or p.name == ".lock"] == []
    _ok(argv)
    assert "resumed from" in capsys.readouterr().out and checkpoint.path_for(ckpts, 9).exists()


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, MemoryError])
def test_out_of_memory_in_a_training_step_says_to_lower_the_batch_size(
    error, tmp_path, capsys, monkeypatch
):
    def fault(step, loss, model, ema):
        if step == 4:
            raise error("simulated: tried to allocate 80 GiB")
        return loss

    monkeypatch.setattr("ncsn.training.loop._fault", fault)
    run = tmp_path / "run"
    err = _cli(
        ["train", *_sets([*TOY, "train.steps=9"]), "--run-dir", run, "--no-progress"], capsys
    )
    assert "out of memory" in err and "train.batch_size = 8" in err
    assert [s for s, _ in checkpoint.list_checkpoints(run / "checkpoints")] == [3]
    assert not (run / ".lock").exists()


class _Evil:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _payloads(marker):
    evil = _Evil(marker)
    zipped = pathlib.Path(str(marker) + ".zip")
    with zipfile.ZipFile(zipped, "w") as z:  # the layout of torch.save
        z.writestr("archive/data.pkl", pickle.dumps(evil, protocol=2))
    return {
        "protocol-2": pickle.dumps(evil, protocol=2),
        "protocol-0": pickle.dumps(evil, protocol=0),
        "torch.save-zip": zipped.read_bytes(),
        "gzipped": gzip.compress(pickle.dumps(evil, protocol=4)),
    }


@pytest.mark.parametrize("kind", ["protocol-2", "protocol-0", "torch.save-zip", "gzipped"])
def test_a_malicious_pickle_posing_as_a_checkpoint_never_runs(kind, tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[kind]
    if kind.startswith("protocol"):
        pickle.loads(payload)  # the payload does work: it creates the marker
        assert marker.exists()
        marker.unlink()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "ckpt-00000009.safetensors").write_bytes(payload)
    assert "no usable checkpoint" in _cli(["sample", run, "--n", 2], capsys)
    assert "no usable checkpoint" in _cli(["info", run], capsys)
    err = _cli(["train", *_sets(TOY), "--run-dir", run, "--no-progress"], capsys)
    assert "none of its 1 checkpoints is usable" in err
    assert not marker.exists()


def test_names_from_configs_and_checkpoints_never_lead_outside_the_run(toy_run, tmp_path, capsys):
    run = _copy(toy_run, tmp_path / "inside")

    def hostile(meta):
        meta["data_name"] = "../../../escape"
        meta["config"]["data"]["toy"] = "../../../escape"
        meta["config"]["run_dir"] = str(tmp_path / "elsewhere")
        return meta

    _tamper(run, hostile)
    before = {p for p in tmp_path.rglob("*")}
    _ok(["sample", run, "--n", 2, "--steps", 1])
    _ok(["info", run, "--json"])
    capsys.readouterr()
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p.is_relative_to(run / "samples") for p in new)


def test_info_json_of_a_run_is_valid_json(toy_run, capsys):
    _ok(["info", toy_run, "--json"])
    text = capsys.readouterr().out
    assert json.loads(text[text.index("{") :])["step"] == 3


def test_a_cifar_pickle_with_a_malformed_dtype_state_is_read_safely(tmp_path, capsys):
    """Found by fuzzing: numpy's dtype __setstate__ trusted this state and crashed Python."""
    pixels = (np.arange(2 * 3072) % 256).astype(np.uint8).reshape(2, 3072)
    batch = {b"data": pixels, b"labels": [1, 2]}
    data = pickle.dumps(batch, protocol=2)
    assert data.count(b"NNNJ\xff\xff\xff\xff") == 1  # the dtype state (3, '|', None×3, -1, …)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(data.replace(b"NNNJ\xff", b"NJ\xff"))
    items = ["data.name=cifar10", f"data.root={tmp_path}", "data.split=test"]
    items += ["schedule.sigma_max=1.0"]
    assert main(["schedule", *_sets(items)]) == 0
    assert "2 examples of shape (3, 32, 32)" in capsys.readouterr().out
