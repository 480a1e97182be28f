"""Which device to run on: ``auto`` (CUDA, then MPS, then the CPU) or a named one, checked; and
which training precision is fast on it (``train.precision = auto``)."""

from __future__ import annotations

import dataclasses
import os
import shutil

import torch

from ncsn.errors import NCSNError


def resolve_device(name: str, setting: str = "train.device") -> torch.device:
    """'auto' → CUDA if available, else MPS, else CPU; else cpu, cuda, cuda:N or mps. Errors name
    ``setting``, where the value came from (the config field, or a flag such as ``--device``)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    said = f"{setting} {name!r}" if setting.startswith("--") else f"{setting} = {name!r}"
    expected = f"{said}: expected auto, cpu, cuda, cuda:N or mps"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise NCSNError(expected) from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise NCSNError(expected)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NCSNError(f"{said}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise NCSNError(f"{said}: there are {torch.cuda.device_count()} GPUs")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise NCSNError(f"{said}: MPS is not available on this machine")
    return device


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere). torch 2.13 exposes no public
    test for native bf16 units (torch.backends.cpu.get_cpu_capability() says AVX2 or AVX512 only),
    so we read the kernel's list."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def auto_precision(device: torch.device, flags: set[str] | None = None) -> tuple[str, str]:
    """(``fp32`` or ``bf16``, why): bf16 autocast only where it was measured faster than fp32,
    a CPU with AMX bf16 units (1.9–2.4× on the U-Net and RefineNet, docs/benchmarks.md, issues 6
    and 19). It was slower on a 2-core AVX2 CPU (12×, issue 16) and on an H200 GPU for these
    small networks (issue 6), so everything else trains in fp32."""
    if device.type != "cpu":
        return "fp32", f"on {device.type} bf16 autocast measured slower for these networks"
    if "amx_bf16" in (cpu_flags() if flags is None else flags):
        return "bf16", "this CPU has AMX bf16 units"
    return "fp32", "this CPU has no AMX bf16 units (bf16 autocast would be emulated, slower)"


def resolve_precision(cfg, device: torch.device, log=print):
    """``cfg`` (a Config) with ``train.precision = auto`` replaced by :func:`auto_precision`'s
    choice for ``device``, which is logged; any other value is kept."""
    if cfg.train.precision != "auto":
        return cfg
    precision, why = auto_precision(device)
    log(f"train.precision = auto: {precision} ({why})")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision=precision))


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend would find ($CXX, g++, clang++, c++) or None."""
    names = [os.environ.get("CXX", ""), "g++", "clang++", "c++"]
    return next((path for name in names if name and (path := shutil.which(name))), None)


def check_compile(device: torch.device, setting: str) -> None:
    """Refuse ``setting`` (a compile switch) where torch.compile cannot work: on the CPU its
    backend needs a C++ compiler."""
    if device.type == "cpu" and cpp_compiler() is None:
        raise NCSNError(
            f"{setting}: torch.compile on the CPU needs a C++ compiler (g++ or clang++ on PATH, "
            "or $CXX); none was found: install one or leave compile off"
        )


def compile_module(module: torch.nn.Module, device: torch.device, setting: str):
    """``torch.compile(module)`` after :func:`check_compile`."""
    check_compile(device, setting)
    return torch.compile(module)


def model_device(model) -> torch.device:
    """The device of ``model``'s parameters; the CPU for a parameter-free model (an exact score)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")
