"""tssync - mirror a file that a tailsrv server streams into a local file.

Usage:
  tssync [--no-reconnect] [--file NAME] ADDR FILE
  tssync --all [--no-reconnect] ADDR DIR
  tssync (-h | --help)
  tssync --version

tssync appends to FILE everything the tailsrv server at ADDR streams, starting
at FILE's current length (FILE is created when missing), and goes on as the
served file grows. A mirror that was stopped, or whose connection dropped,
carries on from where it stopped, without a byte missing or repeated: the
length of FILE is the position to resume from. When the connection drops, or
the server is not there yet, tssync tries again, waiting longer after each
failed attempt (up to 30 s): it says so once on standard error, not at every
attempt, and again when it is connected, with the byte it resumed at. A server
that answers in HTTP (the --http port of tailsrv) ends it at once, in one line.

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

Several files: a server of several files (tailsrv DIR, or tailsrv PATH
PATH...) needs the file's name, --file NAME (its base name). With --all, tssync
mirrors every file the server serves into the directory DIR (created when
missing), each into DIR/NAME as above, and looks at the server's list every 2 s
to mirror new files too.

Options:
  --file NAME     Mirror the file NAME of a server of several files.
  --all           Mirror every file of a server of several files into DIR.
  --no-reconnect  Exit when the connection ends instead of reconnecting.
  -h, --help      Show this help and exit.
  --version       Show the version and exit.

Example:
  tssync logs.example.com:4321 /srv/mirror/app.log
  tailsrv -p 4321 /srv/mirror/app.log     serve the mirror onwards
  tssync --all logs.example.com:4321 /srv/mirror/logs/

Exit status: 0 when stopped by SIGTERM, or with --no-reconnect when the server
closes the connection; 1 on an error (FILE locked by another tssync, not
writable, ...), reported in one line on standard error; 2 on bad usage; 130
after Ctrl-C.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from typing import Dict, List, Optional

from ..protocol import PROOF_BYTES
from ..usage import UsageError, console_script
from .follower import ProtocolError, Replaced, follow, list_files, parse_address
from .replay import SCHEMES, parse_stream_address
from .tool import Args, describe, run

log = logging.getLogger(__name__)


class Locked(OSError):
    """FILE is already being mirrored by another tssync."""


@console_script
def main(argv: Optional[List[str]] = None) -> int:
    return run(__doc__, argv, _tssync)


#: Seconds between looks at the server's list of files with --all: a new file
#: is mirrored within this long, and a look costs the server one stat per file.
LIST_INTERVAL = 2.0


def _tssync(args: Args) -> int:
    address = args["ADDR"]
    stream = address.startswith(SCHEMES)
    # A bad address is a usage error, before touching FILE.
    parse_stream_address(address) if stream else parse_address(address)
    reconnect = not args["--no-reconnect"]
    if stream:
        if args["--all"] or args["--file"]:
            raise UsageError("--all and --file name the files of a tailsrv server; a "
                             "stream holds one file")
        return mirror_stream(args["FILE"], address)
    if args["--all"]:
        return mirror_all(address, args["DIR"], reconnect)
    mirror_into(args["FILE"], address, reconnect, args["--file"])
    return 0


def mirror_stream(path: str, address: str) -> int:
    """Mirror the file a JetStream stream holds (``nats://...``) into ``path``."""
    from .subscriber import sync  # nats-py, loaded only for a stream
    mirror = Mirror(path)
    try:
        return sync(address, mirror)
    finally:
        mirror.close()


def mirror_into(path: str, address: str, reconnect: bool, name: Optional[str] = None) -> None:
    """Mirror the file ``name`` (None: the one file) of the server at
    ``address`` into ``path``, from ``path``'s length on."""
    mirror = Mirror(path)
    try:
        size = os.fstat(mirror.fd).st_size
        before = os.pread(mirror.fd, min(size, PROOF_BYTES), size - min(size, PROOF_BYTES))
        chunks = follow(address, size, reconnect=reconnect, before=before,
                        on_replaced=mirror.rotate, file=name, announce=True)
        for chunk in chunks:
            write_all(mirror.fd, chunk)
    finally:
        mirror.close()


def mirror_all(address: str, directory: str, reconnect: bool) -> int:
    """``--all``: each file of the server into ``directory``, one thread per
    file, new files as the server's list shows them (every `LIST_INTERVAL`).
    Without ``reconnect``: the files listed at the start, until each ends."""
    os.makedirs(directory, exist_ok=True)
    mirrors: Dict[str, threading.Thread] = {}
    while True:
        try:
            files = list_files(address)
        except OSError as error:
            if not reconnect:
                raise
            log.warning("listing the files of %s: %s; trying again in %g s", address,
                        error.strerror or error, LIST_INTERVAL)
            files = []
        for name, _size in files:
            if name not in mirrors:
                mirrors[name] = threading.Thread(
                    target=_mirror_thread, name=name, daemon=True,
                    args=(os.path.join(directory, name), address, reconnect, name))
                mirrors[name].start()
                log.info("mirroring %s into %s", name, os.path.join(directory, name))
        if not reconnect:
            for thread in mirrors.values():
                thread.join()
            return 0
        time.sleep(LIST_INTERVAL)


def _mirror_thread(path: str, address: str, reconnect: bool, name: str) -> None:
    """One file of ``--all``: its error ends its mirror, said in one line."""
    try:
        mirror_into(path, address, reconnect, name)
    except (OSError, ProtocolError) as error:
        log.error("%s: %s", name, describe(error))


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
