"""train.precision = auto: bf16 autocast only on a CPU with AMX bf16 units, fp32 elsewhere."""

import torch
import yaml
from tiny import TINY_UNET

from ncsn import config, presets
from ncsn.devices import auto_precision, cpu_flags, resolve_precision
from ncsn.training.loop import train

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile
bugs\t\t: spectre_v1
"""


def test_cpu_flags_reads_the_kernels_list(tmp_path):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    assert cpu_flags(str(tmp_path / "cpuinfo")) == {
        "fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"
    }  # fmt: skip
    assert cpu_flags(str(tmp_path / "missing")) == set()  # not Linux: no flags, no error


def test_auto_is_bf16_only_on_a_cpu_with_amx():
    cpu = torch.device("cpu")
    assert auto_precision(cpu, {"avx2", "avx512f", "amx_bf16", "amx_tile"})[0] == "bf16"
    assert auto_precision(cpu, {"avx2", "fma"})[0] == "fp32"  # AVX2 only: emulated, 12× slower
    assert auto_precision(cpu, {"avx512f", "avx512_bf16"})[0] == "fp32"  # not measured faster
    assert auto_precision(torch.device("cuda"), {"amx_bf16"})[0] == "fp32"  # slower on the H200


def test_resolve_keeps_an_explicit_choice_and_logs_an_automatic_one():
    said = []
    for value in ("fp32", "bf16"):
        cfg = config.load(None, [f"train.precision={value}"])
        assert resolve_precision(cfg, torch.device("cpu"), said.append) is cfg
    assert said == []
    cfg = config.load(None, ["train.precision=auto"])
    resolved = resolve_precision(cfg, torch.device("cpu"), said.append)
    assert resolved.train.precision == auto_precision(torch.device("cpu"))[0]
    assert cfg.train.precision == "auto" and said[0].startswith("train.precision = auto: ")


def test_a_run_with_auto_records_the_precision_it_trained_in(tmp_path):
    said = []
    cfg = config.load(
        None,
        [*TINY_UNET, "data.name=digits", "schedule.num_levels=5", "train.batch_size=16",
         "train.steps=1", f"run_dir={tmp_path / 'run'}", "train.precision=auto"],
    )  # fmt: skip
    train(cfg, progress=False, log=said.append)
    expected = auto_precision(torch.device("cpu"))[0]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["precision"] == expected
    assert f"train.precision = auto: {expected} (" in "\n".join(map(str, said))


def test_the_mnist_presets_choose_automatically():
    for preset in ("mnist", "mnist_paper"):
        assert config.load(presets.find(preset), []).train.precision == "auto"
