"""tscat - print a file that a tailsrv server streams, and go on printing as it grows.

Usage:
  tscat [-n N | -c N | --offset N] [--file NAME] [--wait] [--no-reconnect] ADDR
  tscat --list ADDR
  tscat (-h | --help)
  tscat --version

tscat connects to the tailsrv server at ADDR and copies the file it serves to
standard output, like `tail -f` on a file of another machine; without -n, -c
or --offset, from the file's start. When the connection drops, tscat tries
again, waiting longer after each failed attempt (up to 30 s), and resumes
exactly after the last byte it printed: nothing is repeated, nothing is lost.
A dropped connection is reported on standard error once, and again when tscat
is connected again. A resume proves that the server still has the file tscat
was printing; when it has another one (the file was rotated, replaced or
truncated), tscat says "file replaced; following the new file" on standard
error and goes on with the new file from its start.

The first connection is not retried unless you ask for it: a name that does
not resolve, or a server that refuses the connection, ends tscat at once with
one line on standard error and status 1, since it is most likely a typo.
With --wait tscat waits for the server instead. A server that answers in HTTP
(the --http port of tailsrv, or a web server) ends it at once too.

ADDR is HOST:PORT, [IPV6]:PORT (brackets required), or unix:PATH for a server
listening on a unix socket. ADDR nats://HOST:PORT/SUBJECT reads the file that
tspub publishes to that JetStream subject instead: the latest file, following
what is published, "file replaced" when tspub starts the next one
(docs/client.md).

A server of several files (tailsrv DIR, or tailsrv PATH PATH...) needs the
file's name: --file NAME, its base name, as `tscat --list ADDR` shows it
(percent-encoded there; give --file the name itself).

Options:
  -n N, --lines N  Start with the last N lines, as `tail -n N` does (-N says
                   the same); with +N, at line N, waiting until there are
                   that many (+1 is the whole file). Line starts need a server
                   with line support (this tailsrv, not the original).
  -c N, --bytes N  Start with the last N bytes, as `tail -c N` does (-N says
                   the same); with +N, at byte N (+1 is the whole file),
                   waiting until the file is that long.
  --offset N       Start at byte offset N, counting from 0; a negative N
                   starts -N bytes before the end (clamped at the start)
                   [default: 0].
  --file NAME      Follow the file NAME of a server of several files.
  --list           Print the files the server serves, one `NAME SIZE` line
                   each (NAME percent-encoded), and exit.
  --wait           Wait for a server that cannot be reached yet (a name that
                   does not resolve, a refused connection), trying again as
                   after a dropped connection, rather than exiting.
  --no-reconnect   Exit when the connection ends instead of reconnecting.
  -h, --help       Show this help and exit.
  --version        Show the version and exit.

Examples:
  tscat logs.example.com:4321 -n 20   the last 20 lines, then follow
  tscat -n +1000 localhost:4321       from line 1000 on
  tscat [::1]:4321 | grep --line-buffered ERROR
  tscat unix:/run/tailsrv.sock --offset -65536 | head -c 1000
  tscat logs.example.com:4321 --file syslog.log --lines -20

Exit status: 0 when stopped by SIGTERM, when the reader of its output goes
away (as `head` does), or with --no-reconnect when the server closes the
connection; 1 on an error, reported in one line on standard error; 2 on bad
usage; 130 after Ctrl-C.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Tuple

from ..names import list_line
from ..usage import UsageError, console_script
from .follower import follow, list_files
from .replay import SCHEMES
from .tool import Args, integer, run


@console_script
def main(argv: Optional[List[str]] = None) -> int:
    return run(__doc__, argv, _tscat)


def _tscat(args: Args) -> int:
    if args["--list"]:
        return _list(args["ADDR"])
    offset, lines = start(args)
    out = sys.stdout.buffer
    if args["ADDR"].startswith(SCHEMES):
        from .subscriber import cat  # nats-py, loaded only for a stream
        return cat(args["ADDR"], offset, lines, out)
    for chunk in follow(args["ADDR"], offset, lines, reconnect=not args["--no-reconnect"],
                        file=args["--file"], announce=True, wait=args["--wait"]):
        if not _write(out, chunk):
            break
    return 0


def _list(address: str) -> int:
    """``--list``: the files of the server, as the ``*`` header gets them."""
    _write(sys.stdout.buffer, b"".join(list_line(name, size)
                                       for name, size in list_files(address)))
    return 0


def start(args: Args) -> Tuple[int, Optional[int]]:
    """Where tscat starts, as `follow` takes it: ``(offset, lines)``. -n and
    -c count as `tail` counts: N and -N from the end, +N from the start, where
    line or byte 1 is the first."""
    if args["--lines"] is not None:
        from_start, count = tail_count(args, "--lines")
        if not from_start:
            return 0, -count
        return (0, None) if count <= 1 else (0, count - 1)  # +1: the file, any server
    if args["--bytes"] is not None:
        from_start, count = tail_count(args, "--bytes")
        return (max(count - 1, 0) if from_start else -count), None
    return integer(args, "--offset"), None


def tail_count(args: Args, option: str) -> Tuple[bool, int]:
    """An -n or -c value as `tail` reads it: ``(True, N)`` for ``+N``, a
    count from the start; ``(False, N)`` for ``N`` or ``-N``, from the end."""
    value = args[option]
    digits = value[1:] if value[:1] in "+-" else value
    if not (digits.isascii() and digits.isdigit()):
        raise UsageError(f"invalid {option} {value!r}: expected N or -N (the last N) or +N "
                         f"(from the Nth on)")
    if value[:1] != "+" and int(digits) == 0:
        raise UsageError(f"invalid {option} {value!r}: the smallest count is 1 (a server "
                         f"cannot be asked to start at the end)")
    return value[:1] == "+", int(digits)


def _write(out, chunk: bytes) -> bool:
    """Write and flush a chunk; False when the reader is gone (a broken pipe:
    `console_script` then ends tscat quietly)."""
    try:
        out.write(chunk)
        out.flush()
    except BrokenPipeError:
        return False
    return True
