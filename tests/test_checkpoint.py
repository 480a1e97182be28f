import errno
import os
import pickle
import subprocess
import sys

import pytest
import torch

from ncsn import checkpoint, files
from ncsn.errors import NCSNError


def _tensors():
    return {"w": torch.arange(6.0).reshape(2, 3), "step": torch.tensor(3)}


def test_roundtrip_keeps_tensors_and_metadata(tmp_path):
    path = tmp_path / "ckpt-00000001.safetensors"
    checkpoint.save(path, _tensors(), {"step": 1, "note": "σ"})
    tensors, meta = checkpoint.load(path)
    assert torch.equal(tensors["w"], _tensors()["w"]) and meta == {"step": 1, "note": "σ"}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_flipped_byte_is_detected_by_the_checksum(tmp_path):
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, _tensors(), {})
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NCSNError, match="checksum"):
        checkpoint.load(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, _tensors(), {})
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(NCSNError, match=str(path.name)):
        checkpoint.load(path)


def test_pickle_named_like_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "ckpt-00000001.safetensors"
    path.write_bytes(pickle.dumps({"w": [1, 2]}, protocol=2))
    with pytest.raises(NCSNError, match="pickle"):
        checkpoint.load(path)
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(NCSNError, match="pickle"):
        checkpoint.load(path)


def test_latest_skips_a_corrupted_newest_checkpoint_with_a_warning(tmp_path):
    checkpoint.save(checkpoint.path_for(tmp_path, 10), _tensors(), {"step": 10})
    checkpoint.save(checkpoint.path_for(tmp_path, 20), _tensors(), {"step": 20})
    checkpoint.path_for(tmp_path, 20).write_bytes(b"garbage")
    warnings = []
    _, meta, path = checkpoint.latest(tmp_path, warn=warnings.append)
    assert meta["step"] == 10 and len(warnings) == 1 and "ckpt-00000020" in warnings[0]


def test_prune_keeps_the_newest(tmp_path):
    for step in (1, 2, 3, 4):
        checkpoint.save(checkpoint.path_for(tmp_path, step), _tensors(), {"step": step})
    checkpoint.prune(tmp_path, 2)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [3, 4]


def test_a_tensor_with_nan_or_inf_is_never_written(tmp_path):
    path = tmp_path / "ckpt-00000001.safetensors"
    for bad in (float("nan"), float("inf")):
        tensors = _tensors() | {"w": torch.tensor([1.0, bad])}
        with pytest.raises(checkpoint.NonFiniteError, match="not written.*'?w"):
            checkpoint.save(path, tensors, {})
    assert list(tmp_path.iterdir()) == []


def test_the_checksum_covers_the_metadata(tmp_path):
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, _tensors(), {"step": 1})
    data = path.read_bytes()
    assert data.count(b'\\"step\\": 1') == 1
    path.write_bytes(data.replace(b'\\"step\\": 1', b'\\"step\\": 7'))
    with pytest.raises(NCSNError, match="checksum"):
        checkpoint.load(path)


def test_format_1_checkpoints_still_load(tmp_path):
    from safetensors.torch import save as st_save

    tensors = _tensors()
    header = {"format": "ncsn-checkpoint-1", "ncsn": '{"step": 4}'}
    header["sha256"] = checkpoint._digest(tensors, None)
    path = tmp_path / "old.safetensors"
    path.write_bytes(st_save(tensors, metadata=header))
    assert checkpoint.load(path)[1] == {"step": 4}


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "c.bin"
    files.atomic_write_bytes(path, b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(NCSNError, match="disk full while writing .*c.bin"):
        files.atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["c.bin"]


def test_only_temporaries_of_dead_writers_are_removed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = tmp_path / f".ckpt-00000003.safetensors.tmp-{proc.pid}"
    alive = tmp_path / f".ckpt-00000006.safetensors.tmp-{os.getppid()}"
    other = tmp_path / "notes.tmp-1"
    for p in (dead, alive, other):
        p.write_bytes(b"x")
    assert files.remove_stale_temporaries(tmp_path) == 1
    assert not dead.exists() and alive.exists() and other.exists()


def test_latest_skips_checkpoints_its_check_rejects(tmp_path):
    for step in (1, 2):
        checkpoint.save(checkpoint.path_for(tmp_path, step), _tensors(), {"step": step})

    def check(meta, path):
        if meta["step"] == 2:
            raise NCSNError(f"{path}: rejected")

    warnings = []
    _, meta, _ = checkpoint.latest(tmp_path, warn=warnings.append, check=check)
    assert meta["step"] == 1 and "rejected" in warnings[0]
