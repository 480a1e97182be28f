"""The ``ncsn`` command: builds the parser from the modules in :mod:`ncsn.commands` and runs one.

Errors caused by the user (NCSNError) are printed as ``ncsn: error: …`` and exit with status 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys

import torch

from ncsn.commands import classifier, conditional, distill, ema, evaluate, likelihood, sample, toy
from ncsn.commands import train as train_commands
from ncsn.errors import NCSNError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ncsn",
        description="Noise Conditional Score Networks: train a score model with denoising score "
        "matching and sample it with annealed Langevin dynamics.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (
        train_commands,
        ema,
        distill,
        sample,
        conditional,
        toy,
        evaluate,
        likelihood,
        classifier,
    ):
        command.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except NCSNError as e:
        print(f"ncsn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ncsn: interrupted", file=sys.stderr)
        return 130
    except (torch.OutOfMemoryError, MemoryError):
        print(
            "ncsn: error: out of memory: lower train.batch_size (or --batch-size when sampling)",
            file=sys.stderr,
        )
        return 2
    except OSError as e:  # the file system refused: say which file and why, no traceback
        where = f" {e.filename}" if e.filename else ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            print(
                f"ncsn: error: disk full while writing{where}: free space and rerun "
                "(training resumes from the last checkpoint)",
                file=sys.stderr,
            )
        else:
            print(f"ncsn: error: cannot access{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
