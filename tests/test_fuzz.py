"""Property-based fuzzing: whatever the input, the only exception a user can see is NCSNError.

Targets: config parsing (random YAML documents, random bytes, random ``--set`` strings), the CLI
(random argv lists for ``train``, ``sample``, ``schedule`` and ``info`` through
``ncsn.cli.main``), and every reader of files (MNIST IDX plain and gzipped, CIFAR-10 pickles,
image folders in seven formats, ``.npy``, ``.npz``, checkpoints, and whole runs whose checkpoint
metadata was rewritten with a valid checksum), each fed a valid small file with random byte
mutations (flips, overwrites, insertions, deletions, truncation).

Every target runs 500 derandomized examples (profile ``fuzz``; set NCSN_FUZZ_EXAMPLES for more).
"""

import contextlib
import copy
import gzip
import io
import os
import pickle
import shutil
import struct
import typing

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ncsn import checkpoint, cli, config
from ncsn.cli import main
from ncsn.data import load_array, load_cifar10, load_folder, load_mnist
from ncsn.errors import NCSNError
from ncsn.training.loop import train
from ncsn.training.state import load_run

settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("NCSN_FUZZ_EXAMPLES", "500")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
FUZZ = settings.get_profile("fuzz")


def _user_errors_only(fn, *args, **kwargs):
    """Call ``fn``; an NCSNError is an accepted outcome, any other exception fails the test."""
    try:
        return fn(*args, **kwargs)
    except NCSNError:
        return None


# ---------------------------------------------------------------- mutations of valid bytes


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """``valid`` with a few random edits, or truncated, or (rarely) random bytes."""
    kind = draw(st.sampled_from(["edit", "edit", "edit", "truncate", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=2 * len(valid)))
    data = bytearray(valid)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, max(0, len(data) - 1)))])
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        byte = draw(st.integers(0, 255))
        if not data or op == "insert":
            data.insert(at, byte)
        elif op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = byte
        else:
            del data[at]
    return bytes(data)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A scratch folder that is also the working directory (relative paths stay in it)."""
    folder = tmp_path_factory.mktemp("fuzz")
    old = os.getcwd()
    os.chdir(folder)
    yield folder
    os.chdir(old)


def _fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# ---------------------------------------------------------------- config parsing

SECTIONS = {
    name: [f.name for f in __import__("dataclasses").fields(cls)]
    for name, cls in [
        ("data", config.DataConfig),
        ("schedule", config.ScheduleConfig),
        ("model", config.ModelConfig),
        ("train", config.TrainConfig),
        ("sample", config.SampleConfig),
    ]
}
KEYS = [f"{s}.{k}" for s, keys in SECTIONS.items() for k in keys] + ["run_dir"]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["auto", "digits", "toy", "mlp", "unet", "dsm", "ssm", "fp32", "cpu"])
)
VALUES = (
    SCALARS
    | st.lists(SCALARS, max_size=3)
    | st.dictionaries(st.text(max_size=4), SCALARS, max_size=2)
)


@st.composite
def config_documents(draw):
    """Mostly real sections and keys with random values; sometimes unknown names."""
    doc = {}
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from([*SECTIONS, "run_dir", "trian", "x"]))
        if section == "run_dir":
            doc[section] = draw(SCALARS)
        elif section not in SECTIONS:
            doc[section] = draw(VALUES)
        else:
            keys = SECTIONS[section] + ["x", "stpes"]
            body = doc.setdefault(section, {})
            for _ in range(draw(st.integers(0, 3))):
                body[draw(st.sampled_from(keys))] = draw(VALUES)
    return doc


@FUZZ
@given(doc=config_documents() | VALUES)
def test_config_files_with_random_yaml_give_a_config_or_an_ncsn_error(work, doc):
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    cfg = _user_errors_only(config.load, path)
    if cfg is not None:
        assert config.from_dict(config.to_dict(cfg)) == cfg


@FUZZ
@given(data=mutated(yaml.safe_dump(config.to_dict(config.load(None))).encode()))
def test_config_files_with_random_bytes_give_a_config_or_an_ncsn_error(work, data):
    path = work / "config.yaml"
    path.write_bytes(data)
    _user_errors_only(config.load, path)


SET_VALUES = (
    st.sampled_from(
        [
            "",
            "1",
            "0",
            "-1",
            "1e400",
            ".nan",
            ".inf",
            "[]",
            "[0, 10]",
            "{}",
            "auto",
            "null",
            "true",
            "yes",
            '"\\0"',
            "'",
            "[",
            "a: b",
            "!!binary aGk=",
            "2001-01-01",
            "&a [*a]",
        ]
    )
    | st.text(max_size=10)
    | st.integers().map(str)
    | st.floats().map(repr)
)
SET_KEYS = (
    st.sampled_from(KEYS) | st.text(max_size=10) | st.sampled_from(["a..b", ".", "train.", "=x"])
)
OVERRIDES = st.lists(
    st.builds(
        lambda k, sep, v: f"{k}{sep}{v}", SET_KEYS, st.sampled_from(["=", "=", ""]), SET_VALUES
    ),
    max_size=5,
)


@FUZZ
@given(overrides=OVERRIDES)
def test_random_set_overrides_give_a_config_or_an_ncsn_error(overrides):
    _user_errors_only(config.load, None, overrides)


# ---------------------------------------------------------------- the command line

TINY = [
    "--set", "train.steps=2",
    "--set", "train.batch_size=8",
    "--set", "train.preview_every=0",
    "--set", "train.log_every=1",
    "--set", "data.toy_n=64",
    "--set", "data.download=false",
    "--set", "model.channels=8",
    "--set", "model.groups=4",
    "--set", "model.num_res_blocks=1",
    "--set", "model.channel_mult=[1]",
    "--set", "model.attention_resolutions=[]",
    "--set", "model.embedding_dim=8",
    "--set", "model.hidden=16",
    "--set", "model.layers=1",
    "--set", "model.ngf=8",
    "--set", "schedule.num_levels=3",
    "--set", "schedule.steps_per_level=1",
    "--set", "schedule.exact_distance_limit=2000",
]  # fmt: skip
ARG_VALUES = (
    st.sampled_from(
        [
            "",
            "-",
            "--",
            "=",
            "nan",
            "inf",
            "-inf",
            "-1",
            "0",
            "1",
            "2",
            "1e400",
            "digits",
            "toy",
            "mnist",
            "../x",
            "run",
            "out",
            "missing.yaml",
            "config.yaml",
            "a.npy",
            "cpu",
            "meta",
            "cuda:3",
            "ald",
            "pc",
            "ode",
            "churn",
            "uniform",
            "gaussian",
            "--help",
        ]
    )
    | st.text(
        alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=8
    )
    | st.integers(-(2**40), 2**40).map(str)
)
OPTIONS = {
    "train": ["--config", "-c", "--set", "-s", "--run-dir", "--no-progress"],
    "schedule": ["--config", "-c", "--set", "-s", "--list"],
    "info": ["--json"],
    "sample": ["--sampler", "--n", "--seed", "--steps", "--eps", "--init", "--no-denoise",
               "--correctors", "--snr", "--rho", "--s-churn", "--s-min", "--s-max", "--s-noise",
               "--batch-size", "--grid", "--out", "--device", "--raw-weights"],
}  # fmt: skip
FLAGS = {"--no-progress", "--list", "--json", "--no-denoise", "--raw-weights"}
SAMPLE_VALUES = {
    "--sampler": ["ald", "pc", "ode", "churn"],
    "--n": ["1", "2", "3"],
    "--steps": ["1", "2"],
    "--batch-size": ["1", "2", "4"],
    "--grid": ["0", "1", "4"],
    "--correctors": ["0", "1", "2"],
    "--eps": ["1e-5", "0.001", "0.1"],
    "--init": ["uniform", "gaussian"],
    "--seed": ["0", "7", str(2**40)],
    "--out": ["out/a", "out/b"],
    "--device": ["cpu", "auto"],
    "--snr": ["0.16", "0.05"],
    "--rho": ["7.0", "3"],
    "--s-churn": ["0", "40"],
    "--s-min": ["0.05", "0"],
    "--s-max": ["50", "1"],
    "--s-noise": ["1.0", "1.003"],
    "--config": ["digits", "toy", "mnist", "valid.yaml"],
    "--run-dir": ["runs/0", "runs/1"],
}


def _plausible(tp) -> list[str]:
    """YAML texts that fit a config field of type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return [str(a) for a in args]
    if args and origin is not list:  # a union
        return [v for a in args for v in _plausible(a)]
    if origin is list:
        return ["[1]", "[1, 2]", "[]", "[0, 20]"]
    return {bool: ["true", "false"], int: ["1", "2", "3"], float: ["0.5", "0.001", "3.0"],
            str: ["cpu", "mixture", "ring8", "x"], type(None): ["null"]}.get(tp, ["1"])  # fmt: skip


PLAUSIBLE = {
    f"{section}.{name}": _plausible(tp)
    for section, cls in [("data", config.DataConfig), ("schedule", config.ScheduleConfig),
                         ("model", config.ModelConfig), ("train", config.TrainConfig),
                         ("sample", config.SampleConfig)]
    for name, tp in typing.get_type_hints(cls).items()
    if name != "download"  # never reach for the network
}  # fmt: skip
PLAUSIBLE_SET = st.sampled_from(sorted(PLAUSIBLE)).flatmap(
    lambda k: st.sampled_from(PLAUSIBLE[k]).map(lambda v: f"{k}={v}")
)
SMALL_INT = st.integers(-2, 3).map(str)


def _option_strategy(option: str):
    """Values for one option: mostly fitting ones, sometimes anything."""
    if option in FLAGS:
        return st.just([option])
    if option in ("--set", "-s"):
        weird = st.builds("{}={}".format, SET_KEYS, SET_VALUES)
        pair = st.integers(0, 5).flatmap(lambda i: PLAUSIBLE_SET if i else weird)
        pairs = st.lists(pair, max_size=3)
        return pairs.map(lambda items: [a for item in items for a in (option, item)])
    if option in ("--n", "--steps", "--batch-size", "--grid", "--correctors"):
        other = SMALL_INT  # small: keeps sampling fast; bad values are still tried
    elif option in ("--eps", "--snr", "--rho", "--s-churn", "--s-min", "--s-max", "--s-noise"):
        other = st.floats(allow_nan=True).map(repr)
    else:
        other = ARG_VALUES
    fitting = st.sampled_from(SAMPLE_VALUES[option]) if option in SAMPLE_VALUES else other
    value = st.integers(0, 5).flatmap(lambda i: fitting if i else other)
    return value.map(lambda v: [option, v])


ARGV_OPTIONS = {
    command: st.fixed_dictionaries({}, optional={o: _option_strategy(o) for o in options})
    for command, options in OPTIONS.items()
}


@st.composite
def argv_for(draw, command, run_dirs):
    """Mostly well-formed argv (each option at most once, with fitting values), some garbage."""
    argv = [command]
    if command in ("sample", "info") and draw(st.integers(0, 9)):
        argv.append(draw(st.sampled_from(run_dirs[:1] * 4 + run_dirs)))  # mostly the good run
    options = draw(ARGV_OPTIONS[command])
    for option in draw(st.permutations(sorted(options))):
        argv += options[option]
    if draw(st.integers(0, 9)) == 0:
        argv.insert(draw(st.integers(min(2, len(argv)), len(argv))), draw(ARG_VALUES))
    if command in ("train", "schedule"):
        argv += TINY  # last, so they win: every run stays tiny whatever came before
        if command == "train":
            argv += ["--no-progress", "--set", f"run_dir=runs/{draw(st.integers(0, 3))}"]
    elif command == "sample" and draw(st.integers(0, 4)):
        last = st.sampled_from(["1", "1", "1", "2", "0", "-1"])  # mostly valid, always small
        argv += ["--steps", draw(last), "--n", draw(last)]
    return argv


def _run_cli(argv) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: --help (0) or a usage error (2)
            code = e.code
    assert code in (0, 2), (code, err.getvalue())
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert "error:" in err.getvalue()


@pytest.fixture(scope="module")
def run_dirs(work):
    """A tiny image run, a run with a corrupt checkpoint, an empty folder, a file, nothing."""
    good = work / "good"
    argv = ["train", "--set", "data.name=digits", *TINY, "--set", "schedule.sigma_max=3"]
    assert main([*argv, "--run-dir", str(good), "--no-progress"]) == 0
    broken = work / "broken"
    shutil.copytree(good, broken)
    for _, p in checkpoint.list_checkpoints(broken / "checkpoints"):
        p.write_bytes(p.read_bytes()[:100])
    (work / "valid.yaml").write_text("data:\n  name: toy\nmodel:\n  net: mlp\n")
    (work / "empty").mkdir()
    (work / "file").write_text("not a run")
    return [str(good), str(broken), str(work / "empty"), str(work / "file"), "missing"]


@pytest.mark.parametrize("command", ["train", "schedule", "info", "sample"])
def test_random_command_lines_exit_0_or_2_without_a_traceback(
    command, run_dirs, work, no_fsync, monkeypatch
):
    parser = cli.build_parser()  # parsing does not change it: build it once, not 500 times
    monkeypatch.setattr(cli, "build_parser", lambda: parser)

    @FUZZ
    @given(argv=argv_for(command, run_dirs))
    def check(argv):
        _run_cli(argv)

    check()


# ---------------------------------------------------------------- data files


MNIST_IMAGES = struct.pack(">IIII", 0x0803, 3, 4, 4) + bytes(range(48))
MNIST_LABELS = struct.pack(">II", 0x0801, 3) + bytes([1, 2, 3])


@FUZZ
@given(
    images=mutated(MNIST_IMAGES) | mutated(gzip.compress(MNIST_IMAGES, mtime=0)),
    labels=st.none() | mutated(MNIST_LABELS),
)
def test_mnist_idx_files_with_random_bytes(work, images, labels):
    root = _fresh(work / "mnist")
    gz = images[:2] == b"\x1f\x8b"
    (root / ("train-images-idx3-ubyte" + (".gz" if gz else ""))).write_bytes(images)
    if labels is not None:
        (root / "train-labels-idx1-ubyte").write_bytes(labels)
    _user_errors_only(load_mnist, root, "train")


CIFAR_BATCH = pickle.dumps(
    {b"batch_label": b"test", b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072),
     b"labels": [3, 7], b"filenames": [b"a.png", b"b.png"]},
    protocol=2,
)  # fmt: skip


@FUZZ
@given(batch=mutated(CIFAR_BATCH))
def test_cifar_batches_with_random_bytes(work, batch):
    root = _fresh(work / "cifar" / "cifar-10-batches-py")
    (root / "test_batch").write_bytes(batch)
    _user_errors_only(load_cifar10, root.parent, "test")


def _image_bytes(fmt, mode):
    img = Image.fromarray(np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


IMAGES = {
    f"{fmt.lower()}-{mode}": (fmt, _image_bytes(fmt, mode))
    for fmt, mode in [("PNG", "RGB"), ("PNG", "P"), ("BMP", "L"), ("GIF", "P"), ("JPEG", "RGB"),
                      ("TIFF", "CMYK"), ("PPM", "RGB"), ("WEBP", "RGBA")]
}  # fmt: skip
EXTENSIONS = {"PNG": ".png", "BMP": ".bmp", "GIF": ".gif", "JPEG": ".jpg", "TIFF": ".tif",
              "PPM": ".ppm", "WEBP": ".webp"}  # fmt: skip


@st.composite
def image_files(draw):
    fmt, valid = IMAGES[draw(st.sampled_from(sorted(IMAGES)))]
    return EXTENSIONS[fmt], draw(mutated(valid))


@FUZZ
@given(files=st.lists(image_files(), min_size=1, max_size=3), channels=st.sampled_from([1, 3]))
def test_image_folders_with_random_bytes(work, files, channels, small_image_limit):
    root = _fresh(work / "images")
    for i, (ext, data) in enumerate(files):
        (root / f"{i}{ext}").write_bytes(data)
    ds = _user_errors_only(load_folder, root, 4, channels)
    if ds is not None:
        assert ds.x.shape == (len(files), channels, 4, 4) and ds.x.dtype == torch.uint8


@pytest.fixture(scope="module")
def small_image_limit():
    """Caps Pillow's image size so mutated headers cannot ask for gigabytes (the cap's error
    path is the one a real decompression bomb takes)."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 2**16
    yield
    Image.MAX_IMAGE_PIXELS = old


def _np_bytes(save, **arrays):
    buf = io.BytesIO()
    save(buf, **arrays)
    return buf.getvalue()


ARRAYS = [
    _np_bytes(lambda f, a: np.save(f, a), a=np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)),
    _np_bytes(lambda f, a: np.save(f, a), a=np.arange(48, dtype=np.uint8).reshape(3, 4, 4)),
    _np_bytes(np.savez, images=np.arange(48, dtype=np.uint8).reshape(3, 4, 4, 1),
              labels=np.arange(3)),
    _np_bytes(np.savez_compressed, x=np.linspace(0, 1, 24).reshape(2, 4, 3)),
]  # fmt: skip


@FUZZ
@given(data=st.sampled_from(ARRAYS).flatmap(mutated))
def test_npy_and_npz_files_with_random_bytes(work, data):
    path = work / "data.npz"
    path.write_bytes(data)
    ds = _user_errors_only(load_array, path)
    if ds is not None:
        x = ds.as_float()
        assert len(ds) > 0 and x.numel() > 0 and bool(x.isfinite().all())


@pytest.fixture(scope="module")
def toy_run(work):
    run = work / "toy-run"
    cfg = config.load(
        None,
        [
            "data.name=toy", "data.toy_n=64", "model.net=mlp", "model.hidden=8",
            "model.layers=1", "model.embedding_dim=4", "schedule.sigma_max=10.0",
            "schedule.num_levels=3", "train.steps=1", "train.batch_size=8",
            "train.preview_every=0", f"run_dir={run}",
        ],
    )  # fmt: skip
    train(cfg, progress=False, log=lambda *_: None)
    ((_, path),) = checkpoint.list_checkpoints(run / "checkpoints")
    return (run, path, *checkpoint.load(path))


@FUZZ
@given(data=st.data())
def test_checkpoints_with_random_bytes_are_refused_or_load_the_original(work, toy_run, data):
    valid = toy_run[1]
    path = work / "ckpt-00000001.safetensors"
    path.write_bytes(data.draw(mutated(valid.read_bytes())))
    loaded = _user_errors_only(checkpoint.load, path)
    if loaded is not None:  # only an edit the checksums do not cover (e.g. header padding)
        tensors, meta = loaded
        original, original_meta = checkpoint.load(valid)
        assert meta == original_meta and tensors.keys() == original.keys()
        assert all(torch.equal(tensors[k], original[k]) for k in tensors)


@pytest.fixture
def no_fsync(monkeypatch):
    """Durability is not under test here; skipping fsync keeps 500 rewrites fast."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6,
)  # fmt: skip


def _paths(node, prefix=()):
    """Every path into a JSON tree (dict keys and list indices)."""
    yield prefix
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for k, v in items:
        yield from _paths(v, (*prefix, k))


@FUZZ
@given(data=st.data())
def test_runs_whose_checkpoint_metadata_was_rewritten(work, toy_run, data, no_fsync):
    """Metadata edited and re-saved with a valid checksum: load_run builds a model or refuses."""
    run, valid, tensors, original = toy_run
    meta = copy.deepcopy(original)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(sorted(_paths(meta), key=repr)))
        if not path:
            meta = data.draw(JSON_VALUES)
            break
        parent = meta
        for k in path[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JSON_VALUES)
    target = work / "tampered" / "checkpoints"
    target.mkdir(parents=True, exist_ok=True)
    try:
        checkpoint.save(target / valid.name, tensors, meta)
    except (ValueError, TypeError):  # not JSON-serialisable as drawn: nothing to test
        return
    _user_errors_only(load_run, target.parent, log=lambda *_: None)
