"""Talking to systemd: readiness notification, the journal, socket activation.

Pure standard library (no compiled ``systemd`` binding): notifications and
journal records are datagrams on a unix socket, and activation is three
environment variables. Each function does nothing when its environment variable
is absent, so the same binary runs under systemd and outside it.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
from typing import Dict, List, Mapping, Optional, Tuple

log = logging.getLogger(__name__)

#: Where journald takes native-protocol datagrams.
JOURNAL_SOCKET = "/run/systemd/journal/socket"

#: The first descriptor systemd passes (sd_listen_fds(3)): 0-2 are stdio.
LISTEN_FDS_START = 3

#: The environment of socket activation, removed once read so that no child
#: process takes the sockets for its own.
LISTEN_VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")

#: syslog priorities for logging's levels (journald's PRIORITY field).
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4,
             logging.INFO: 6, logging.DEBUG: 7}


def priority(levelno: int) -> int:
    """The syslog priority for a logging level (levels between round down)."""
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``.

    Returns whether a notification was sent. A failure is logged, never raised:
    the server is more important than its supervisor's bookkeeping.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as error:
        log.warning("cannot notify systemd at %s: %s", address.lstrip("\0"), error)
        return False
    return True


def stderr_is_journal() -> bool:
    """True when systemd connected stderr to the journal (``$JOURNAL_STREAM``)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


class PriorityPrefixFormatter(logging.Formatter):
    """``<N>message``: how a program on a journal stream gives each line its
    priority (see sd-daemon(3))."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{priority(record.levelno)}>{super().format(record)}"


class JournalHandler(logging.Handler):
    """Sends records to journald over its native datagram protocol, with their
    priority, logger and source location as journal fields."""

    def __init__(self, path: str = JOURNAL_SOCKET, identifier: str = "tailsrv") -> None:
        super().__init__()
        self.path = path
        self.identifier = identifier
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: Dict[str, str] = {
                "MESSAGE": self.format(record),
                "PRIORITY": str(priority(record.levelno)),
                "SYSLOG_IDENTIFIER": self.identifier,
                "LOGGER": record.name,
                "CODE_FILE": record.pathname,
                "CODE_LINE": str(record.lineno),
                "CODE_FUNC": record.funcName,
            }
            self._sock.sendto(encode_fields(fields), self.path)
        except Exception:  # logging must never take the server down
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()


def encode_fields(fields: Dict[str, str]) -> bytes:
    """The journal's native wire format: ``KEY=value\\n``, or for values with a
    newline ``KEY\\n`` + little-endian 64-bit length + value + ``\\n``."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def journal_handler() -> Optional[logging.Handler]:
    """The best way to reach the journal from here, or None if there is none."""
    if stderr_is_journal():
        handler = logging.StreamHandler()
        handler.setFormatter(PriorityPrefixFormatter("%(message)s"))
        return handler
    if os.path.exists(JOURNAL_SOCKET):
        return JournalHandler()
    return None


def parse_listen_fds(environ: Mapping[str, str], pid: int) -> List[Tuple[int, str]]:
    """The sockets systemd passed to process ``pid``, as ``(fd, name)`` pairs.

    Socket activation (sd_listen_fds(3)): ``$LISTEN_FDS`` sockets start at fd 3,
    named by the colon-separated ``$LISTEN_FDNAMES`` (``FileDescriptorName=``;
    systemd's default is the socket unit's name, here "unknown" when absent).
    They are for us only when ``$LISTEN_PID`` is our pid: a variable inherited
    from a parent means nothing. An empty list when there are none; ValueError
    when the variables are malformed.
    """
    count = environ.get("LISTEN_FDS")
    if count is None or environ.get("LISTEN_PID") != str(pid):
        return []
    if not count.isdigit():
        raise ValueError(f"LISTEN_FDS={count!r} is not a number")
    names = environ.get("LISTEN_FDNAMES", "").split(":")
    return [(LISTEN_FDS_START + i, names[i] if i < len(names) and names[i] else "unknown")
            for i in range(int(count))]


def listen_fds() -> List[Tuple[int, str]]:
    """`parse_listen_fds` for this process; removes the variables from the
    environment (as ``sd_listen_fds(1)`` does) so children do not see them."""
    fds = parse_listen_fds(os.environ, os.getpid())
    for name in LISTEN_VARIABLES:
        os.environ.pop(name, None)
    return fds
