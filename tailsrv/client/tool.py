"""What the client scripts (tscat, tssync) share: docopt parsing, signals, exit
statuses and one-line error messages, so that neither shows a traceback.

Exit statuses, as the scripts' usage texts promise: 0 when done or stopped by
SIGTERM, 1 on a runtime error, 2 on bad usage, 130 after Ctrl-C (SIGINT, the
shell's convention).
"""

from __future__ import annotations

import logging
import signal
from typing import Any, Callable, Dict, List, Optional

from .. import __version__
from ..usage import UsageError, complain, parse, usage_section
from .follower import BadAddress, ProtocolError

#: Exit status after Ctrl-C: 128 + SIGINT, what a shell reports for a program
#: that SIGINT ended.
INTERRUPTED = 128 + signal.SIGINT

Args = Dict[str, Any]


class Terminated(Exception):
    """SIGTERM arrived: stop as after a normal end."""


def run(doc: str, argv: Optional[List[str]], body: Callable[[Args], int]) -> int:
    """Parse ``argv`` against the usage ``doc`` and run ``body(args)``.

    The script's name is the first word of ``doc``. Errors become one line on
    stderr and an exit status; the `tailsrv.client` log (reconnections) goes
    to stderr too, prefixed with the name.
    """
    name = doc.split()[0]
    try:
        args = parse(doc, argv, version=f"{name} {__version__}")
    except UsageError as error:
        complain(f"{name}: {error}\n{usage_section(doc)}")
        return 2
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"{name}: %(message)s"))
    logging.getLogger("tailsrv").addHandler(handler)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        try:
            return body(args)
        except (UsageError, BadAddress) as error:
            complain(f"{name}: {error}\n{usage_section(doc)}")
            return 2
        except (OSError, ProtocolError) as error:
            complain(f"{name}: {describe(error)}")
            return 1
        except KeyboardInterrupt:
            return INTERRUPTED
    except Terminated:  # also while another ending was being handled
        previous = signal.SIG_IGN  # ending: a later SIGTERM must not kill it (status 0)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def integer(args: Args, option: str) -> Optional[int]:
    """The value of an integer option, or None when it was not given."""
    value = args[option]
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"invalid {option} {value!r}: expected an integer") from None


def describe(error: BaseException) -> str:
    """An OSError as ``strerror: filename`` rather than ``[Errno 2] ...``."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error)


def _terminate(signum, frame) -> None:
    """SIGTERM: end the script, once. More SIGTERMs while it ends (a supervisor
    that repeats itself) are ignored rather than raised in the middle of that."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()
