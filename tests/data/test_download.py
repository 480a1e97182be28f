"""Downloads of MNIST and CIFAR-10, against a local HTTP server (never the internet)."""

import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
from functools import partial

import numpy as np
import pytest

from ncsn.config import DataConfig
from ncsn.data import download, load_dataset
from ncsn.data.images import load_cifar10, load_mnist
from ncsn.errors import NCSNError


@pytest.fixture
def server(tmp_path):
    """A quiet HTTP server on 127.0.0.1 serving the files of ``tmp_path / 'www'``."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=www))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _mnist_files(www, monkeypatch, n=3) -> np.ndarray:
    """Fake t10k IDX files in ``www`` with their checksums injected; returns the images."""
    images = np.arange(n * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(n, 28, 28)
    files = {
        "t10k-images-idx3-ubyte.gz": struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes(),
        "t10k-labels-idx1-ubyte.gz": struct.pack(">II", 0x801, n) + bytes(range(n)),
    }
    md5 = dict(download.MNIST_MD5)
    for name, raw in files.items():
        data = gzip.compress(raw)
        (www / name).write_bytes(data)
        md5[name] = _md5(data)
    monkeypatch.setattr(download, "MNIST_MD5", md5)
    return images


def _tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _cifar_batch(n: int) -> bytes:
    data = np.arange(n * 3072, dtype=np.uint32).astype(np.uint8).reshape(n, 3072)
    return pickle.dumps({b"data": data, b"labels": list(range(n))}, protocol=2)


def _serve_cifar(www, base, monkeypatch, members: dict[str, bytes]) -> None:
    data = _tarball(members)
    (www / "cifar.tar.gz").write_bytes(data)
    monkeypatch.setenv("NCSN_CIFAR10_URL", f"{base}/cifar.tar.gz")
    monkeypatch.setattr(download, "CIFAR10_MD5", _md5(data))


def test_mnist_download_fetches_verifies_and_loads(server, tmp_path, monkeypatch):
    www, base = server
    images = _mnist_files(www, monkeypatch)
    monkeypatch.setenv("NCSN_MNIST_URL", base + "/")
    root = tmp_path / "data"
    ds = load_dataset(DataConfig(name="mnist", root=str(root), split="test", download=True))
    assert np.array_equal(ds.x[:, 0].numpy(), images)
    assert ds.labels.tolist() == [0, 1, 2]
    assert sorted(p.name for p in root.iterdir()) == sorted(download.MNIST_MD5)[:2]


def test_mnist_falls_back_to_the_next_mirror(server, tmp_path, monkeypatch):
    www, base = server
    _mnist_files(www, monkeypatch)
    monkeypatch.setenv("NCSN_MNIST_URL", f"{base}/missing/,{base}/")
    assert len(load_mnist(tmp_path / "data", "test", download=True)) == 3


def test_checksum_mismatch_names_url_and_both_digests(server, tmp_path, monkeypatch):
    www, base = server
    _mnist_files(www, monkeypatch)
    actual = _md5((www / "t10k-images-idx3-ubyte.gz").read_bytes())
    monkeypatch.setitem(download.MNIST_MD5, "t10k-images-idx3-ubyte.gz", "0" * 32)
    monkeypatch.setenv("NCSN_MNIST_URL", base)
    with pytest.raises(NCSNError, match="checksum mismatch") as e:
        load_mnist(tmp_path / "data", "test", download=True)
    msg = str(e.value)
    assert f"{base}/t10k-images-idx3-ubyte.gz" in msg and "0" * 32 in msg and actual in msg
    assert list((tmp_path / "data").iterdir()) == []  # nothing half-written is left behind


def test_http_404_is_a_clear_error(server, tmp_path, monkeypatch):
    _, base = server
    monkeypatch.setenv("NCSN_MNIST_URL", base)
    with pytest.raises(NCSNError, match="HTTP 404") as e:
        load_mnist(tmp_path, "train", download=True)
    assert f"{base}/train-images-idx3-ubyte.gz" in str(e.value)


def test_unreachable_server_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NCSN_CIFAR10_URL", "http://127.0.0.1:1/cifar.tar.gz")
    with pytest.raises(NCSNError, match="download failed") as e:
        load_cifar10(tmp_path, "test", download=True)
    assert "http://127.0.0.1:1/cifar.tar.gz" in str(e.value)


def test_cifar10_download_extracts_and_loads(server, tmp_path, monkeypatch):
    www, base = server
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    members = {f"cifar-10-batches-py/{name}": _cifar_batch(2) for name in names}
    _serve_cifar(www, base, monkeypatch, members)
    ds = load_cifar10(tmp_path, "train", download=True)
    assert ds.x.shape == (10, 3, 32, 32)
    assert (tmp_path / "cifar-10-python.tar.gz").is_file()


@pytest.mark.parametrize(
    "name", ["cifar-10-batches-py/../../evil", "/tmp/evil", "cifar-10-batches-py/../evil"]
)
def test_tar_member_escaping_the_folder_is_refused(server, tmp_path, monkeypatch, name):
    www, base = server
    _serve_cifar(www, base, monkeypatch, {"cifar-10-batches-py/test_batch": b"x", name: b"x"})
    root = tmp_path / "data"
    with pytest.raises(NCSNError, match="refusing to extract"):
        load_cifar10(root, "test", download=True)
    assert not (root / "cifar-10-batches-py").exists()
    assert not (tmp_path / "evil").exists()


def test_tar_symlink_member_is_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    (tmp_path / "a.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(NCSNError, match="links and devices"):
        download.extract_tar(tmp_path / "a.tar.gz", tmp_path, only="cifar-10-batches-py")
