import pytest

from ncsn import config
from ncsn.errors import NCSNError


def test_defaults_train_on_digits():
    cfg = config.load(None)
    assert cfg.data.name == "digits" and cfg.train.objective == "dsm" and cfg.train.loss_power == 2


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 10\nmodel:\n  channel_mult: [1, 2, 2]\n")
    cfg = config.load(path, ["train.lr=0.01", "schedule.sigma_max=3", "data.subset=[0, 100]"])
    assert cfg.train.steps == 10 and cfg.train.lr == 0.01 and cfg.schedule.sigma_max == 3.0
    assert cfg.model.channel_mult == [1, 2, 2] and cfg.data.subset == [0, 100]


def test_saved_config_loads_back_equal(tmp_path):
    cfg = config.load(None, ["train.steps=7", "model.net=mlp"])
    config.save(cfg, tmp_path / "c.yaml")
    assert config.load(tmp_path / "c.yaml") == cfg


def test_unknown_key_suggests_the_right_one(tmp_path):
    with pytest.raises(NCSNError, match="did you mean 'train.steps'"):
        config.load(None, ["train.stpes=3"])


@pytest.mark.parametrize(
    "override, field",
    [
        ("schedule.sigma_max=0.001", "schedule.sigma_max"),
        ("schedule.num_levels=0", "schedule.num_levels"),
        ("train.steps=-1", "train.steps"),
        ("train.steps=ten", "train.steps"),
        ("train.batch_size=0", "train.batch_size"),
        ("model.net=transformer", "model.net"),
        ("train.ema=1.5", "train.ema"),
        ("data.subset=[5, 2]", "data.subset"),
    ],
)
def test_invalid_values_name_the_field(override, field):
    with pytest.raises(NCSNError, match=field.replace(".", r"\.")):
        config.load(None, [override])


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(NCSNError, match="bad.yaml"):
        config.load(path)
    with pytest.raises(NCSNError, match="not found"):
        config.load(tmp_path / "missing.yaml")


def test_override_without_equals_is_an_error():
    with pytest.raises(NCSNError, match="key=value"):
        config.load(None, ["train.steps"])


def test_exponent_without_a_dot_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("schedule:\n  step_size: 2e-5\n")
    assert config.load(path, ["train.lr=1e-3"]).schedule.step_size == 2e-5
    assert config.load(None, ["train.lr=1e-3"]).train.lr == 1e-3
