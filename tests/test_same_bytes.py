"""Same seed, same bytes: SHA-256 of a tiny run's final checkpoint tensors and of ``samples.npz``
for every sampler, recorded before the package was reorganised (issue 13). A change that moves
any of these bytes must say so (and why) in its commit and update the hash here.

Training's bytes depend on the CPU's vector kernels (PyTorch picks AVX-512 or AVX2 kernels at
run time, and their float sums round differently), so the checkpoint hash is recorded per
CPU kind (``tiny.cpu_kind``: ``torch.backends.cpu.get_cpu_capability()``, +AMX where the CPU has
AMX tiles): all were recorded with the code of commit b363adc, on an Intel CPU with AVX-512 (its
AMX flag was not recorded), on an AMD EPYC with AVX2 and on an Intel Xeon with AMX. The samples
are uint8 and agree. A CPU of another kind has nothing to compare with and is skipped with that
reason."""

import hashlib

import numpy as np
import pytest
from safetensors.numpy import load_file
from tiny import TINY_UNET, as_cli, recorded

from ncsn.cli import main

TINY = as_cli(
    [
        *TINY_UNET,
        "schedule.num_levels=4",
        "schedule.steps_per_level=2",
        "train.steps=3",
        "train.batch_size=8",
    ]
)

CHECKPOINTS = {
    "AVX512": "65069644c30c333f07ca8f2c5630cd170aa5fbdd7ad3976732fd96f854e5740d",
    "AVX2": "2dc930b33d6b2e24112aa327b596db846712bcde65b5240edf1f98785b15a7ab",
    "AVX512+AMX": "8ab32d3d571a0a474d973f17660dfca505ed1a20eb933e7653ebcf942699dcb9",
}
SAMPLES = {
    ("ald", 2): "27a83c194b21a167a5e933109a236ba1d07cc4db795b01a36cc3e4e4790af60f",
    ("pc", 5): "2c4cfdc2dbf43a583fd390eaf4e52f005bb34f4e7461c862a83b36ab61d7c348",
    # moved by issue 14: ode starts from the recorded data mean (was 3688d05c…6fe65a0fd0b03)
    ("ode", 6): "dbb1ed87ff54822b8a15f33e8e83abf126d3c4885337a16977124608ac1c2907",
    ("churn", 6): "c0ad353931631d59156297c6b56b64038126c05eb4c27ad69f4d119c40d824c4",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("golden") / "run"
    assert main(["train", "--config", "digits", *TINY, "--run-dir", str(run), "--no-progress"]) == 0
    return run


def test_tiny_run_checkpoint_has_the_recorded_bytes(run):
    expected = recorded(CHECKPOINTS)
    (path,) = sorted((run / "checkpoints").glob("*.safetensors"))[-1:]
    tensors = load_file(str(path))
    digest = hashlib.sha256()
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(tensors[key]).tobytes())
    assert digest.hexdigest() == expected


@pytest.mark.parametrize("sampler, steps", list(SAMPLES))
def test_each_sampler_draws_the_recorded_bytes(run, tmp_path, sampler, steps):
    out = tmp_path / sampler
    argv = ["sample", str(run), "--sampler", sampler, "--steps", str(steps), "--n", "6"]
    assert main([*argv, "--seed", "3", "--out", str(out)]) == 0
    images = np.load(out / "samples.npz")["images"]
    assert hashlib.sha256(images.tobytes()).hexdigest() == SAMPLES[sampler, steps]
