"""FID Inception-V3: architecture, weights loading (.pth and .safetensors), refusals."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from ncsn.errors import NCSNError
from ncsn.metrics.inception import FEATURE_DIM, FIDInceptionV3, load_inception


class _Payload:
    """An arbitrary object: weights_only loading must refuse to construct it."""


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return FIDInceptionV3().state_dict()


@pytest.fixture(scope="module")
def pth_file(state_dict, tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "pt_inception.pth"
    torch.save(state_dict, path)
    return path


def test_state_dict_uses_pytorch_fid_key_names(state_dict):
    assert state_dict["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state_dict["Mixed_7c.branch_pool.bn.running_var"].shape == (192,)
    assert state_dict["fc.weight"].shape == (1008, FEATURE_DIM)
    assert sum(v.numel() for k, v in state_dict.items() if "running" not in k) > 23_000_000


def test_pth_weights_load_and_give_pool3_features_for_grey_images(pth_file):
    model = load_inception(pth_file)
    with torch.inference_mode():
        features = model(torch.rand(2, 1, 28, 28))
    assert features.shape == (2, FEATURE_DIM)
    assert torch.isfinite(features).all()


def test_safetensors_weights_load_to_the_same_parameters(state_dict, tmp_path):
    path = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    loaded = load_inception(path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state_dict.items())


def test_batch_norm_counters_are_optional(state_dict, tmp_path):
    path = tmp_path / "old_format.pth"
    torch.save({k: v for k, v in state_dict.items() if "num_batches" not in k}, path)
    assert isinstance(load_inception(path), FIDInceptionV3)


def test_missing_key_is_refused_naming_file_and_key(state_dict, tmp_path):
    path = tmp_path / "missing.pth"
    torch.save({k: v for k, v in state_dict.items() if k != "Mixed_6b.branch1x1.conv.weight"}, path)
    with pytest.raises(NCSNError, match="missing.pth.*'Mixed_6b.branch1x1.conv.weight'"):
        load_inception(path)


def test_unexpected_key_is_refused_naming_it(state_dict, tmp_path):
    path = tmp_path / "extra.pth"
    torch.save({**state_dict, "AuxLogits.fc.weight": torch.zeros(1)}, path)
    with pytest.raises(NCSNError, match="extra.pth.*unexpected.*'AuxLogits.fc.weight'"):
        load_inception(path)


def test_wrong_shape_is_refused_naming_key_and_shapes(state_dict, tmp_path):
    path = tmp_path / "shape.pth"
    torch.save({**state_dict, "fc.weight": torch.zeros(1000, FEATURE_DIM)}, path)
    with pytest.raises(NCSNError, match=r"shape.pth.*'fc.weight'.*\(1000, 2048\).*\(1008, 2048\)"):
        load_inception(path)


def test_file_that_is_not_weights_is_refused(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights")
    with pytest.raises(NCSNError, match="notes.pth"):
        load_inception(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_arbitrary_object_is_refused_without_constructing_it(tmp_path):
    path = tmp_path / "payload.pth"
    with open(path, "wb") as f:
        pickle.dump({"weight": _Payload()}, f)
    with pytest.raises(NCSNError, match="payload.pth.*weights_only"):
        load_inception(path)


def test_pickled_non_dict_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(NCSNError, match="list.pth.*not a state dict"):
        load_inception(path)


def test_missing_file_is_refused_naming_it(tmp_path):
    with pytest.raises(NCSNError, match="nowhere.pth"):
        load_inception(tmp_path / "nowhere.pth")


def test_images_with_two_channels_are_refused():
    with torch.device("meta"):
        model = FIDInceptionV3()
    with pytest.raises(NCSNError, match="1 or 3"):
        model(torch.zeros(1, 2, 8, 8, device="meta"))
