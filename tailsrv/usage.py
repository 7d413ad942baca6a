"""What the three scripts (tailsrv, tscat, tssync) say about bad arguments.

docopt rejects what does not fit the usage text; these cover a value that fits
but is wrong (a port of 70000), so that both end the same way: one line naming
the problem, the ``Usage:`` lines, exit status 2.
"""

from __future__ import annotations


class UsageError(Exception):
    """An argument docopt accepted but whose value is wrong."""


def usage_section(doc: str) -> str:
    """The ``Usage:`` lines of a usage text, for a message after a bad argument."""
    return next(part for part in doc.split("\n\n") if part.startswith("Usage:")).strip()
