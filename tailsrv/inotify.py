"""inotify straight from libc: the calls tailsrv makes, and the event format.

A few lines of ctypes rather than the ``inotify_simple`` package: to find libc,
that one runs ``ldconfig -p`` in a subprocess when it is imported
(``ctypes.util.find_library``), which loads subprocess, tempfile, random, bz2
and lzma: 1.4 MiB of every server's memory, against a budget of 30 MiB for a
server with a thousand clients. ``CDLL(None)`` is the libc already loaded.
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import List, NamedTuple

# Event masks, from <sys/inotify.h>.
MODIFY = 0x00000002
ATTRIB = 0x00000004
MOVED_TO = 0x00000080
CREATE = 0x00000100
DELETE_SELF = 0x00000400
MOVE_SELF = 0x00000800
Q_OVERFLOW = 0x00004000

#: struct inotify_event: wd, mask, cookie, then the length of the name after it.
_HEADER = struct.Struct("iIII")

_libc = ctypes.CDLL(None, use_errno=True)


class Event(NamedTuple):
    wd: int
    mask: int
    cookie: int
    name: str


def parse_events(data: bytes) -> List[Event]:
    """The events in bytes read from an inotify descriptor (whole events only,
    as the kernel hands them out)."""
    events = []
    pos = 0
    while pos < len(data):
        wd, mask, cookie, length = _HEADER.unpack_from(data, pos)
        pos += _HEADER.size + length
        name = data[pos - length:pos].split(b"\0", 1)[0]
        events.append(Event(wd, mask, cookie, os.fsdecode(name)))
    return events


def _check(result: int) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


class INotify:
    """A non-blocking, close-on-exec inotify descriptor (``fd``)."""

    def __init__(self) -> None:
        self.fd = _check(_libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))

    def add_watch(self, path: str, mask: int) -> int:
        """Watch ``path`` for the events in ``mask``; returns the watch descriptor."""
        return _check(_libc.inotify_add_watch(self.fd, os.fsencode(path), mask))

    def rm_watch(self, wd: int) -> None:
        _check(_libc.inotify_rm_watch(self.fd, wd))

    def read(self, size: int) -> List[Event]:
        """The events waiting, at most ``size`` bytes of them; none if none."""
        try:
            return parse_events(os.read(self.fd, size))
        except BlockingIOError:
            return []

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
