"""Training under torchrun (2 CPU processes, gloo) follows the single-process trajectory."""

import os
import subprocess
import sys

import pytest
import torch
from tiny import TINY_UNET

from ncsn import checkpoint, config
from ncsn.training.loop import train

TINY = [
    *TINY_UNET,
    "data.name=digits",
    "data.dequantize=true",
    "data.hflip=true",
    "schedule.num_levels=5",
    "train.batch_size=16",
    "train.log_every=5",
    "train.checkpoint_every=10",
    "train.lr=0.002",
]


def _weights(run_dir, step):
    tensors, _ = checkpoint.load(checkpoint.path_for(run_dir / "checkpoints", step))
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "ema."))}


def _assert_close(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def _torchrun(run_dir, steps):
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "ncsn.cli",
        "train",
        "--run-dir",
        str(run_dir),
        "--no-progress",
    ]
    for item in [*TINY, f"train.steps={steps}"]:
        argv += ["--set", item]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    run = tmp_path_factory.mktemp("single") / "run"
    train(
        config.load(None, [*TINY, "train.steps=20", f"run_dir={run}"]),
        progress=False,
        log=lambda *_: None,
    )
    return run


def test_two_processes_reproduce_one_process_and_resume_under_ddp(single, tmp_path):
    run = tmp_path / "ddp"
    first = _torchrun(run, 10)
    assert "distributed: 2 processes, global batch 16, 8 per process" in first.stdout
    _assert_close(_weights(run, 10), _weights(single, 10))
    _torchrun(run, 20)  # resumes from the checkpoint written under DDP
    _assert_close(_weights(run, 20), _weights(single, 20))
    assert not (run / ".lock").exists()


def test_gradient_accumulation_keeps_the_global_batch(single, tmp_path):
    run = tmp_path / "accum"
    cfg = config.load(None, [*TINY, "train.steps=20", "train.grad_accum=4", f"run_dir={run}"])
    train(cfg, progress=False, log=lambda *_: None)
    _assert_close(_weights(run, 20), _weights(single, 20))


def test_batch_not_divisible_by_processes_times_accumulation_is_refused(tmp_path):
    from ncsn.errors import NCSNError

    cfg = config.load(None, [*TINY, "train.grad_accum=3", f"run_dir={tmp_path / 'r'}"])
    with pytest.raises(NCSNError, match="grad_accum"):
        train(cfg, progress=False, log=lambda *_: None)
