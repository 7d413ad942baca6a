"""tscat - print a file that a tailsrv server streams, and go on printing as it grows.

Usage:
  tscat [--offset N | --lines N] [--no-reconnect] ADDR
  tscat (-h | --help)
  tscat --version

tscat connects to the tailsrv server at ADDR and copies the file it serves to
standard output, like `tail -f` on a file of another machine. When the
connection drops, or the server is not there yet, tscat tries again, waiting
longer after each failed attempt (up to 30 s), and resumes exactly after the
last byte it printed: nothing is repeated, nothing is lost. Each reconnection
is reported on standard error. A resume proves that the server still has the
file tscat was printing; when it has another one (the file was rotated,
replaced or truncated), tscat says "file replaced; following the new file" on
standard error and goes on with the new file from its start.

ADDR is HOST:PORT, [IPV6]:PORT (brackets required), or unix:PATH for a server
listening on a unix socket. ADDR nats://HOST:PORT/SUBJECT reads the file that
tspub publishes to that JetStream subject instead: the latest file, following
what is published, "file replaced" when tspub starts the next one
(docs/client.md).

Options:
  --offset N      Start at byte N of the file; a negative N starts N bytes
                  before its end (clamped at its start) [default: 0]. An N past
                  the end waits until the file is that long.
  --lines N       Start at a line instead: a negative N prints the last -N
                  lines first, like `tail -n`; a positive N skips the first N
                  lines (waiting until there are that many). Needs a server with
                  line support (this tailsrv, not the original).
  --no-reconnect  Exit when the connection ends instead of reconnecting.
  -h, --help      Show this help and exit.
  --version       Show the version and exit.

Examples:
  tscat logs.example.com:4321 --lines -20   the last 20 lines, then follow
  tscat [::1]:4321 | grep --line-buffered ERROR
  tscat unix:/run/tailsrv.sock --offset -65536 | head -c 1000

Exit status: 0 when stopped by SIGTERM, when the reader of its output goes
away (as `head` does), or with --no-reconnect when the server closes the
connection; 1 on an error, reported in one line on standard error; 2 on bad
usage; 130 after Ctrl-C.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from ..usage import console_script
from .follower import follow
from .replay import SCHEMES
from .tool import Args, integer, run


@console_script
def main(argv: Optional[List[str]] = None) -> int:
    return run(__doc__, argv, _tscat)


def _tscat(args: Args) -> int:
    lines = integer(args, "--lines")
    offset = 0 if lines is not None else integer(args, "--offset")
    out = sys.stdout.buffer
    if args["ADDR"].startswith(SCHEMES):
        from .subscriber import cat  # nats-py, loaded only for a stream
        return cat(args["ADDR"], offset, lines, out)
    for chunk in follow(args["ADDR"], offset, lines, reconnect=not args["--no-reconnect"]):
        if not _write(out, chunk):
            break
    return 0


def _write(out, chunk: bytes) -> bool:
    """Write and flush a chunk; False when the reader is gone (a broken pipe:
    `console_script` then ends tscat quietly)."""
    try:
        out.write(chunk)
        out.flush()
    except BrokenPipeError:
        return False
    return True
