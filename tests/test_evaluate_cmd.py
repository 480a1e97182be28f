"""``ncsn evaluate`` and ``ncsn classifier train`` on tiny files written here."""

import json

import numpy as np
import pytest

from ncsn import schedule
from ncsn.cli import main
from ncsn.training.state import load_run

METRICS = ["fd", "kid_mean", "kid_std", "precision", "recall", "classifier_score"]
METRICS += ["class_coverage", "class_histogram", "memorization"]


def _digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of 8×8 uint8 images: a bright left half or a bright top half, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    x = rng.integers(0, 60, (n, 8, 8, 1))
    for i, label in enumerate(labels):
        if label == 0:
            x[i, :, :4] += 180
        else:
            x[i, :4] += 180
    return x.astype(np.uint8), labels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Samples, reference and training .npz files and a classifier trained by the CLI."""
    root = tmp_path_factory.mktemp("evaluate")
    for name, n, seed in [("train", 120, 0), ("reference", 60, 1), ("samples", 40, 2)]:
        x, y = _digits(n, seed)
        np.savez(root / f"{name}.npz", images=x, labels=y)
    clf = root / "clf.safetensors"
    args = ["classifier", "train", "--set", "data.name=npz", "--set"]
    args += [f"data.root={root / 'train.npz'}", "--steps", "30", "--batch-size", "16"]
    args += ["--holdout", "20", "--width", "4", "--hidden", "8", "--out", str(clf)]
    assert main(args) == 0
    return root


def test_classifier_train_stores_weights_with_accuracy(files, capsys):
    from ncsn.metrics.classifier import load_classifier

    clf = load_classifier(files / "clf.safetensors")
    assert clf.info["eval_examples"] == 20 and clf.info["train_examples"] == 100
    assert clf.info["data"]["name"] == "npz"


def test_evaluate_npz_writes_every_metric_and_the_extractor(files):
    out = files / "results.json"
    args = ["evaluate", str(files / "samples.npz"), "--reference", str(files / "reference.npz")]
    args += ["--extractor", f"classifier:{files / 'clf.safetensors'}"]
    args += ["--train-images", str(files / "train.npz"), "--kid-subsets", "5"]
    assert main([*args, "--kid-subset-size", "20", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["extractor"] == f"classifier:{files / 'clf.safetensors'}"
    for key in METRICS:
        assert result[key] is not None, key
    assert result["num_samples"] == 40 and result["num_reference"] == 60
    assert result["reference"]["n"] == 60 and result["train_images"]["n"] == 120
    assert result["classifier_info"]["eval_examples"] == 20


def test_evaluate_run_samples_then_scores_saved_samples(files, tmp_path, capsys):
    run = tmp_path / "run"
    tiny = ["--set", "schedule.sigma_max=3.0", "--set", "schedule.num_levels=3"]
    for item in ["model.channels=8", "model.groups=4", "model.num_res_blocks=1"]:
        tiny += ["--set", item]
    tiny += ["--set", "model.embedding_dim=8", "--set", "train.steps=2"]
    tiny += ["--set", "train.batch_size=8", "--set", "train.preview_every=0"]
    assert main(["train", "--config", "digits", *tiny, "--run-dir", str(run), "--no-progress"]) == 0
    clf = tmp_path / "digits_clf.safetensors"
    args = ["classifier", "train", "--config", "digits", "--steps", "5", "--width", "4"]
    assert main([*args, "--hidden", "8", "--out", str(clf)]) == 0
    common = ["--extractor", f"classifier:{clf}", "--reference-config", "digits"]
    common += ["--set", "data.subset=[1700,1797]", "--kid-subsets", "3"]
    out = tmp_path / "run.json"
    args = ["evaluate", str(run), *common, "--n", "6", "--steps", "1", "--seed", "1"]
    assert main([*args, "--train-images", "run", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["samples"]["n"] == 6 and result["samples"]["nfe"] == 3 * 1 + 1
    assert result["reference"]["n"] == 97 and result["train_images"]["n"] == 1797
    assert result["memorization"] is not None
    # another T than the run's: ε from the NCSNv2 rule for T = 1, as ``ncsn sample`` takes it
    _, sched, _, _ = load_run(run)
    assert sched.step_rule and sched.steps_per_level != 1
    rule = schedule.step_size_for(sched.gamma, sched.sigma_min, 1)
    assert result["samples"]["options"]["eps"] == rule != sched.step_size
    assert main(["sample", str(run), "--n", "5", "--steps", "1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--samples", *common]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed)["num_samples"] == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source": "missing.npz"}, "neither a run directory nor a samples .npz"),
        (
            {"extractor": "resnet:weights.pt"},
            "feature extractor 'resnet:weights.pt' not understood",
        ),
        ({"extractor": "classifier:absent.safetensors"}, "absent.safetensors"),
        ({"reference": "absent.npz"}, "absent.npz: file not found"),
        ({"n": "1"}, "--n 1: expected an integer from 2 to"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(files, capsys, monkeypatch, change, message):
    monkeypatch.chdir(files)
    given = {
        "source": "samples.npz",
        "extractor": "classifier:clf.safetensors",
        "reference": "reference.npz",
        "n": "10",
    } | change
    args = ["evaluate", given["source"], "--extractor", given["extractor"]]
    assert main([*args, "--reference", given["reference"], "--n", given["n"]]) == 2
    assert message in capsys.readouterr().err


def test_missing_required_option_is_a_usage_error(files, capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(files / "samples.npz"), "--reference", "r.npz"])
    assert e.value.code == 2
    assert "--extractor" in capsys.readouterr().err
