"""``ncsn toy``: a tiny run writes every promised file; errors are clear; helpers are exact."""

import contextlib
import io
import json
import math

import pytest
import torch
from PIL import Image

from ncsn.cli import build_parser, main
from ncsn.data.toy import OracleModel, make_toy
from ncsn.lab.toy import NUM_LEVELS, recovered_weights, relative_score_error

TINY = ["--steps", "3", "--particles", "64", "--no-progress"]
MIXTURE_FILES = [
    "density.png",
    "score_field.png",
    "score_error.png",
    "score_error.json",
    "langevin.gif",
    "samples.png",
    "weights.png",
    "weights.json",
]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "mixture"
    code, stdout, _ = _run(["toy", "--preset", "mixture", "--out", str(out), *TINY])
    return code, stdout, out


def test_toy_run_writes_every_promised_file_and_prints_where(mixture_run):
    code, stdout, out = mixture_run
    assert code == 0
    for name in MIXTURE_FILES:
        assert (out / name).stat().st_size > 0
        assert f"wrote {name}: {out / name}" in stdout
    assert (out / "run" / "config.yaml").exists()
    assert Image.open(out / "langevin.gif").n_frames > 2


def test_toy_json_holds_one_finite_error_per_level_and_the_weights(mixture_run):
    _, _, out = mixture_run
    errors = json.loads((out / "score_error.json").read_text())
    assert len(errors["sigmas"]) == len(errors["relative_error"]) == NUM_LEVELS
    assert all(math.isfinite(e) and e >= 0 for e in errors["relative_error"])
    weights = json.loads((out / "weights.json").read_text())
    assert weights["true"] == pytest.approx([0.2, 0.8])
    assert sum(weights["recovered"]) == pytest.approx(1.0)


def test_rerun_into_the_same_folder_with_other_settings_is_refused(mixture_run):
    _, _, out = mixture_run
    code, _, err = _run(["toy", "--objective", "ssm", "--out", str(out), *TINY])
    assert code == 2 and "other settings" in err and "Traceback" not in err


def test_sample_only_preset_skips_the_exact_score_pictures_with_a_message(tmp_path):
    code, stdout, _ = _run(["toy", "--preset", "spiral", "--out", str(tmp_path), *TINY])
    assert code == 0
    assert "sample-only" in stdout
    for name in ["density.png", "score_field.png", "langevin.gif", "samples.png"]:
        assert (tmp_path / name).exists()
    for name in ["score_error.json", "score_error.png", "weights.json", "weights.png"]:
        assert not (tmp_path / name).exists()


def test_unknown_preset_exits_2_naming_the_known_ones(tmp_path):
    code, _, err = _run(["toy", "--preset", "moons", "--out", str(tmp_path)])
    assert code == 2
    assert err.startswith("ncsn: error:") and "'moons'" in err and "ring8" in err
    assert not any(tmp_path.iterdir())


def test_toy_help_names_every_option_and_output(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["toy", "--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0
    for word in ["--preset", "--steps", "--objective", "--seed", "--out", "weights.png"]:
        assert word in text


def test_relative_score_error_of_the_exact_score_is_zero():
    mixture = make_toy("mixture")
    errors = relative_score_error(
        OracleModel(mixture), mixture, [10.0, 1.0, 0.1], n=500, generator=torch.Generator()
    )
    assert max(errors) < 1e-10


def test_recovered_weights_of_exact_samples_match_the_mixture():
    mixture = make_toy("mixture")
    x = mixture.sample(20000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(recovered_weights(mixture, x), mixture.weights, rtol=0, atol=0.01)
