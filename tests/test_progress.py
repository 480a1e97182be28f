import io

from ncsn import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_file_the_bar_writes_whole_lines_only_every_few_seconds(monkeypatch):
    clock = iter(range(0, 10**6, 1))  # one second per call of tqdm's clock
    monkeypatch.setattr("tqdm.std.time", lambda: float(next(clock)))
    out = io.StringIO()
    bar = progress.bar(total=1000, file=out, unit="step")
    for _ in range(1000):
        bar.update(1)
    bar.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and all(line.strip() for line in lines)
    assert 2 <= len(lines) <= 1000 / 3  # not one per update: at most one per LOG_EVERY_S
    assert "1000/1000" in lines[-1]


def test_on_a_terminal_the_bar_redraws_in_place():
    out = _Terminal()
    bar = progress.bar(total=10, file=out, mininterval=0)
    for _ in range(10):
        bar.update(1)
    bar.close()
    assert "\r" in out.getvalue()
