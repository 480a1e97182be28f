"""NumPy loaders: .npz archives and .npy arrays, channels last in, (N, C, H, W) out."""

import pickle
import zipfile

import numpy as np
import pytest
import torch

from ncsn.data.arrays import load_array
from ncsn.errors import NCSNError


def _images(shape=(4, 5, 6, 3)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)


def test_npz_uint8_images_channels_last_become_nchw(tmp_path):
    images = _images()
    path = tmp_path / "samples.npz"
    np.savez(path, images=images, labels=np.arange(4))
    ds = load_array(path)
    assert ds.x.shape == (4, 3, 5, 6) and ds.x.dtype == torch.uint8 and ds.levels == 256
    assert np.array_equal(ds.x.permute(0, 2, 3, 1).numpy(), images)
    assert ds.labels.tolist() == [0, 1, 2, 3] and ds.name == "npz"


def test_npz_prefers_images_then_x(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, other=np.zeros((2, 3)), x=np.full((3, 2), 0.5), images=_images((1, 2, 2)))
    assert load_array(path).x.shape == (1, 1, 2, 2)
    np.savez(path, other=np.zeros((2, 3)), x=np.full((3, 2), 0.5))
    assert load_array(path).x.shape == (3, 2)


def test_npz_with_a_single_array_uses_it_whatever_its_name(tmp_path):
    path = tmp_path / "a.npz"
    np.savez_compressed(path, arr_0=_images((2, 4, 4, 1)))
    assert load_array(path).x.shape == (2, 1, 4, 4)


def test_npz_with_several_unnamed_arrays_lists_the_keys(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, a=np.zeros((2, 2)), b=np.zeros((2, 2)))
    with pytest.raises(NCSNError, match=r"2 arrays \(a, b\) and none named images or x") as e:
        load_array(path)
    assert str(path) in str(e.value)


def test_npz_labels_must_match_the_examples(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, images=_images(), labels=np.arange(3))
    with pytest.raises(NCSNError, match="3 labels for 4 examples"):
        load_array(path)


def test_npy_grey_uint8_images_get_one_channel(tmp_path):
    images = _images((3, 4, 5))
    path = tmp_path / "grey.npy"
    np.save(path, images)
    ds = load_array(path)
    assert ds.x.shape == (3, 1, 4, 5) and np.array_equal(ds.x[:, 0].numpy(), images)
    assert ds.name == "npy" and ds.labels is None


def test_npy_float_images_in_unit_range_become_float32_nchw(tmp_path):
    images = np.random.default_rng(0).random((2, 4, 4, 3))
    path = tmp_path / "f.npy"
    np.save(path, images)
    ds = load_array(path)
    assert ds.x.shape == (2, 3, 4, 4) and ds.x.dtype == torch.float32 and ds.levels is None
    assert np.allclose(ds.x.permute(0, 2, 3, 1).numpy(), images, atol=1e-7)


def test_npy_float_vectors_stay_vectors(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.array([[0.0, 1.0], [0.25, 0.5], [1.0, 0.0]]))
    ds = load_array(path)
    assert ds.x.shape == (3, 2) and ds.x.dtype == torch.float32 and not ds.is_image
    assert ds.x[1].tolist() == [0.25, 0.5]


def test_floats_outside_unit_range_name_file_and_min_max(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.array([[-0.5, 1.0], [0.0, 3.0]], np.float32))
    with pytest.raises(NCSNError, match=r"found min -0\.5 and max 3") as e:
        load_array(path)
    assert str(path) in str(e.value)


def test_nan_values_are_rejected(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.array([[0.5, np.nan]]))
    with pytest.raises(NCSNError, match="NaN or infinite"):
        load_array(path)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.zeros((2, 4, 4, 4), np.uint8), "4 channels in the last axis.*drop the alpha"),
        (np.zeros((2, 3, 8, 8), np.uint8), "8 channels in the last axis"),
        (np.zeros((2, 5), np.uint8), r"expected \(N, H, W\) or \(N, H, W, C\)"),
        (np.zeros((2, 4, 4), np.int64), "int64 array: expected uint8 images"),
        (np.zeros(5, np.float32), r"expected \(N, D\)"),
        (np.zeros((0, 4, 4), np.uint8), "holds no examples"),
    ],
)
def test_unusable_arrays_are_rejected_with_the_reason(tmp_path, array, expected):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(NCSNError, match=expected) as e:
        load_array(path)
    assert str(path) in str(e.value)


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(NCSNError, match="object array.*never loaded"):
        load_array(path)


def test_object_arrays_inside_npz_are_never_unpickled(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(NCSNError, match="object array") as e:
        load_array(path)
    assert "'images'" in str(e.value)


def test_plain_pickles_are_refused(tmp_path):
    path = tmp_path / "data.npy"
    path.write_bytes(pickle.dumps(np.zeros((2, 2))))
    with pytest.raises(NCSNError, match="a Python pickle, not a NumPy"):
        load_array(path)


def test_truncated_npy_names_file(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, _images())
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(NCSNError, match="malformed NumPy data") as e:
        load_array(path)
    assert str(path) in str(e.value)


def test_truncated_npz_names_file(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, images=_images())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(NCSNError, match="malformed NumPy data") as e:
        load_array(path)
    assert str(path) in str(e.value)


def test_corrupt_npz_member_names_file(tmp_path):
    path = tmp_path / "c.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("images.npy", b"\x93NUMPY garbage")
    with pytest.raises(NCSNError, match="malformed NumPy data") as e:
        load_array(path)
    assert "'images'" in str(e.value)


def test_text_file_is_not_an_array_file(tmp_path):
    path = tmp_path / "x.npy"
    path.write_text("1,2,3")
    with pytest.raises(NCSNError, match="not a NumPy .npy or .npz file"):
        load_array(path)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(NCSNError, match="array file not found"):
        load_array(tmp_path / "none.npz")
