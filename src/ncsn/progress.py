"""Progress bars: tqdm's live bar on a terminal; in a file or pipe, one plain line every few
seconds (a live bar there would be one endless line of carriage returns)."""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_EVERY_S = 5.0  # seconds between lines when the output is not a terminal


class _Lines:
    """A file that turns tqdm's carriage-return redraws into whole lines."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable=None, **kwargs) -> tqdm:
    """A tqdm bar on stderr: live on a terminal, a line per ``LOG_EVERY_S`` seconds elsewhere."""
    stream = kwargs.pop("file", sys.stderr)
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, file=stream, dynamic_ncols=True, **kwargs)
    return tqdm(iterable, file=_Lines(stream), mininterval=LOG_EVERY_S, ncols=100, **kwargs)
