"""Non-terminal progress: plain lines with an ETA every 10 % or minute, and the run's ETA after each epoch."""

from __future__ import annotations

import io

from mlip.train.progress import PlainProgress, format_seconds, progress_bar, run_eta_line


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_every_ten_percent_with_eta():
    clock, lines = Clock(), []
    bar = PlainProgress(range(20), "epoch 1/5", lines.append, clock=clock)
    for i in bar:
        clock.t += 0.5  # 0.5 s per batch
        bar.set_postfix(loss=f"{1.0 / (i + 1):.3g}")
    # a line after 2, 4, ..., 18 of 20 batches (10 % steps), none at 100 % (the epoch summary follows)
    assert len(lines) == 9
    assert lines[0] == "epoch 1/5: 10% (2/20 batches), 1.0 s, ETA 9.0 s, loss 0.5"
    assert lines[4] == "epoch 1/5: 50% (10/20 batches), 5.0 s, ETA 5.0 s, loss 0.1"
    assert all("\r" not in line for line in lines)


def test_plain_lines_every_minute_when_batches_are_slow():
    clock, lines = Clock(), []
    bar = PlainProgress(range(1000), "epoch 2/2", lines.append, every_fraction=0.5, clock=clock)
    for _ in bar:
        clock.t += 7.0  # 7 s per batch: a line every 9 batches (63 s) until 50 %
        if bar.done >= 20:
            break
    assert lines[0] == "epoch 2/2: 1% (9/1000 batches), 63.0 s, ETA 1.9 h"
    assert len(lines) == 2


def test_no_length_gives_time_based_lines():
    clock, lines = Clock(), []
    bar = PlainProgress(iter(range(5)), "epoch 1/1", lines.append, every_seconds=1.0, clock=clock)
    for _ in bar:
        clock.t += 1.0
    assert lines[0] == "epoch 1/1: 1 batches, 1.0 s"


def test_non_tty_stream_gets_plain_progress_and_tty_gets_tqdm():
    lines = []
    bar = progress_bar(range(3), "e", enabled=True, log=lines.append, stream=io.StringIO())
    assert isinstance(bar, PlainProgress)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not isinstance(progress_bar(range(3), "e", enabled=True, stream=Tty()), PlainProgress)
    silent = progress_bar(range(30), "e", enabled=False, log=lines.append, stream=io.StringIO())
    assert list(silent) == list(range(30)) and lines == []


def test_run_eta_line():
    assert run_eta_line(1, 10, [30.0]) == "epoch 1/10 took 30.0 s; run ETA 4.5 min (9 epochs left)"
    # the first epoch (one-off costs) is left out of the mean once others exist
    assert run_eta_line(3, 5, [50.0, 10.0, 12.0]) == "epoch 3/5 took 12.0 s; run ETA 22.0 s (2 epochs left)"
    assert run_eta_line(5, 5, [1.0]) == "epoch 5/5 took 1.0 s; run finished"
    assert format_seconds(7200) == "2.0 h"
