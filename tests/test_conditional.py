"""Class-conditional score models and classifier-free guidance (issue 18): exact conditional
scores of a Gaussian mixture whose components are the classes, the guided score's closed form,
label dropout, the class table of folders, and the errors a user can run into."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import TINY_UNET, as_cli

import ncsn
from ncsn import checkpoint, config
from ncsn.cli import main
from ncsn.data.folder import load_folder
from ncsn.data.toy import GaussianMixture
from ncsn.samplers.conditioning import Conditioned, class_labels
from ncsn.samplers.langevin import langevin
from ncsn.samplers.ode import heun_sampler
from ncsn.schedule import karras_sigmas
from ncsn.training.labels import drop_labels
from ncsn.training.loop import train


class ClassOracle(torch.nn.Module):
    """Exact s(x, σ, y) of a mixture whose component y is class y; label K ("no label") gives
    the score of the whole mixture, the unconditional model."""

    def __init__(self, mixture: GaussianMixture):
        super().__init__()
        self.mixture = mixture
        self.num_classes = len(mixture.weights)
        self.parts = [
            GaussianMixture([1.0], mixture.means[k : k + 1], mixture.covs[k : k + 1])
            for k in range(self.num_classes)
        ]

    def score(self, x, sigma, labels=None):
        labels = torch.full((len(x),), self.num_classes) if labels is None else labels
        out = self.mixture.score(x, sigma)
        for k, part in enumerate(self.parts):
            rows = labels == k
            if rows.any():
                s = sigma[rows] if isinstance(sigma, torch.Tensor) and sigma.dim() else sigma
                out[rows] = part.score(x[rows], s)
        return out


def _mixture():
    cov = torch.tensor([[[1.0, 0.5], [0.5, 2.0]], [[0.5, 0.0], [0.0, 0.25]]])
    return GaussianMixture([0.3, 0.7], [[-4.0, 2.0], [3.0, -1.0]], cov)


def test_conditional_sampling_recovers_each_class_mean_and_covariance():
    mix = _mixture()
    oracle = ClassOracle(mix)
    n = 20000  # standard errors ≤ 0.01 (means) and ≤ 0.02 (covariances): bounds are 4–5 SE
    for k in range(2):
        model = Conditioned(oracle, torch.full((n,), k))
        x = heun_sampler(model, (n, 2), karras_sigmas(80.0, 0.002, 40),
                         generator=torch.Generator().manual_seed(k),
                         mean=mix.means[k].float())  # fmt: skip
        x = x.double()
        assert torch.allclose(x.mean(0), mix.means[k], atol=0.05), (k, x.mean(0))
        assert torch.allclose(torch.cov(x.T), mix.covs[k], atol=0.08), (k, torch.cov(x.T))


class GaussianPair(torch.nn.Module):
    """Unconditional N(0, s_u² I), class 0 N(m, s_c² I): the guided score stays Gaussian."""

    num_classes = 1
    s_u, s_c, m = 2.0, 1.0, 1.5

    def score(self, x, sigma, labels):
        v = sigma.reshape(-1, 1) ** 2
        cond = -(x - self.m) / (self.s_c**2 + v)
        uncond = -x / (self.s_u**2 + v)
        return torch.where((labels == 0).reshape(-1, 1), cond, uncond)


@pytest.mark.parametrize("w", [1.0, 2.0, 3.0])
def test_guidance_narrows_the_class_as_the_closed_form_predicts(w):
    """s_w = s_∅ + w (s_y − s_∅) is the score of a Gaussian with precision
    P = (1 − w)/(s_u² + σ²) + w/(s_c² + σ²) and mean (w m/(s_c² + σ²))/P: Langevin at σ
    samples it."""
    pair, sigma, n = GaussianPair(), 0.1, 20000
    model = Conditioned(pair, torch.zeros(n, dtype=torch.long), guidance=w)
    x = torch.zeros(n, 1)
    x = langevin(
        model, x, sigma, generator=torch.Generator().manual_seed(0), eps=0.01, n_steps=1500
    )
    precision = (1 - w) / (pair.s_u**2 + sigma**2) + w / (pair.s_c**2 + sigma**2)
    mean = w * pair.m / (pair.s_c**2 + sigma**2) / precision
    assert float(x.mean()) == pytest.approx(mean, abs=0.03)
    assert float(x.var()) == pytest.approx(1 / precision, rel=0.05)  # ε = 0.01: bias < 1%


def test_guided_score_equals_the_formula_and_counts_two_evaluations():
    mix = _mixture()
    oracle = ClassOracle(mix)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    sigma = torch.full((6,), 0.7)
    guided = Conditioned(oracle, labels, guidance=2.5)
    cond, uncond = oracle.score(x, sigma, labels), oracle.score(x, sigma, torch.full((6,), 2))
    assert torch.allclose(guided.score(x, sigma), uncond + 2.5 * (cond - uncond), atol=1e-6)
    assert guided.evaluations == 2 and Conditioned(oracle, labels).evaluations == 1
    assert torch.allclose(Conditioned(oracle, labels).score(x, sigma), cond)
    assert torch.allclose(Conditioned(oracle, labels, 0.0).score(x, sigma), uncond)


def test_label_dropout_drops_the_stated_fraction_from_the_seeded_generator():
    labels = torch.arange(100_000) % 10
    a = drop_labels(labels, 0.2, 10, torch.Generator().manual_seed(3))
    b = drop_labels(labels, 0.2, 10, torch.Generator().manual_seed(3))
    frac = float((a == 10).double().mean())
    assert abs(frac - 0.2) < 4 * math.sqrt(0.2 * 0.8 / len(labels))
    assert torch.equal(a, b) and torch.equal(a[a != 10], labels[a != 10])
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    assert drop_labels(labels, 0.0, 10, g) is labels and torch.equal(g.get_state(), state)


def test_class_labels_requests():
    assert class_labels(None, 0, 5) is None
    assert class_labels(None, 3, 5).tolist() == [0, 1, 2, 0, 1]
    assert class_labels("all", 3, 4).tolist() == [0, 1, 2, 0]
    assert class_labels("2,0", 3, 3).tolist() == [2, 0, 2]
    assert class_labels(1, 3, 2).tolist() == [1, 1]
    for bad, message in [("3", "from 0 to 2"), ("x", "a class index"), ("-1", "from 0 to 2")]:
        with pytest.raises(ncsn.NCSNError, match=message):
            class_labels(bad, 3, 4)
    with pytest.raises(ncsn.NCSNError, match="not class-conditional"):
        class_labels("1", 0, 4)


# --- trained runs ------------------------------------------------------------------------------

# train.ema = 0: the "EMA" is the raw weights, which four steps at lr 0.01 do change
COND = [*TINY_UNET, "schedule.num_levels=4", "train.batch_size=16", "model.num_classes=10",
        "train.label_dropout=0.25", "train.checkpoint_every=2", "train.log_every=1",
        "train.ema=0", "train.lr=0.01"]  # fmt: skip


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cond") / "run"
    cfg = config.load(ncsn.presets.find("digits"), [*COND, "train.steps=4", f"run_dir={run}"])
    train(cfg, progress=False, log=lambda *_: None)
    return run


def test_conditional_training_resumes_bit_exactly(cond_run, tmp_path):
    cfg = config.load(
        ncsn.presets.find("digits"), [*COND, "train.steps=2", f"run_dir={tmp_path / 'r'}"]
    )
    train(cfg, progress=False, log=lambda *_: None)
    cfg.train.steps = 4
    train(cfg, progress=False, log=lambda *_: None)
    a, meta = checkpoint.load(checkpoint.path_for(cond_run / "checkpoints", 4))
    b, _ = checkpoint.load(checkpoint.path_for(tmp_path / "r" / "checkpoints", 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert meta["classes"] == [str(i) for i in range(10)]
    assert any(k.endswith("label_embed.table.weight") for k in a)


def test_cli_class_grid_labels_and_api_bytes(cond_run, tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["sample", str(cond_run), "--sampler", "ode", "--steps", "3", "--n", "20",
            "--class", "all", "--guidance", "2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "guidance w = 2" in text and "NFE 10 per sample" in text  # (2·3 − 1) × 2
    saved = np.load(out / "samples.npz")
    assert saved["labels"].tolist() == sorted(list(range(10)) * 2)
    grid = Image.open(out / "grid.png")
    assert grid.width > 2 * 32 + 3  # two images per row plus the label margin
    run = ncsn.load(cond_run)
    x = run.sample(20, sampler="ode", steps=3, labels=torch.tensor(saved["labels"]), guidance=2)
    assert np.array_equal(ncsn.viz.to_uint8(x), saved["images"])
    assert not torch.equal(x, run.sample(20, sampler="ode", steps=3, labels=3, guidance=2))


@pytest.mark.parametrize(
    "extra, message",
    [(["--class", "10"], "--class 10: expected a class index from 0 to 9"),
     (["--guidance", "nan"], "--guidance nan")],
)  # fmt: skip
def test_cli_bad_class_requests_exit_2(cond_run, tmp_path, capsys, extra, message):
    assert main(["sample", str(cond_run), "--n", "2", "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_guidance_without_a_conditional_model_exits_2(tmp_path, capsys):
    run = tmp_path / "plain"
    tiny = as_cli([*TINY_UNET, "schedule.num_levels=4", "train.steps=1", "train.batch_size=8"])
    assert main(["train", "--config", "digits", *tiny, "--run-dir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--guidance", "2", "--n", "2"]) == 2
    assert "not class-conditional" in capsys.readouterr().err
    assert main(["denoise", str(run), "--class", "1", "--image", "x.png"]) == 2
    assert "not class-conditional" in capsys.readouterr().err


def _folder(root, classes):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(root / name / f"{i}.png")
    return root


def test_folder_classes_come_from_sub_folders(tmp_path):
    ds = load_folder(_folder(tmp_path / "f", ["cat", "ant"]), 8, 1)
    assert ds.classes == ["ant", "cat"] and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "f" / "loose.png")
    assert load_folder(tmp_path / "f", 8, 1).labels is None  # an image outside any class


@pytest.mark.parametrize(
    "classes, loose, message",
    [(["only"], False, "holds a single class (only)"), (["a", "b"], True, "has no labels"),
     (["a", "b", "c"], False, "labels from 0 to 2; expected 0 to 1")],
)  # fmt: skip
def test_conditional_config_on_unusable_labels_exits_2(tmp_path, capsys, classes, loose, message):
    root = _folder(tmp_path / "f", classes)
    if loose:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "loose.png")
    sets = ["data.name=folder", f"data.root={root}", "data.image_size=8", "data.channels=1",
            "model.num_classes=2", "train.batch_size=2", "train.steps=1", *TINY_UNET]  # fmt: skip
    assert main(["train", *as_cli(sets), "--run-dir", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
