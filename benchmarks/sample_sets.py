"""Draw sets of samples from trained runs, many samplers × step counts × seeds, on any device.

The sampling half of the MNIST benchmarks (issues 4, 5, 6): it runs where the compute is (a GPU
when one is lent, else the CPU) and writes one ``.npz`` per group of jobs; scoring happens in
``benchmarks/mnist_score.py``, which needs the held-out data and the domain classifier only.

A job file (JSON) lists groups in priority order; each group is sampled job by job and written
as soon as it is complete; no job starts after ``--deadline`` seconds (the group under way is
written with the jobs it finished), so a time-limited machine returns everything it sampled:

    {"groups": [{"name": "ald", "run": "RUN_DIR", "sampler": "ald", "steps": [1, 2, 5],
                 "seeds": [0, 1, 2], "n": 1000, "options": {}}, ...]}

``options`` are fields of the sampler's options dataclass in :mod:`ncsn.samplers.run` (e.g.
``levels``, ``correctors``, ``snr``, ``rho``, ``s_churn``); the older spellings ``n_correctors``
and ``churn = [S_churn, S_min, S_max, S_noise]`` are still read.

Each output ``NAME.npz`` holds ``images`` (uint8, jobs × n × H × W × C, in job order) and ``jobs``
(JSON: sampler, steps, seed, NFE, seconds, description, checkpoint step) — the exact inputs of
every set. Samples use the EMA weights, as ``ncsn sample`` does.

    python benchmarks/sample_sets.py jobs.json --out OUT [--device auto] [--deadline 400]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ncsn import checkpoint
from ncsn.devices import resolve_device
from ncsn.files import atomic_write_bytes
from ncsn.samplers import run
from ncsn.training.state import load_run
from ncsn.viz import to_uint8


def _options(group: dict, cfg):
    """The sampler options of a group, with the run's ``sample.init`` and ``denoise_final``."""
    given = dict(group.get("options", {}))
    if "n_correctors" in given:
        given["correctors"] = given.pop("n_correctors")
    if "churn" in given:
        given.update(zip(("s_churn", "s_min", "s_max", "s_noise"), given.pop("churn"), strict=True))
    given = {"init": cfg.sample.init, "denoise_final": cfg.sample.denoise_final} | given
    return run.options(group["sampler"], **given)


def sample_group(group: dict, device: torch.device, deadline: float, log) -> dict:
    model, sched, cfg, meta = load_run(group["run"], device=device, log=log)
    shape = tuple(meta["data_shape"])
    batch = group.get("batch", 1000)
    images, jobs = [], []
    for steps in group["steps"]:
        for seed in group["seeds"]:
            if time.perf_counter() > deadline:
                log(f"{group['name']}: deadline passed after {len(jobs)} jobs of the group")
                return {"images": np.stack(images), "jobs": jobs, "complete": False}
            start = time.perf_counter()
            chunks = []
            for batch_ in run.batches(
                model, sched, group["n"], shape, seed=seed, batch_size=batch,
                sampler=group["sampler"], steps=steps, opts=_options(group, cfg),
            ):  # fmt: skip
                chunks.append(to_uint8(batch_[0]))
            _, nfe, text = batch_
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            images.append(np.concatenate(chunks))
            jobs.append(
                {
                    "run": str(group["run"]),
                    "checkpoint_step": meta["step"],
                    "sampler": group["sampler"],
                    "steps": steps,
                    "seed": seed,
                    "n": group["n"],
                    "nfe": nfe,
                    "seconds": round(seconds, 3),
                    "description": text,
                    "options": group.get("options", {}),
                }
            )
            log(f"{group['name']}: {text}, seed {seed}: NFE {nfe}, {seconds:.1f} s")
    return {"images": np.stack(images), "jobs": jobs, "complete": True}


def export(run_dir: str, dest: str, step: int | None = None) -> Path:
    """A slim copy of a run for sampling elsewhere: one checkpoint (the latest, or ``step``)
    with the EMA weights and the metadata only (a quarter of a training checkpoint's size)."""
    found = checkpoint.list_checkpoints(Path(run_dir) / "checkpoints")
    path = dict(found)[step] if step is not None else found[-1][1]
    tensors, meta = checkpoint.load(path)
    slim = {k: v for k, v in tensors.items() if k.startswith("ema.")}
    target = checkpoint.path_for(Path(dest) / "checkpoints", meta["step"])
    target.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(target, slim, meta)
    return target


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("jobs", nargs="?", help="job file (JSON)")
    p.add_argument("--out", help="folder for NAME.npz and sample_sets.log")
    p.add_argument("--device", default="auto")
    p.add_argument("--deadline", type=float, default=1e9, help="seconds: start no job after it")
    p.add_argument(
        "--export",
        nargs=2,
        metavar=("RUN_DIR", "DEST"),
        help="instead: write a slim copy of RUN_DIR (EMA weights of its latest checkpoint, or "
        "of --step) to DEST",
    )
    p.add_argument("--step", type=int, help="with --export: the checkpoint's step")
    args = p.parse_args(argv)
    if args.export:
        print(export(*args.export, args.step))
        return
    if not (args.jobs and args.out):
        p.error("a job file and --out are needed (or --export)")
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logfile = open(out / "sample_sets.log", "a")

    def log(message: str) -> None:
        line = f"[{time.perf_counter() - start:7.1f} s] {message}"
        print(line, flush=True)
        logfile.write(line + "\n")
        logfile.flush()

    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log(f"device {device} ({name}), torch {torch.__version__}, argv {sys.argv[1:]}")
    for group in json.loads(Path(args.jobs).read_text())["groups"]:
        result = sample_group(group, device, start + args.deadline, log)
        if not result["jobs"]:
            break
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            images=result["images"],
            jobs=np.array(json.dumps({"device": name, "jobs": result["jobs"]})),
        )
        atomic_write_bytes(out / f"{group['name']}.npz", buffer.getvalue())
        log(f"wrote {group['name']}.npz ({buffer.tell() / 1e6:.1f} MB)")
        if not result["complete"]:
            break
    logfile.close()


if __name__ == "__main__":
    main()
