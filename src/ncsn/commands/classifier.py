"""``ncsn classifier train``: the small domain classifier behind ``--extractor classifier:PATH``.

Its penultimate features give a domain-specific Fréchet distance (Inception features say little
about 28×28 digits) and its predictions the classifier score and class coverage; see
:mod:`ncsn.metrics.classifier`. Numbers are comparable only between evaluations that used the same
weights file, so train it once per data set and keep the file.
"""

from __future__ import annotations

import argparse

import ncsn.config as config
import ncsn.limits as limits
from ncsn.commands.common import check_positive, load_config
from ncsn.data import load_dataset
from ncsn.errors import NCSNError
from ncsn.metrics.classifier import save_classifier, train_classifier


def add_parsers(sub) -> None:
    """Register ``ncsn classifier`` with its ``train`` action."""
    q = sub.add_parser(
        "classifier",
        help="train the domain classifier used as a feature extractor by `ncsn evaluate`",
        description="Domain classifier for sample-quality metrics (`ncsn evaluate --extractor "
        "classifier:PATH`).",
    )
    actions = q.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = actions.add_parser(
        "train",
        help="train on the labelled data set of a config",
        description="Train the classifier (two conv blocks + MLP head, Adam, cosine decay) on\n"
        "the labelled images the config's data section describes and store it as one\n"
        "safetensors file with its settings and accuracy. The last --holdout examples are\n"
        "kept out of training and used to measure the accuracy.",
        epilog="example:\n  ncsn classifier train --config mnist --holdout 5000 "
        "--out mnist_classifier.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--config", "-c", help="YAML config file or preset whose data are used")
    t.add_argument(
        "--set",
        "-s",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set data.root=data/mnist (repeatable)",
    )
    t.add_argument("--out", required=True, metavar="FILE.safetensors", help="weights file")
    t.add_argument("--steps", type=int, default=1500, help="optimizer steps (1500)")
    t.add_argument("--batch-size", type=int, default=128, help="batch size (128)")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    t.add_argument("--width", type=int, default=16, help="channels of the first block (16)")
    t.add_argument("--hidden", type=int, default=128, help="feature dimension (128)")
    t.add_argument("--seed", type=int, default=0, help="seed of weights and batches (0)")
    t.add_argument(
        "--holdout", type=int, default=0, help="last N examples held out for accuracy (0)"
    )
    t.set_defaults(func=cmd_classifier_train)


def cmd_classifier_train(args) -> None:
    for name, flag, value, least in [
        ("classifier.steps", "--steps", args.steps, 1),
        ("train.batch_size", "--batch-size", args.batch_size, 1),
        ("classifier.width", "--width", args.width, 1),
        ("classifier.hidden", "--hidden", args.hidden, 1),
        ("classifier.holdout", "--holdout", args.holdout, 0),
    ]:
        limits.check(name, value, flag=flag, least=least)
    check_positive("--lr", args.lr)
    limits.seed(args.seed, "--seed")
    cfg = load_config(args)
    ds = load_dataset(cfg.data, seed=cfg.train.seed)
    if not ds.is_image:
        raise NCSNError(
            f"data {ds.name}: examples of shape {ds.shape}; the classifier needs images"
        )
    if ds.labels is None:
        raise NCSNError(
            f"data {ds.name}: no labels (MNIST needs its labels file next to the images, an "
            ".npz needs a 'labels' array); the classifier trains on labelled images"
        )
    if args.holdout >= len(ds):
        raise NCSNError(f"--holdout {args.holdout}: the data set has only {len(ds)} examples")
    x, y = ds.as_float(), ds.labels
    cut = len(ds) - args.holdout
    print(f"data: {ds.name}, {cut} training and {args.holdout} held-out examples of {ds.shape}")
    model = train_classifier(
        x[:cut],
        y[:cut],
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        num_classes=int(y.max()) + 1,
        width=args.width,
        hidden=args.hidden,
        eval_images=x[cut:] if args.holdout else None,
        eval_labels=y[cut:] if args.holdout else None,
    )
    model.info["data"] = config.to_dict(cfg.data)
    save_classifier(model, args.out)
    accuracy = model.info.get("eval_accuracy")
    said = f"held-out accuracy {accuracy:.4f}" if accuracy is not None else "no held-out data"
    print(f"trained in {model.info['train_seconds']} s, {said}; wrote {args.out}")
