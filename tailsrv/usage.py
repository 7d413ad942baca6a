"""What the three scripts (tailsrv, tscat, tssync) share at the terminal: what
they say about bad arguments, and how they end when their reader goes away.

docopt rejects what does not fit the usage text; these cover a value that fits
but is wrong (a port of 70000), so that both end the same way: one line naming
the problem, the ``Usage:`` lines, exit status 2.

A reader that goes away (``tscat --help | head -1``) is the reader's choice,
not an error: the script ends at once, quietly, with status 0, as tscat's
usage text promises for its output.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, List, Optional

Main = Callable[[Optional[List[str]]], int]


class UsageError(Exception):
    """An argument docopt accepted but whose value is wrong."""


def usage_section(doc: str) -> str:
    """The ``Usage:`` lines of a usage text, for a message after a bad argument."""
    return next(part for part in doc.split("\n\n") if part.startswith("Usage:")).strip()


def console_script(main: Main) -> Main:
    """A script's ``main(argv) -> status`` that ends with status 0 and no
    traceback when its standard output is a pipe whose reader has gone.

    Python ignores SIGPIPE, so writing to such a pipe raises BrokenPipeError:
    in docopt printing ``--help``, in printing ``--version``, in the last
    flush. Standard output is then pointed at /dev/null, so that the
    interpreter's own flush at exit has nothing to complain about (the recipe
    in the documentation of Python's `signal` module).
    """
    @functools.wraps(main)
    def script(argv: Optional[List[str]] = None) -> int:
        try:
            try:
                return main(argv)
            finally:
                if sys.stdout is not None:  # None when started with stdout closed
                    sys.stdout.flush()
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 0
    return script
