"""Tiny runs (seconds on one CPU thread) shared by the tests: an image U-Net and a toy MLP."""

from pathlib import Path

import pytest
import torch

TINY_UNET = [
    "schedule.sigma_max=3.0",
    "model.channels=8",
    "model.groups=4",
    "model.num_res_blocks=1",
    "model.embedding_dim=8",
    "train.preview_every=0",
]


# A tiny MLP on 256 toy points (the crash-safety and non-finite-guard tests).
TINY_TOY = [
    "data.name=toy",
    "data.toy_n=256",
    "model.net=mlp",
    "model.hidden=16",
    "model.layers=1",
    "model.embedding_dim=8",
    "schedule.sigma_max=10.0",
    "schedule.num_levels=4",
    "train.batch_size=16",
    "train.preview_every=0",
]


def as_cli(overrides: list[str]) -> list[str]:
    """["a=1", "b=2"] → ["--set", "a=1", "--set", "b=2"]."""
    return [arg for item in overrides for arg in ("--set", item)]


def cpu_kind() -> str:
    """The CPU's vector kernels as the golden hashes tell them apart: PyTorch's capability
    (``torch.backends.cpu.get_cpu_capability``: AVX-512 and AVX2 kernels round float sums
    differently), with ``+AMX`` where the CPU has AMX tiles (Linux's ``amx_tile`` flag: on an
    Intel Xeon with AMX, oneDNN's kernels gave a third set of training bytes, the same from the
    old and today's code)."""
    capability = torch.backends.cpu.get_cpu_capability()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: the capability alone
        return capability
    return f"{capability}+AMX" if "amx_tile" in flags else capability


def recorded(table: dict):
    """``table``'s entry for this CPU's kind (``cpu_kind``), or a skip that names the kind when
    nothing was recorded for it."""
    kind = cpu_kind()
    if kind not in table:
        pytest.skip(f"no bytes recorded for CPU kind {kind} (only {', '.join(table)})")
    return table[kind]
