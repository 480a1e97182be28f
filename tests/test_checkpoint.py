import pickle

import pytest
import torch

from ncsn import checkpoint
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
