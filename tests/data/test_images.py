"""Image loaders: digits, MNIST IDX files, CIFAR-10 python batches, a folder of images."""

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn.data.folder import load_folder
from ncsn.data.images import load_cifar10, load_digits, load_mnist
from ncsn.errors import NCSNError

REAL_MNIST = Path("/work/shared/data/mnist")


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _mnist(root: Path, split: str = "train", n: int = 5, suffix: str = ".gz", labels: bool = True):
    prefix = "train" if split == "train" else "t10k"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n, dtype=np.uint8)
    _write(root / f"{prefix}-images-idx3-ubyte{suffix}", _idx_bytes(images, 0x803))
    if labels:
        _write(root / f"{prefix}-labels-idx1-ubyte{suffix}", _idx_bytes(y, 0x801))
    return images, y


def _cifar_batch(path: Path, n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = {b"batch_label": b"test", b"data": data, b"labels": labels}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return data, labels


class _RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


# digits


def test_digits_are_17_level_8x8_floats_with_10_classes():
    ds = load_digits()
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == torch.float32
    assert ds.levels == 17 and ds.name == "digits"
    assert ds.x.min() == 0 and ds.x.max() == 1
    assert torch.equal(torch.round(ds.x * 16), ds.x * 16)
    assert ds.labels.dtype == torch.int64 and ds.labels.unique().tolist() == list(range(10))


# MNIST


def test_mnist_gzipped_idx_round_trips(tmp_path):
    images, y = _mnist(tmp_path)
    ds = load_mnist(tmp_path, "train")
    assert ds.x.shape == (5, 1, 28, 28) and ds.x.dtype == torch.uint8 and ds.levels == 256
    assert np.array_equal(ds.x[:, 0].numpy(), images)
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == y.tolist()


def test_mnist_reads_plain_files_in_the_torchvision_layout(tmp_path):
    images, y = _mnist(tmp_path / "MNIST" / "raw", "test", n=3, suffix="")
    ds = load_mnist(tmp_path, "test")
    assert np.array_equal(ds.x[:, 0].numpy(), images) and ds.labels.tolist() == y.tolist()


def test_mnist_test_split_reads_t10k_not_train(tmp_path):
    _mnist(tmp_path, "train", n=4)
    _mnist(tmp_path, "test", n=2)
    assert len(load_mnist(tmp_path, "test")) == 2


def test_mnist_without_labels_file_loads_images_only(tmp_path):
    _mnist(tmp_path, labels=False)
    ds = load_mnist(tmp_path)
    assert len(ds) == 5 and ds.labels is None


def test_mnist_truncated_pixels_name_file_and_expected_bytes(tmp_path):
    images = np.zeros((5, 28, 28), np.uint8)
    path = _write(tmp_path / "train-images-idx3-ubyte.gz", _idx_bytes(images, 0x803)[:-100])
    with pytest.raises(NCSNError) as e:
        load_mnist(tmp_path)
    assert str(path) in str(e.value)
    assert "truncated: header says 5×28×28 = 3920 bytes of pixels, file has 3820" in str(e.value)


def test_mnist_bad_magic_is_reported(tmp_path):
    path = _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(np.zeros((2, 28, 28)), 0x801))
    with pytest.raises(NCSNError, match="magic number 0x00000801, expected 0x00000803") as e:
        load_mnist(tmp_path)
    assert str(path) in str(e.value)


def test_mnist_file_shorter_than_header_is_truncated(tmp_path):
    _write(tmp_path / "train-images-idx3-ubyte", b"\x00\x00\x08")
    with pytest.raises(NCSNError, match="truncated: 3 bytes, shorter than the 16-byte"):
        load_mnist(tmp_path)


def test_mnist_label_count_must_match_images(tmp_path):
    _mnist(tmp_path, n=5, labels=False)
    path = _write(tmp_path / "train-labels-idx1-ubyte.gz", _idx_bytes(np.zeros(4), 0x801))
    with pytest.raises(NCSNError, match="4 labels, but .* holds 5 images") as e:
        load_mnist(tmp_path)
    assert str(path) in str(e.value)


_NOISE = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("content", [b"not gzip at all", gzip.compress(_NOISE)[:-30]])
def test_mnist_corrupt_gzip_names_file(tmp_path, content):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(NCSNError, match="not a valid gzip file") as e:
        load_mnist(tmp_path)
    assert str(path) in str(e.value)


def test_mnist_missing_files_say_what_and_where(tmp_path):
    with pytest.raises(NCSNError) as e:
        load_mnist(tmp_path, "test")
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte" in msg and str(tmp_path) in msg
    assert str(tmp_path / "MNIST" / "raw") in msg


def test_mnist_download_failure_names_the_url(tmp_path, monkeypatch):
    monkeypatch.setenv("NCSN_MNIST_URL", "http://127.0.0.1:1/")  # closed port: no internet
    with pytest.raises(NCSNError, match="download failed") as e:
        load_mnist(tmp_path, "train", download=True)
    assert "http://127.0.0.1:1/train-images-idx3-ubyte.gz" in str(e.value)


@pytest.mark.skipif(
    not (REAL_MNIST / "t10k-images-idx3-ubyte.gz").exists(), reason="shared MNIST absent"
)
def test_real_mnist_test_set():
    ds = load_mnist(REAL_MNIST, "test")
    assert ds.x.shape == (10000, 1, 28, 28) and ds.x.dtype == torch.uint8
    assert ds.labels.unique().tolist() == list(range(10))


# CIFAR-10


def test_cifar10_train_batches_round_trip_from_parent_folder(tmp_path):
    written = [
        _cifar_batch(tmp_path / "cifar-10-batches-py" / f"data_batch_{i}", 2, i)
        for i in range(1, 6)
    ]
    ds = load_cifar10(tmp_path, "train")
    assert ds.x.shape == (10, 3, 32, 32) and ds.x.dtype == torch.uint8 and ds.levels == 256
    expected = np.concatenate([data for data, _ in written]).reshape(10, 3, 32, 32)
    assert np.array_equal(ds.x.numpy(), expected)
    assert ds.labels.tolist() == [v for _, labels in written for v in labels]


def test_cifar10_root_may_be_the_batch_folder_itself(tmp_path):
    data, labels = _cifar_batch(tmp_path / "test_batch", 3, 0)
    ds = load_cifar10(tmp_path, "test")
    assert np.array_equal(ds.x[1, 2].numpy(), data[1, 2048:].reshape(32, 32))
    assert ds.labels.tolist() == labels


def test_cifar10_reads_pickles_naming_numpy_core_as_the_real_files_do(tmp_path):
    data, labels = _cifar_batch(tmp_path / "test_batch", 2, 0)
    raw = (tmp_path / "test_batch").read_bytes()
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in raw
    (tmp_path / "test_batch").write_bytes(raw)
    ds = load_cifar10(tmp_path, "test")
    assert np.array_equal(ds.x.reshape(2, -1).numpy(), data) and ds.labels.tolist() == labels


def test_cifar10_disallowed_global_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "test_batch"
    payload = {b"data": _RunsShell(f"touch '{marker}'"), b"labels": [0]}
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(NCSNError, match=r"refusing to unpickle (posix|nt)\.system") as e:
        load_cifar10(tmp_path, "test")
    assert str(path) in str(e.value)
    assert not marker.exists()


def test_cifar10_truncated_pickle_names_file(tmp_path):
    _cifar_batch(tmp_path / "test_batch", 2, 0)
    path = tmp_path / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(NCSNError, match="not a CIFAR-10 python batch") as e:
        load_cifar10(tmp_path, "test")
    assert str(path) in str(e.value)


def test_cifar10_data_of_the_wrong_shape_is_reported(tmp_path):
    path = tmp_path / "test_batch"
    batch = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(NCSNError, match=r"shape \(N, 3072\), got uint8 array of shape \(2, 100\)"):
        load_cifar10(tmp_path, "test")


def test_cifar10_missing_batches_are_listed(tmp_path):
    for i in (1, 2, 3):
        _cifar_batch(tmp_path / f"data_batch_{i}", 1, i)
    with pytest.raises(NCSNError, match="data_batch_4, data_batch_5"):
        load_cifar10(tmp_path, "train")


# folder of images


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_folder_images_of_the_target_size_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (6, 6, 3), dtype=np.uint8) for _ in range(3)]
    for i, a in enumerate(arrays):
        _save(tmp_path / f"{i}.png", a)
    ds = load_folder(tmp_path, 6)
    assert ds.x.shape == (3, 3, 6, 6) and ds.x.dtype == torch.uint8 and ds.levels == 256
    assert np.array_equal(ds.x.permute(0, 2, 3, 1).numpy(), np.stack(arrays))


def test_folder_mixes_formats_modes_and_sizes_in_sorted_order(tmp_path):
    _save(tmp_path / "a.jpg", np.full((40, 30, 3), 200, np.uint8))
    _save(tmp_path / "b" / "grey.PNG", np.full((9, 12), 50, np.uint8))
    _save(tmp_path / "b" / "pal.gif", np.full((16, 16, 3), 100, np.uint8))
    _save(tmp_path / "c.bmp", np.full((8, 8, 3), 10, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    _save(tmp_path / ".hidden" / "skip.png", np.zeros((8, 8), np.uint8))
    ds = load_folder(tmp_path, 4)
    assert ds.x.shape == (4, 3, 4, 4)
    assert [int(v) for v in ds.x[:, 0, 2, 2]] == pytest.approx([200, 50, 100, 10], abs=3)


def test_folder_crops_the_centre_square(tmp_path):
    strip = np.zeros((10, 30, 3), np.uint8)
    strip[:, :10, 0] = strip[:, 10:20, 1] = strip[:, 20:, 2] = 255
    _save(tmp_path / "strip.png", strip)
    ds = load_folder(tmp_path, 5)
    assert (ds.x[0, 1] == 255).all() and (ds.x[0, [0, 2]] == 0).all()


def test_folder_grey_transparent_and_16_bit_images(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black → white
    _save(tmp_path / "a.png", rgba)
    _save(tmp_path / "b.png", np.full((4, 4), 0x8000, np.uint16))
    ds = load_folder(tmp_path, 4, channels=1)
    assert ds.x.shape == (2, 1, 4, 4)
    assert (ds.x[0] == 255).all() and (ds.x[1] == 128).all()


def test_folder_truncated_image_names_file(tmp_path):
    path = _save(
        tmp_path / "x.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    )
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(NCSNError, match="cannot read image") as e:
        load_folder(tmp_path, 8)
    assert str(path) in str(e.value)


def test_folder_file_that_is_not_an_image_names_file(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_text("hello")
    with pytest.raises(NCSNError, match="cannot read image") as e:
        load_folder(tmp_path, 8)
    assert str(path) in str(e.value)


def test_folder_without_images_lists_extensions(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(NCSNError, match=r"no images found .*\.png, \.jpg") as e:
        load_folder(tmp_path, 8)
    assert str(tmp_path) in str(e.value)


def test_folder_that_does_not_exist_is_reported(tmp_path):
    with pytest.raises(NCSNError, match="image folder not found"):
        load_folder(tmp_path / "nope", 8)
