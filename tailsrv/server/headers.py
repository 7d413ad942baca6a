"""Connections whose header has not all arrived yet: watched by one epoll set,
each with a timer for its deadline, and no greenlet.

Most clients send their header with the connection, and the server reads it in
the accept callback. The others (the header came a moment after the accept, or
a person is typing it into ``nc``) wait here. A greenlet each cost about 3 KiB
of memory that stayed behind as fragments after the greenlets were gone: with
10,000 clients connecting at once, 3.2 KiB per client against 0.4 KiB.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List

from gevent.hub import get_hub
from gevent.monkey import get_original

from ..protocol import BadHeader, HeaderReader, Request

#: Bytes asked of the socket per read while waiting for a header: more than a
#: header can be, so a well-behaved client is read in one call.
HEADER_READ = 128

_epoll = get_original("select", "epoll")
_EPOLLIN = 0x001


class Pending:
    """A connection waiting for its header: what has come of it, and who it is."""

    __slots__ = ("fd", "peer", "began", "reader", "timer")

    def __init__(self, fd: int, peer: str, began: float, reader: HeaderReader) -> None:
        self.fd = fd
        self.peer = peer
        self.began = began
        self.reader = reader
        self.timer = None


class Headers:
    """The connections waiting for their header. ``arrived`` is called with
    one and its `Request` when its newline is in; ``failed`` with one and the
    reason (`BadHeader`, also for a late header, or OSError) when it cannot be.
    Either way it is no longer here, and its descriptor is the callee's."""

    def __init__(self, timeout: float, arrived: Callable[[Pending, Request], None],
                 failed: Callable[[Pending, Exception], None]) -> None:
        self.timeout = timeout
        self._arrived = arrived
        self._failed = failed
        self._pending: Dict[int, Pending] = {}
        self._loop = get_hub().loop
        self._sockets = _epoll()
        self._watcher = self._loop.io(self._sockets.fileno(), 1, ref=False)
        self._watcher.start(self._on_ready)

    def take(self, pending: Pending) -> None:
        """A new connection: its header read at once if it came with it (as
        it mostly does), else when it comes, within the timeout."""
        if not self._read(pending):
            self._wait(pending)

    def _wait(self, pending: Pending) -> None:
        self._pending[pending.fd] = pending
        self._sockets.register(pending.fd, _EPOLLIN)
        pending.timer = self._loop.timer(self.timeout)
        pending.timer.start(self._late, pending)

    def close(self) -> List[Pending]:
        """Stop watching; the connections still waiting, for the caller to close."""
        waiting = [self._forget(fd) for fd in list(self._pending)]
        self._watcher.stop()
        self._watcher.close()
        self._sockets.close()
        return waiting

    def _forget(self, fd: int) -> Pending:
        pending = self._pending.pop(fd)
        self._sockets.unregister(fd)
        pending.timer.stop()
        pending.timer.close()
        return pending

    def _on_ready(self) -> None:
        for fd, _ in self._sockets.poll(0):
            pending = self._pending.get(fd)
            if pending is not None:
                self._read(pending)

    def _read(self, pending: Pending) -> bool:
        """Read what the connection sent; True once it is settled (its header
        arrived, or failed) and handed on, no longer waiting here."""
        try:
            request = pending.reader.feed(os.read(pending.fd, HEADER_READ))
        except BlockingIOError:
            return False
        except (BadHeader, OSError) as error:
            self._failed(self._settle(pending), error)
            return True
        if request is None:
            return False
        self._arrived(self._settle(pending), request)
        return True

    def _settle(self, pending: Pending) -> Pending:
        """The connection, no longer waiting here (if it was)."""
        return self._forget(pending.fd) if pending.fd in self._pending else pending

    def _late(self, pending: Pending) -> None:
        self._failed(self._forget(pending.fd),
                     BadHeader(f"no complete header within {self.timeout:g} s"))
