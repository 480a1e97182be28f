"""The training run's logs: ``metrics.csv`` (rewritten atomically on resume) and TensorBoard."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import ncsn.files as files

CSV_FIELDS = ["step", "loss", "lr", "grad_norm", "skipped", "steps_per_s", "elapsed_s"]


def open_metrics(path: Path, step: int, log, main: bool = True):
    """metrics.csv for appending, rewritten atomically without the rows past ``step`` (logged
    after the checkpoint being resumed from, so they are about to be logged again); on ranks
    other than the main one, a sink."""
    if not main:
        return open(os.devnull, "w")
    rows = []
    if path.exists() and step > 0:
        with open(path, newline="", errors="replace") as f:
            try:
                for r in csv.DictReader(f):
                    if (r.get("step") or "").isdigit() and int(r["step"]) <= step:
                        rows.append(r)
            except csv.Error as e:
                log(f"warning: {path}: keeping the {len(rows)} rows before a damaged line ({e})")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    files.atomic_write_bytes(path, buf.getvalue().encode())
    return open(path, "a", newline="")


def write_row(f, row: dict, tb) -> None:
    csv.DictWriter(f, fieldnames=CSV_FIELDS).writerow(row)
    f.flush()
    if tb is not None:
        for k in ("loss", "lr", "grad_norm", "skipped", "steps_per_s"):
            tb.add_scalar(f"train/{k}", row[k], row["step"])


def tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))
