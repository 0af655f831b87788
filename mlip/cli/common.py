"""Shared helpers of the command-line entry points (argument parsing lives in each command)."""

from __future__ import annotations

import faulthandler
import signal
import sys
from typing import Callable

from mlip.errors import MLIPError


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run ``main(argv)``; turn an :class:`MLIPError` into one line on stderr and exit status 2.

    On POSIX, ``kill -USR1 <pid>`` makes a running command print every thread's Python stack to stderr
    and go on (:mod:`faulthandler`): how to see where a run that seems stuck is.
    """
    if hasattr(signal, "SIGUSR1"):
        try:
            faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
        except (AttributeError, ValueError, OSError, RuntimeError):  # stderr without a file descriptor (captured)
            pass
    try:
        code = main(argv)
    except MLIPError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
