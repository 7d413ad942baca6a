"""tssync - mirror a file that a tailsrv server streams into a local file.

Usage:
  tssync [--no-reconnect] ADDR FILE
  tssync (-h | --help)
  tssync --version

tssync appends to FILE everything the tailsrv server at ADDR streams, starting
at FILE's current length (FILE is created when missing), and goes on as the
served file grows. A mirror that was stopped, or whose connection dropped,
carries on from where it stopped, without a byte missing or repeated: the
length of FILE is the position to resume from. When the connection drops, or
the server is not there yet, tssync tries again, waiting longer after each
failed attempt (up to 30 s), and reports it on standard error.

FILE is locked (an exclusive flock) while tssync runs: a second tssync on the
same FILE exits at once with status 1.

ADDR is HOST:PORT, [IPV6]:PORT (brackets required), or unix:PATH for a server
listening on a unix socket.

Each chunk is written to FILE as it arrives, so that a tailsrv serving FILE
passes it on at once: tssync and a second tailsrv are the way to fan a file out
to more machines (mirrors of mirrors). FILE is flushed to disk (fsync) when
tssync exits, not after each chunk: after a crash of the machine FILE may lack
its last bytes, and the next tssync fetches them again from FILE's length.

FILE must hold the beginning of the served file (or nothing): tssync cannot
tell when it does not. If the served file becomes shorter than FILE (truncated
or replaced), the server holds tssync until it is that long again.

Options:
  --no-reconnect  Exit when the connection ends instead of reconnecting.
  -h, --help      Show this help and exit.
  --version       Show the version and exit.

Example:
  tssync logs.example.com:4321 /srv/mirror/app.log
  tailsrv -p 4321 /srv/mirror/app.log     serve the mirror onwards

Exit status: 0 when stopped by SIGTERM, or with --no-reconnect when the server
closes the connection; 1 on an error (FILE locked by another tssync, not
writable, ...), reported in one line on standard error; 2 on bad usage; 130
after Ctrl-C.
"""

from __future__ import annotations

import fcntl
import os
from typing import List, Optional

from .client import follow, parse_address
from .tool import Args, run
from .usage import console_script


class Locked(OSError):
    """FILE is already being mirrored by another tssync."""


@console_script
def main(argv: Optional[List[str]] = None) -> int:
    return run(__doc__, argv, _tssync)


def _tssync(args: Args) -> int:
    address, path = args["ADDR"], args["FILE"]
    parse_address(address)  # a bad address is a usage error, before touching FILE
    fd = open_mirror(path)
    try:
        chunks = follow(address, os.fstat(fd).st_size, reconnect=not args["--no-reconnect"])
        for chunk in chunks:
            write_all(fd, chunk)
    finally:
        os.fsync(fd)
        os.close(fd)
    return 0


def open_mirror(path: str) -> int:
    """FILE opened for appending and locked; `Locked` if another tssync has it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Locked(f"{path} is locked: another tssync is mirroring into it") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: ``os.write`` may write less than asked."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
