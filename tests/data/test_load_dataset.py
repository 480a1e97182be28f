"""load_dataset: dispatch on data.name, subsets, and the download switch."""

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn.config import DataConfig
from ncsn.data import Dataset, load_dataset, load_digits
from ncsn.errors import NCSNError


def test_digits_subset_keeps_labels_aligned():
    full = load_digits()
    ds = load_dataset(DataConfig(name="digits", subset=[10, 20]))
    assert len(ds) == 10
    assert torch.equal(ds.x, full.x[10:20]) and torch.equal(ds.labels, full.labels[10:20])


def test_subset_past_the_end_reports_the_actual_length():
    with pytest.raises(NCSNError, match=r"stop 5000 is past the end of digits, which has 1797"):
        load_dataset(DataConfig(name="digits", subset=[0, 5000]))


def test_subset_with_start_after_stop_is_rejected():
    with pytest.raises(NCSNError, match="0 <= start < stop"):
        load_dataset(DataConfig(name="digits", subset=[5, 2]))


def test_mnist_split_is_passed_through(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(2, 28, 28)
    header = struct.pack(">IIII", 0x803, 2, 28, 28)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
    ds = load_dataset(DataConfig(name="mnist", root=str(tmp_path), split="test"))
    assert ds.name == "mnist" and np.array_equal(ds.x[:, 0].numpy(), images)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_download_switch_reaches_the_downloader(tmp_path, name, monkeypatch):
    monkeypatch.setenv("NCSN_MNIST_URL", "http://127.0.0.1:1/")  # closed port: no internet
    monkeypatch.setenv("NCSN_CIFAR10_URL", "http://127.0.0.1:1/cifar-10-python.tar.gz")
    cfg = DataConfig(name=name, root=str(tmp_path), split="test", download=True)
    with pytest.raises(NCSNError, match="download failed") as e:
        load_dataset(cfg)
    expected = "t10k-images-idx3-ubyte.gz" if name == "mnist" else "cifar-10-python.tar.gz"
    assert f"http://127.0.0.1:1/{expected}" in str(e.value)


def test_folder_defaults_to_rgb(tmp_path):
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "a.png")
    ds = load_dataset(DataConfig(name="folder", root=str(tmp_path), image_size=3))
    assert ds.x.shape == (1, 3, 3, 3)


def test_folder_channels_one_is_grey(tmp_path):
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(tmp_path / "a.png")
    ds = load_dataset(DataConfig(name="folder", root=str(tmp_path), image_size=3, channels=1))
    assert ds.x.shape == (1, 1, 3, 3)


@pytest.mark.parametrize("name", ["npz", "npy"])
def test_array_files_are_loaded_and_subset(tmp_path, name):
    path = tmp_path / f"v.{name}"
    data = np.linspace(0, 1, 20).reshape(10, 2)
    if name == "npz":
        np.savez(path, x=data)
    else:
        np.save(path, data)
    ds = load_dataset(DataConfig(name=name, root=str(path), subset=[2, 5]))
    assert ds.x.shape == (3, 2) and np.allclose(ds.x.numpy(), data[2:5])


def test_toy_calls_load_toy_with_preset_size_and_seed(monkeypatch):
    calls = []

    def fake_load_toy(name, n, seed):
        calls.append((name, n, seed))
        return Dataset(torch.zeros(n, 2), "toy")

    monkeypatch.setattr("ncsn.data.load_toy", fake_load_toy)
    ds = load_dataset(DataConfig(name="toy", toy="ring8", toy_n=7, subset=[0, 3]), seed=11)
    assert calls == [("ring8", 7, 11)] and len(ds) == 3


def test_root_must_be_set_for_file_based_sources():
    with pytest.raises(NCSNError, match="data.root is not set"):
        load_dataset(DataConfig(name="npz"))
