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
listening on a unix socket. ADDR nats://HOST:PORT/SUBJECT mirrors the file that
tspub publishes to that JetStream subject instead, with the same guarantees:
FILE goes on from its length when the stream's file holds FILE's last bytes,
and is rotated on the stream's next file (docs/client.md).

Each chunk is written to FILE as it arrives, so that a tailsrv serving FILE
passes it on at once: tssync and a second tailsrv are the way to fan a file out
to more machines (mirrors of mirrors). FILE is flushed to disk (fsync) when
tssync exits, not after each chunk: after a crash of the machine FILE may lack
its last bytes, and the next tssync fetches them again from FILE's length.

Rotation: FILE never gets a byte of another file. Each resume proves to the
server that its file still holds FILE's last bytes (up to 4096). When it does
not (the served file was rotated, replaced or truncated, or FILE holds
something else), tssync rotates FILE as logrotate does, FILE.1 to FILE.2 and
so on and FILE to FILE.1, says so on standard error, and mirrors the new file
into a new FILE from its start. Against a server without resume proofs (the
original tailsrv) FILE must hold the beginning of the served file (or nothing):
tssync cannot tell when it does not.

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
import logging
import os
from typing import List, Optional

from ..protocol import PROOF_BYTES
from ..usage import console_script
from .follower import Replaced, follow, parse_address
from .replay import SCHEMES, parse_stream_address
from .tool import Args, run

log = logging.getLogger(__name__)


class Locked(OSError):
    """FILE is already being mirrored by another tssync."""


@console_script
def main(argv: Optional[List[str]] = None) -> int:
    return run(__doc__, argv, _tssync)


def _tssync(args: Args) -> int:
    address, path = args["ADDR"], args["FILE"]
    stream = address.startswith(SCHEMES)
    # A bad address is a usage error, before touching FILE.
    parse_stream_address(address) if stream else parse_address(address)
    mirror = Mirror(path)
    try:
        if stream:
            from .subscriber import sync  # nats-py, loaded only for a stream
            return sync(address, mirror)
        size = os.fstat(mirror.fd).st_size
        before = os.pread(mirror.fd, min(size, PROOF_BYTES), size - min(size, PROOF_BYTES))
        chunks = follow(address, size, reconnect=not args["--no-reconnect"], before=before,
                        on_replaced=mirror.rotate)
        for chunk in chunks:
            write_all(mirror.fd, chunk)
    finally:
        mirror.close()
    return 0


class Mirror:
    """FILE, opened for appending and locked; `rotate` starts a new one."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = open_mirror(path)

    def rotate(self, notice: Replaced) -> None:
        """Keep what FILE holds of the old file as FILE.1 (older ones move up one
        number, as logrotate does), and start an empty FILE for the new one."""
        os.fsync(self.fd)
        last = 1
        while os.path.exists(f"{self.path}.{last}"):
            last += 1
        for number in range(last, 1, -1):
            os.rename(f"{self.path}.{number - 1}", f"{self.path}.{number}")
        os.rename(self.path, f"{self.path}.1")
        old, self.fd = self.fd, open_mirror(self.path)
        os.close(old)
        log.warning("moved %s to %s.1 (%d bytes of the old file); mirroring the new file "
                    "into %s", self.path, self.path, notice.position, self.path)

    def close(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)


def open_mirror(path: str) -> int:
    """FILE opened for appending (and reading its last bytes) and locked; `Locked`
    if another tssync has it."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
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
