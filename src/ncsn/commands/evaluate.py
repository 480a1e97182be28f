"""``ncsn evaluate``: score samples against reference images with every metric we have.

The samples come from a run directory (drawn here, seeded, with any sampler through
:func:`ncsn.samplers.run.draw` as ``ncsn sample`` draws them, or read from
``RUN_DIR/samples/samples.npz`` with ``--samples``) or from an ``.npz`` file. The reference is
an ``.npz`` of images or a data config (a preset such as ``mnist`` plus ``--set`` overrides). The
numbers come from :func:`ncsn.metrics.evaluate.evaluate`; the JSON names the feature extractor
that produced them, since Fréchet distances from different extractors cannot be compared. The
domain classifier behind ``--extractor classifier:PATH`` comes from ``ncsn classifier train``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ncsn.config as config
import ncsn.limits as limits
import ncsn.presets as presets
from ncsn.commands.common import add_class_args, add_sampler_args, class_request, sampler_options
from ncsn.data import load_dataset
from ncsn.data.arrays import load_array
from ncsn.devices import resolve_device
from ncsn.errors import NCSNError
from ncsn.files import atomic_write_bytes
from ncsn.metrics.evaluate import evaluate, load_extractor
from ncsn.samplers import run
from ncsn.training.state import load_run
from ncsn.viz import quantize

EXAMPLES = """examples:
  ncsn classifier train --config mnist --holdout 5000 --out clf.safetensors
  ncsn evaluate runs/mnist --n 1000 --extractor classifier:clf.safetensors \\
      --reference-config mnist --set data.split=test --train-images run --out results.json
  ncsn evaluate samples.npz --extractor inception:pt_inception-2015-12-05-6726825d.pth \\
      --reference cifar10_test.npz --stats-cache cifar10_test_stats.npz
"""


def add_parsers(sub) -> None:
    """Register ``ncsn evaluate``."""
    q = sub.add_parser(
        "evaluate",
        help="sample-quality metrics (Fréchet distance, KID, precision/recall, …)",
        description="Score samples against reference images: Fréchet distance and KID in the\n"
        "features of the chosen extractor, k-NN precision/recall, and with a classifier\n"
        "extractor its score (Inception-Score form) and class coverage; with --train-images a\n"
        "memorization report (samples nearer to a training image than held-out data are).\n"
        "The JSON written names the extractor: numbers from different extractors differ.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument(
        "source",
        metavar="RUN_DIR|SAMPLES.npz",
        help="a run directory (samples are drawn from its EMA weights) or an .npz of images "
        "(key 'images', uint8 N×H×W×C as `ncsn sample` writes)",
    )
    q.add_argument(
        "--extractor",
        required=True,
        metavar="classifier:PATH|inception:PATH",
        help="feature extractor: a domain classifier from `ncsn classifier train`, or the FID "
        "Inception-V3 weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth)",
    )
    ref = q.add_mutually_exclusive_group(required=True)
    ref.add_argument("--reference", metavar="IMAGES.npz", help="reference images (.npz/.npy)")
    ref.add_argument(
        "--reference-config",
        metavar="CONFIG",
        help="reference images from the data section of a config file or preset (e.g. mnist)",
    )
    q.add_argument(
        "--set",
        "-s",
        action="append",
        metavar="KEY=VALUE",
        help="override a value of --reference-config, e.g. --set data.subset=[8000,10000]",
    )
    q.add_argument(
        "--train-images",
        metavar="IMAGES.npz|run",
        help="training images for the memorization report: an .npz/.npy, or 'run' for the "
        "run's own training data (the reference must then be held out from training)",
    )
    q.add_argument(
        "--samples",
        action="store_true",
        help="with a run directory: score RUN_DIR/samples/samples.npz instead of sampling",
    )
    q.add_argument("--n", type=int, default=1000, help="samples to draw from a run (1000)")
    q.add_argument("--seed", type=int, help="sampling seed (default: sample.seed of the run)")
    add_sampler_args(q)
    add_class_args(q)
    q.add_argument("--batch-size", type=int, help="samples per batch (default: the run's)")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, … (default auto)")
    q.add_argument("--out", metavar="RESULTS.json", help="write the results here (else stdout)")
    q.add_argument(
        "--stats-cache",
        metavar="FILE.npz",
        help="reference features/statistics: written on first use, checked and reused after",
    )
    q.add_argument("--k", type=int, default=3, help="k of the k-NN precision/recall (3)")
    q.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (100)")
    q.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size (1000)")
    q.add_argument(
        "--memorization-quantile",
        type=float,
        default=0.01,
        help="flag samples nearer to the training set than this quantile of held-out data (0.01)",
    )
    q.set_defaults(func=cmd_evaluate)


def load_images(path: str | Path, what: str) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] from an .npz/.npy file; ``what`` names them in errors."""
    if not Path(path).is_file():
        raise NCSNError(f"{what} {path}: file not found")
    ds = load_array(path)
    if not ds.is_image:
        raise NCSNError(f"{what} {path}: holds vectors of shape {ds.shape}, expected images")
    return ds.as_float()


def cmd_evaluate(args) -> None:
    for name, flag, value, least in [
        ("sample.n", "--n", args.n, 2),
        ("evaluate.k", "--k", args.k, 1),
        ("evaluate.kid_subsets", "--kid-subsets", args.kid_subsets, 1),
        ("evaluate.kid_subset_size", "--kid-subset-size", args.kid_subset_size, 2),
    ]:
        limits.check(name, value, flag=flag, least=least)
    limits.check("sample.batch_size", args.batch_size, flag="--batch-size")
    limits.seed(args.seed, "--seed")
    if not 0 < args.memorization_quantile < 1:
        raise NCSNError(
            f"--memorization-quantile {args.memorization_quantile}: expected a number in (0, 1)"
        )
    if args.set and not args.reference_config:
        raise NCSNError("--set overrides the --reference-config; there is none")
    source = Path(args.source)
    is_run = source.is_dir()
    if not is_run and not source.is_file():
        raise NCSNError(f"{source}: neither a run directory nor a samples .npz file")
    if args.train_images == "run" and not is_run:
        raise NCSNError("--train-images run needs a run directory as the source")
    device = resolve_device(args.device, "--device")
    start = time.perf_counter()
    extractor, classifier = load_extractor(args.extractor, device)
    reference, reference_info = _reference(args)

    run_cfg = None
    if is_run and args.samples:
        path = source / "samples" / "samples.npz"
        samples, samples_info = load_images(path, "samples"), {"file": str(path)}
        run_cfg = config.load(source / "config.yaml")
    elif is_run:
        model, sched, run_cfg, meta = load_run(source, device=device, log=_stderr)
        opts = sampler_options(args, run_cfg)
        labels, guidance = class_request(args, model, args.n)
        limits.check_memory("--n", args.n, tuple(meta["data_shape"]), copies=2)  # all kept
        samples, samples_info = run.draw(
            model,
            sched,
            args.n,
            tuple(meta["data_shape"]),
            seed=run_cfg.sample.seed if args.seed is None else args.seed,
            batch_size=args.batch_size or run_cfg.sample.batch_size,
            sampler=args.sampler,
            steps=args.steps,
            opts=opts,
            labels=labels,
            guidance=guidance,
        )
        # Scored as ``samples.npz`` would store them: quantized to 8 bits.
        samples = quantize(samples)
        samples_info |= {"checkpoint": meta["path"], "step": meta["step"]}
    else:
        samples, samples_info = load_images(source, "samples"), {"file": str(source)}

    train_images, train_info = None, None
    if args.train_images == "run":
        train_images = load_dataset(run_cfg.data, seed=run_cfg.train.seed).as_float()
        train_info = {"source": "the run's training data", "n": len(train_images)}
    elif args.train_images:
        train_images = load_images(args.train_images, "--train-images")
        train_info = {"source": args.train_images, "n": len(train_images)}
    _check_shapes(samples, reference, train_images)

    result = evaluate(
        samples,
        reference,
        extractor=extractor,
        classifier=classifier,
        train_images=train_images,
        k=args.k,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        memorization_quantile=args.memorization_quantile,
        stats_cache=args.stats_cache,
    )
    result |= {
        "source": str(source),
        "samples": samples_info,
        "reference": reference_info,
        "train_images": train_info,
        "classifier_info": getattr(classifier, "info", None),
        "seconds": round(time.perf_counter() - start, 2),
    }
    text = json.dumps(result, indent=1, default=_jsonable)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out, text.encode())
    print(summary(result), file=sys.stderr if not args.out else sys.stdout)
    print(f"wrote {args.out}" if args.out else text)


def summary(result: dict) -> str:
    """A few readable lines from an evaluation result."""

    def fmt(key: str) -> str:
        value = result.get(key)
        return "n/a" if value is None else f"{value:.4g}"

    lines = [
        f"extractor {result['extractor']}: {result['num_samples']} samples vs "
        f"{result['num_reference']} reference images",
        f"Fréchet distance {fmt('fd')}, KID {fmt('kid_mean')} ± {fmt('kid_std')}, "
        f"precision {fmt('precision')}, recall {fmt('recall')}",
    ]
    if "classifier_score" in result:
        lines.append(
            f"classifier score {fmt('classifier_score')}, class coverage {fmt('class_coverage')}"
        )
    if result.get("memorization"):
        m = result["memorization"]
        lines.append(
            f"memorization: {m['num_flagged']} samples flagged ({m['fraction_flagged']:.2%}; "
            f"≈ {m['quantile']:.0%} expected by chance)"
        )
    return "\n".join(lines)


def _reference(args) -> tuple[torch.Tensor, dict]:
    if args.reference:
        images = load_images(args.reference, "--reference")
        return images, {"source": args.reference, "n": len(images)}
    cfg = config.load(
        presets.find(args.reference_config, "--reference-config"), list(args.set or [])
    )
    ds = load_dataset(cfg.data, seed=cfg.train.seed)
    if not ds.is_image:
        raise NCSNError(f"--reference-config {args.reference_config}: the data are not images")
    info = {
        "source": args.reference_config,
        "overrides": list(args.set or []),
        "data": config.to_dict(cfg.data),
        "n": len(ds),
    }
    return ds.as_float(), info


def _check_shapes(samples: torch.Tensor, reference: torch.Tensor, train) -> None:
    if samples.dim() != 4:
        raise NCSNError(f"samples have shape {tuple(samples.shape)}: expected images")
    for name, images in [("reference", reference), ("training", train)]:
        if images is not None and images.shape[1:] != samples.shape[1:]:
            raise NCSNError(
                f"{name} images have shape {tuple(images.shape[1:])} but the samples "
                f"{tuple(samples.shape[1:])}: they must match"
            )


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)
