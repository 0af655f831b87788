"""Progress of a training epoch: a tqdm bar on a terminal, plain log lines with an ETA otherwise.

Under SLURM or with output redirected to a file there is no terminal: a bar would either vanish or flood
the log with carriage returns. :func:`progress_bar` then returns a :class:`PlainProgress`, which writes one
line (through the run's ``log``) each time another ``every_fraction`` of the epoch is done or
``every_seconds`` have passed since the last line, whichever comes first::

    epoch 3/40: 50% (9/18 batches), 4.1 s, ETA 4.1 s, loss 0.0123

:func:`run_eta_line` is the line written after each epoch: its time and the ETA of the whole run.
Times are wall-clock seconds (``time.monotonic``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO


def format_seconds(seconds: float) -> str:
    """``4.1 s``, ``2.5 min``, ``3.2 h``."""
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class PlainProgress:
    """Iterate ``iterable`` and log a plain progress line every ``every_fraction`` or ``every_seconds``.

    Mirrors the part of tqdm's interface the trainer uses (iteration, ``set_postfix``, ``close``).
    ``total`` is the number of items (None when the iterable has no length: then lines are time-based
    only and carry no ETA)."""

    def __init__(self, iterable: Iterable[Any], desc: str, log: Callable[[str], None], total: int | None = None,
                 every_fraction: float = 0.1, every_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.iterable, self.desc, self.log, self.clock = iterable, desc, log, clock
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.total = total
        self.every_fraction, self.every_seconds = every_fraction, every_seconds
        self.done = 0
        self.postfix = ""
        self.start = self.last_time = clock()
        self.last_fraction = 0.0

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        """Values shown at the end of the next line (``loss=0.12`` -> ``, loss 0.12``)."""
        self.postfix = "".join(f", {k} {v}" for k, v in values.items())

    def line(self, now: float) -> str:
        """The progress line at time ``now``."""
        elapsed = now - self.start
        if self.total:
            fraction = self.done / self.total
            eta = elapsed / fraction * (1 - fraction) if fraction > 0 else float("nan")
            return (f"{self.desc}: {100 * fraction:.0f}% ({self.done}/{self.total} batches), "
                    f"{format_seconds(elapsed)}, ETA {format_seconds(eta)}{self.postfix}")
        return f"{self.desc}: {self.done} batches, {format_seconds(elapsed)}{self.postfix}"

    def _step(self) -> None:
        self.done += 1
        now = self.clock()
        due = now - self.last_time >= self.every_seconds
        if self.total:
            fraction = self.done / self.total
            due = due or (fraction - self.last_fraction >= self.every_fraction - 1e-12 and self.done < self.total)
        if due:
            self.log(self.line(now))
            self.last_time = now
            self.last_fraction = self.done / self.total if self.total else 0.0

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self._step()

    def close(self) -> None:
        """Nothing to clean up (the epoch's summary line follows from the trainer)."""


def progress_bar(iterable: Iterable[Any], desc: str, enabled: bool, log: Callable[[str], None] = print,
                 stream: TextIO | None = None, **plain: Any) -> Any:
    """A tqdm bar when ``stream`` (default stderr, where tqdm draws) is a terminal, else a
    :class:`PlainProgress` writing through ``log``; a silent pass-through when not ``enabled``."""
    stream = stream if stream is not None else sys.stderr
    if enabled and getattr(stream, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, file=stream)
    if enabled:
        return PlainProgress(iterable, desc, log, **plain)
    return PlainProgress(iterable, desc, lambda line: None, every_fraction=2.0, every_seconds=float("inf"))


def run_eta_line(epoch: int, max_epochs: int, epoch_seconds: list[float]) -> str:
    """After an epoch: its time and the ETA of the run (mean time of the epochs run in this process,
    the first one left out once there are others since it holds one-off costs, e.g. compilation).

    ``epoch_seconds``: wall-clock seconds of the epochs run so far in this process (after ``--resume``
    only those since the restart)."""
    times = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
    mean = sum(times) / len(times)
    left = max_epochs - epoch
    eta = "run finished" if left == 0 else f"run ETA {format_seconds(left * mean)} ({left} epochs left)"
    return f"epoch {epoch}/{max_epochs} took {format_seconds(epoch_seconds[-1])}; {eta}"
