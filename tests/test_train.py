import csv

import pytest
import torch
from tiny import TINY_UNET

from ncsn import checkpoint, config
from ncsn.devices import cpp_compiler
from ncsn.errors import NCSNError
from ncsn.training.loop import train
from ncsn.training.state import load_run

TINY_IMAGES = [
    *TINY_UNET,
    "data.name=digits",
    "data.dequantize=true",
    "data.hflip=true",
    "schedule.num_levels=5",
    "model.dropout=0.1",
    "train.batch_size=16",
    "train.log_every=1",
    "train.warmup=2",
]


def _cfg(tmp_path, name, steps, extra=()):
    return config.load(
        None,
        [
            *TINY_IMAGES,
            f"train.steps={steps}",
            f"run_dir={tmp_path / name}",
            "train.checkpoint_every=3",
            *extra,
        ],
    )


def _losses(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [(int(r["step"]), r["loss"]) for r in csv.DictReader(f)]


def test_resume_gives_the_same_losses_and_weights_as_an_uninterrupted_run(tmp_path):
    train(_cfg(tmp_path, "straight", 8), progress=False, log=lambda *_: None)
    train(_cfg(tmp_path, "resumed", 3), progress=False, log=lambda *_: None)
    train(_cfg(tmp_path, "resumed", 8), progress=False, log=lambda *_: None)
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "resumed")
    a, _ = checkpoint.load(checkpoint.path_for(tmp_path / "straight" / "checkpoints", 8))
    b, _ = checkpoint.load(checkpoint.path_for(tmp_path / "resumed" / "checkpoints", 8))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_lowers_the_loss_and_writes_the_run_directory(tmp_path):
    cfg = _cfg(
        tmp_path,
        "run",
        60,
        ["train.lr=0.002", "train.batch_size=64", "train.preview_every=60", "train.log_every=10"],
    )
    train(cfg, progress=False, log=lambda *_: None)
    losses = [float(v) for _, v in _losses(tmp_path / "run")]
    assert losses[-1] < 0.6 * losses[0]
    for name in ("config.yaml", "schedule.json", "metrics.csv", "previews/step-00000060.png"):
        assert (tmp_path / "run" / name).exists()
    model, sched, _, meta = load_run(tmp_path / "run")
    assert meta["step"] == 60 and sched.num_levels == 5
    assert len(checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints")) == 3  # keep_last


def test_ema_weights_differ_from_raw_weights(tmp_path):
    train(_cfg(tmp_path, "run", 3), progress=False, log=lambda *_: None)
    ema, *_ = load_run(tmp_path / "run", ema=True)
    raw, *_ = load_run(tmp_path / "run", ema=False)
    assert any(
        not torch.equal(a, b) for a, b in zip(ema.parameters(), raw.parameters(), strict=True)
    )


def test_ema_warmup_follows_the_num_updates_rule(tmp_path):
    """One step with ema_warmup: decay min(0.999, 1/10) = 0.1, so EMA = 0.1·θ₀ + 0.9·θ₁."""
    from ncsn.model import build_model

    cfg = _cfg(tmp_path, "run", 1, ["train.ema_warmup=true", "model.dropout=0.0"])
    train(cfg, progress=False, log=lambda *_: None)
    ema, sched, _, meta = load_run(tmp_path / "run", ema=True)
    raw, *_ = load_run(tmp_path / "run", ema=False)
    torch.manual_seed(cfg.train.seed)  # the loop builds the model right after this
    init = build_model(cfg.model, tuple(meta["data_shape"]), sched.sigmas)
    for e, r, i in zip(ema.parameters(), raw.parameters(), init.parameters(), strict=True):
        torch.testing.assert_close(e, 0.1 * i + 0.9 * r, rtol=0, atol=1e-6)
    pairs = zip(raw.parameters(), init.parameters(), strict=True)
    assert any(not torch.equal(r, i) for r, i in pairs)  # the step changed the weights


@pytest.mark.parametrize(
    "switch",
    [
        "train.channels_last=true",
        pytest.param(
            "train.compile=true",
            marks=pytest.mark.skipif(cpp_compiler() is None, reason="no C++ compiler"),
        ),
    ],
)
def test_speed_switch_trains_the_same_model(tmp_path, switch):
    plain = _cfg(tmp_path, "plain", 2, ["model.dropout=0.0"])
    fast = _cfg(tmp_path, "fast", 2, ["model.dropout=0.0", switch])
    for cfg in (plain, fast):
        train(cfg, progress=False, log=lambda *_: None)
    a, *_ = load_run(tmp_path / "plain", ema=False)
    b, *_ = load_run(tmp_path / "fast", ema=False)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


def test_compile_without_a_cpp_compiler_is_refused_before_anything_is_written(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CXX", raising=False)
    cfg = _cfg(tmp_path, "run", 2, ["train.compile=true", "train.device=cpu"])
    with pytest.raises(NCSNError, match="train.compile = true: .*C\\+\\+ compiler"):
        train(cfg, progress=False, log=lambda *_: None)
    assert not (tmp_path / "run").exists()


def test_resume_with_a_different_architecture_is_refused(tmp_path):
    train(_cfg(tmp_path, "run", 3), progress=False, log=lambda *_: None)
    with pytest.raises(NCSNError, match="model.channels"):
        train(_cfg(tmp_path, "run", 6, ["model.channels=16"]), progress=False, log=lambda *_: None)


def test_batch_larger_than_the_data_is_refused(tmp_path):
    cfg = _cfg(tmp_path, "run", 3, ["data.subset=[0, 10]"])
    with pytest.raises(NCSNError, match="batch_size"):
        train(cfg, progress=False, log=lambda *_: None)


def test_sliced_score_matching_trains(tmp_path):
    cfg = _cfg(tmp_path, "ssm", 3, ["train.objective=ssm", "train.ssm_projections=2"])
    train(cfg, progress=False, log=lambda *_: None)
    losses = [float(v) for _, v in _losses(tmp_path / "ssm")]
    assert len(losses) == 3 and all(abs(v) < 1e6 for v in losses)
