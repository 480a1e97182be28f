"""The non-finite guard: skipped steps change nothing; K in a row roll back and lower the lr."""

import csv
import math

import pytest
import torch
from tiny import TINY_TOY

from ncsn import checkpoint, config
from ncsn.errors import NCSNError
from ncsn.training.loop import MAX_ROLLBACKS, train

TOY = [*TINY_TOY, "train.log_every=1", "train.lr=0.001"]


def _cfg(tmp_path, name, steps, extra=()):
    return config.load(None, [*TOY, f"train.steps={steps}", f"run_dir={tmp_path / name}", *extra])


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _load(run_dir, step):
    return checkpoint.load(checkpoint.path_for(run_dir / "checkpoints", step))


def _weights(tensors):
    """Model, EMA and optimizer tensors (not the generator states, which move every step)."""
    return {k: v for k, v in tensors.items() if not k.startswith("rng.")}


class _NaNGradient(torch.autograd.Function):
    """Identity forward, NaN gradient backward: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def _inject(monkeypatch, steps, how="loss"):
    """Make the loss (or its gradient) non-finite once at each 0-based step in ``steps``."""
    pending = set(steps)

    def fault(step, loss, model, ema):
        if step not in pending:
            return loss
        pending.discard(step)
        if how == "loss":
            return loss * float("nan")
        if how == "gradient":
            return _NaNGradient.apply(loss)
        with torch.no_grad():  # how == "ema": corrupt the weights that are checkpointed
            next(ema.parameters()).fill_(float("inf"))
        return loss

    monkeypatch.setattr("ncsn.training.loop._fault", fault)


@pytest.mark.parametrize("how", ["loss", "gradient"])
def test_a_nonfinite_step_changes_no_weight_moment_or_ema(tmp_path, monkeypatch, how):
    _inject(monkeypatch, {3}, how)
    messages = []
    train(
        _cfg(tmp_path, "run", 5, ["train.checkpoint_every=1", "train.keep_last=5"]),
        progress=False,
        log=messages.append,
    )
    assert any("skipped 1 step(s)" in m and "steps 4–4" in m for m in messages)
    before, after, later = (_weights(_load(tmp_path / "run", s)[0]) for s in (3, 4, 5))
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(after[k], later[k]) for k in after)
    rows = _rows(tmp_path / "run")
    assert [r["skipped"] for r in rows] == ["0", "0", "0", "1", "1"]
    assert math.isnan(float(rows[3]["loss"])) and math.isfinite(float(rows[4]["loss"]))


def test_a_skipped_step_without_the_fused_kernel_is_skipped_too(tmp_path, monkeypatch):
    real_adam = torch.optim.Adam

    def adam(params, fused=None, **kwargs):
        if fused:
            raise RuntimeError("no fused kernel here")
        return real_adam(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", adam)
    _inject(monkeypatch, {3})
    train(
        _cfg(tmp_path, "run", 4, ["train.checkpoint_every=1", "train.keep_last=2"]),
        progress=False,
        log=lambda *_: None,
    )
    before, after = (_weights(_load(tmp_path / "run", s)[0]) for s in (3, 4))
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_consecutive_nonfinite_steps_roll_back_and_lower_the_learning_rate(tmp_path, monkeypatch):
    extra = ["train.checkpoint_every=3", "train.nonfinite_patience=3"]
    train(_cfg(tmp_path, "clean", 9, extra), progress=False, log=lambda *_: None)
    _inject(monkeypatch, {3, 4, 5})
    messages = []
    train(_cfg(tmp_path, "run", 9, extra), progress=False, log=messages.append)
    assert any("3 consecutive steps" in m and "rolled back to step 3" in m for m in messages)
    rows, clean = _rows(tmp_path / "run"), _rows(tmp_path / "clean")
    assert [int(r["step"]) for r in rows] == list(range(1, 10))
    # rows 1-3 as in the clean run; row 4 is the replay of step 4 from the restored state:
    # same weights and random draws give the same loss and gradient, then the lr is halved
    same = [(r["step"], r["loss"], r["grad_norm"]) for r in rows[:4]]
    assert same == [(r["step"], r["loss"], r["grad_norm"]) for r in clean[:4]]
    assert rows[5]["loss"] != clean[5]["loss"]
    assert [float(r["lr"]) for r in rows[:3]] == [0.001] * 3
    assert [float(r["lr"]) for r in rows[3:]] == [0.0005] * 6
    assert rows[-1]["skipped"] == "3"
    _, meta = _load(tmp_path / "run", 9)
    assert meta["nonfinite"] == {"skipped": 3, "rollbacks": 1, "lr_scale": 0.5}


def test_the_lowered_learning_rate_survives_a_resume(tmp_path, monkeypatch):
    extra = ["train.checkpoint_every=3", "train.nonfinite_patience=2"]
    _inject(monkeypatch, {3, 4})
    train(_cfg(tmp_path, "run", 6, extra), progress=False, log=lambda *_: None)
    train(_cfg(tmp_path, "run", 9, extra), progress=False, log=lambda *_: None)
    assert [float(r["lr"]) for r in _rows(tmp_path / "run")[6:]] == [0.0005] * 3
    assert _load(tmp_path / "run", 9)[1]["nonfinite"]["lr_scale"] == 0.5


def test_nonfinite_weights_are_never_checkpointed(tmp_path, monkeypatch):
    _inject(monkeypatch, {4}, how="ema")
    messages = []
    train(
        _cfg(tmp_path, "run", 9, ["train.checkpoint_every=3", "train.keep_last=5"]),
        progress=False,
        log=messages.append,
    )
    assert any("not written" in m and "rolled back to step 3" in m for m in messages)
    for step in (3, 6, 9):
        tensors, meta = _load(tmp_path / "run", step)
        assert all(v.isfinite().all() for v in tensors.values() if v.is_floating_point())
    assert meta["nonfinite"]["rollbacks"] == 1


def test_training_that_keeps_failing_stops_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "ncsn.training.loop._fault", lambda step, loss, model, ema: loss * float("nan")
    )
    messages = []
    with pytest.raises(NCSNError, match=f"after {MAX_ROLLBACKS} rollbacks.*lower train.lr"):
        train(
            _cfg(tmp_path, "run", 5, ["train.nonfinite_patience=1"]),
            progress=False,
            log=messages.append,
        )
    assert (
        sum("rolled back to step 0 (the initial weights)" in m for m in messages) == MAX_ROLLBACKS
    )
    assert not (tmp_path / "run" / "checkpoints").exists()
