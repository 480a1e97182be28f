"""Every integer and float argument of every command, and every numeric config field, drawn from
the full range (huge, negative, zero, NaN, ±inf, past 64 bits): the command either refuses it in
one ``error:`` line (exit 2), or gets as far as starting its work (``ncsn schedule`` may finish
it), within a per-example time and memory bound. Sizes are checked before work starts, never
discovered by running out of memory.

The work itself (training steps, sampling, metrics, the classifier, the toy) is replaced by a
stub that stops the command when it starts, so each example costs only the checks before it.
"""

import argparse
import contextlib
import dataclasses
import io
import os
import resource
import time
import typing

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tiny import TINY_UNET, as_cli

from ncsn import cli, config
from ncsn.cli import main

EXAMPLES = int(os.environ.get("NCSN_FUZZ_EXAMPLES", "300"))
PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
SECONDS, MEMORY_MB = 5.0, 300
TRIED: dict[str, int] = {}


class Started(Exception):
    """The command got past its checks and began its work."""


def _stop(*args, **kwargs):
    raise Started


NUMBERS = (
    st.integers()
    | st.sampled_from([0, -1, 2**31, 2**63, 2**64, 2**70, -(2**63), 10**30, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 5e-324])
).map(lambda v: v if isinstance(v, float) else int(v))


def _numeric_options(command: str) -> list[str]:
    """The options of ``ncsn command`` (or ``classifier train``) that take an int or a float."""
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    if command == "classifier":
        inner = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = inner.choices["train"]
    return [a.option_strings[0] for a in parser._actions if a.type in (int, float)]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """A tiny trained run and an image of its size."""
    work = tmp_path_factory.mktemp("fuzzargs")
    run = work / "run"
    tiny = as_cli([*TINY_UNET, "schedule.num_levels=3", "train.steps=1", "train.batch_size=8"])
    assert main(["train", *tiny, "--run-dir", str(run), "--no-progress"]) == 0
    Image.new("L", (8, 8), 200).save(work / "x.png")
    np.savez(work / "x.npz", images=np.zeros((2, 8, 8, 1), np.uint8))
    return work, run


def _base(command: str, work, run) -> list[str]:
    image = str(work / "x.png")
    return {
        "sample": ["sample", str(run), "--out", str(work / "o")],
        "inpaint": ["inpaint", str(run), "--image", image, "--mask", image],
        "denoise": ["denoise", str(run), "--image", image],
        "refine": ["refine", str(run), "--image", image, "--sigma", "0.3"],
        "bands": ["bands", str(run), "--experts", "2"],
        "evaluate": ["evaluate", str(run), "--extractor", "classifier:none", "--reference", image],
        "classifier": ["classifier", "train", "--out", str(work / "c.safetensors")],
        "toy": ["toy", "--out", str(work / "t")],
        "schedule": ["schedule"],
        "likelihood": ["likelihood", str(run), "--data", str(work / "x.npz")],
        "steps": ["steps", str(run)],
        "train": ["train", "--run-dir", str(work / "r"), "--no-progress"],
    }[command]


def _stub_work(monkeypatch) -> None:
    for target in [
        "ncsn.samplers.run.batches",
        "ncsn.samplers.run.draw",
        "ncsn.commands.conditional.inpaint",
        "ncsn.commands.conditional.refine",
        "ncsn.commands.conditional.denoise",
        "ncsn.commands.conditional.estimate_sigma",
        "ncsn.commands.train.dsm_per_level",
        "ncsn.commands.evaluate.load_extractor",
        "ncsn.commands.classifier.train_classifier",
        "ncsn.commands.toy.run_toy",
        # training's work starts when it builds the model (sized by check_training_memory
        # before): a valid model.embedding_dim = 1394 is 40 M parameters, 640 MB with its EMA
        # and rollback copy, which no check should refuse
        "ncsn.training.loop.build_model",
        "ncsn.training.loop._loop",
        "ncsn.commands.likelihood.score_examples",
        "ncsn.samplers.gits.teacher_costs",
    ]:
        monkeypatch.setattr(target, _stop)


def _check(argv: list[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except Started:
            code = "started"
        except SystemExit as e:  # argparse: not a number at all
            code = e.code
    seconds = time.perf_counter() - start
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    text = err.getvalue()
    assert code in (0, 2, "started"), (argv, code, text[-2000:])  # 0: cheap work, done
    assert "Traceback" not in text and len(text) < 2000, text[:2000]
    if code == 2:  # one error line (argparse puts its usage above it)
        assert "error:" in text.strip().splitlines()[-1] and text.count("error:") == 1, text
    assert seconds < SECONDS and grown < MEMORY_MB, (argv, seconds, grown)


COMMANDS = [
    "sample", "inpaint", "denoise", "refine", "bands", "evaluate", "classifier", "toy",
    "likelihood", "steps",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_numeric_argument_over_its_full_range(command, places, monkeypatch):
    work, run = places
    options = _numeric_options(command)
    assert options, command
    _stub_work(monkeypatch)
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    base = _base(command, work, run)

    @PROFILE
    @given(option=st.sampled_from(options), value=NUMBERS)
    def check(option, value):
        TRIED[command] = TRIED.get(command, 0) + 1
        _check([*base, option, repr(value) if isinstance(value, float) else str(value)])

    check()


def _numeric_fields() -> list[str]:
    """Every config field typed int or float (also inside a union such as ``float | 'auto'``)."""
    out = []
    for name, cls in typing.get_type_hints(config.Config).items():
        if dataclasses.is_dataclass(cls):
            for field, tp in typing.get_type_hints(cls).items():
                if "int" in str(tp) or "float" in str(tp):
                    out.append(f"{name}.{field}")
    return out


@pytest.mark.parametrize("command", ["schedule", "train"])
def test_every_numeric_config_field_over_its_full_range(command, places, monkeypatch):
    work, run = places
    fields = _numeric_fields()
    assert "train.batch_size" in fields and "schedule.sigma_min" in fields
    _stub_work(monkeypatch)
    base = [*_base(command, work, run), *as_cli(TINY_UNET)]

    @PROFILE
    @given(field=st.sampled_from(fields), value=NUMBERS)
    def check(field, value):
        TRIED[command] = TRIED.get(command, 0) + 1
        shown = {float("inf"): ".inf", -float("inf"): "-.inf"}.get(value, repr(value))
        if isinstance(value, float) and value != value:
            shown = ".nan"
        _check([*base, "--set", f"{field}={shown}"])

    check()
