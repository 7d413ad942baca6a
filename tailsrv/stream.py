"""Sending the file to clients: kernel ``sendfile`` from the shared descriptor,
never a byte copied through Python, each client at its own pace.

A client that is behind runs its own loop in its own greenlet: send a chunk,
wait for the socket when it is full, yield between chunks so one fast reader
never starves the rest. A client that has caught up *parks*: its greenlet
sleeps, and when the file grows the `Fanout` makes one pass over every parked
client and tries a non-blocking ``sendfile`` for each, waking only those whose
socket could not take it all. That keeps an append to a file followed by a
thousand clients at a thousand syscalls, with no greenlet switches (see
docs/performance.md for the measurements behind this).
"""

from __future__ import annotations

import errno
import os
from typing import Dict, Optional, Set, Union

import gevent
from gevent.hub import Waiter, get_hub
from gevent.monkey import get_original
from gevent.socket import wait_write

from .watch import FileWatch

#: Most bytes one ``sendfile`` call may send before the client yields to the
#: others. A few MiB keeps syscalls rare on a fast reader and each turn short.
CHUNK = 4 * 1024 * 1024

#: Bytes discarded per read when a caught-up client sends us something after its
#: header. The protocol ignores such bytes; reading them only lets us notice a
#: reset connection while the file is idle.
DISCARD = 64 * 1024


class Truncated(Exception):
    """The file shrank below this client's position: its offsets mean nothing now."""


_Wake = Union[None, BaseException]


class Hangups:
    """Clients whose peer has shut its side: told when the connection dies.

    After a peer's FIN its socket reads as end-of-file for good, so it cannot be
    watched for reading any more, and TCP cannot tell a peer that only
    half-closed (``echo 0 | nc``, still reading) from one that has gone. An
    epoll set that asks for no events still reports errors and hang-ups: the
    reset a gone peer answers the next append with (or a keepalive probe, once
    its side of the connection has expired), which frees the client at once
    rather than at the append after.
    """

    def __init__(self) -> None:
        # Made at once, not when first needed: that may be when descriptors have
        # run out. The watcher holds no reference on the loop, like a daemon.
        # The original epoll: monkey-patching removes ``select.epoll`` (and it
        # is only ever polled with a zero timeout here, so it never blocks).
        self._epoll = get_original("select", "epoll")()
        self._watcher = get_hub().loop.io(self._epoll.fileno(), 1, ref=False)
        self._watcher.start(self._on_ready)
        self._followers: Dict[int, Follower] = {}

    def add(self, follower: Follower) -> None:
        self._epoll.register(follower.fd, 0)
        self._followers[follower.fd] = follower

    def discard(self, follower: Follower) -> None:
        if self._followers.pop(follower.fd, None) is not None:
            self._epoll.unregister(follower.fd)

    def close(self) -> None:
        self._watcher.stop()
        self._watcher.close()
        self._epoll.close()
        self._followers.clear()

    def _on_ready(self) -> None:
        for fd, _ in self._epoll.poll(0):
            follower = self._followers.pop(fd)
            self._epoll.unregister(fd)
            follower.wake(ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET)))


class Fanout:
    """The clients of one file, and the pass that feeds the caught-up ones."""

    def __init__(self, watch: FileWatch) -> None:
        self.watch = watch
        self.parked: Set[Follower] = set()
        self.hangups = Hangups()
        watch.subscribe(self._on_change)

    def close(self) -> None:
        """Release what watching the clients took (the server has ended them)."""
        self.hangups.close()

    def _on_change(self, size: int, shrank: bool) -> None:
        """The pass: one non-blocking ``sendfile`` per parked client, in the
        watcher greenlet. It is the whole cost of an append (the profile at a
        thousand clients is 85% ``sendfile`` itself), so it is written flat:
        no call per client but the syscall, locals for everything."""
        fd = self.watch.fd
        sendfile = os.sendfile
        for follower in tuple(self.parked):
            offset = follower.offset
            if offset < size:
                try:
                    n = sendfile(follower.fd, fd, offset, size - offset)
                except BlockingIOError:
                    follower.wake(None)
                    continue
                except OSError as error:
                    follower.wake(error)
                    continue
                follower.offset = offset + n
                if n and offset + n < size:  # the socket is full: its greenlet waits
                    follower.wake(None)
            elif shrank and offset > size:
                follower.wake(Truncated(f"file truncated to {size} bytes"))


class Follower:
    """One connected client past its header: where it is and how much it got."""

    __slots__ = ("fanout", "sock", "fd", "start", "offset", "_waiter", "_reader")

    def __init__(self, fanout: Fanout, sock, offset: int) -> None:
        self.fanout = fanout
        self.sock = sock
        self.fd: int = sock.fileno()
        self.start = offset
        self.offset = offset
        self._waiter: Optional[Waiter] = None
        self._reader = None

    @property
    def sent(self) -> int:
        """Bytes sent so far: the offset only ever moves by what was sent."""
        return self.offset - self.start

    def run(self) -> None:
        """Stream until the client is gone (OSError) or the file shrank below it
        (`Truncated`); returns only by raising."""
        watch = self.fanout.watch
        truncations = watch.truncations
        try:
            while True:
                size = watch.size
                if watch.truncations != truncations:
                    truncations = watch.truncations
                    if self.offset > size:
                        raise Truncated(f"file truncated to {size} bytes")
                if self.offset >= size:
                    self._park()
                elif not self._send(watch.fd, size):
                    # Shorter than we knew: the watcher has yet to see it shrink.
                    watch.wait_for_change(size)
        finally:
            self._stop_reading()
            self.fanout.hangups.discard(self)

    def _send(self, file_fd: int, size: int) -> bool:
        """Send up to ``size``; False when the file turned out shorter."""
        while self.offset < size:
            try:
                n = os.sendfile(self.fd, file_fd, self.offset, min(CHUNK, size - self.offset))
            except BlockingIOError:
                wait_write(self.fd)
                continue
            if n == 0:
                return False
            self.offset += n
            if self.offset < size:
                gevent.sleep(0)  # between chunks, let the other clients have a turn
        return True

    def _park(self) -> None:
        """Sleep until the `Fanout` or the socket has news for this client."""
        self._waiter = waiter = Waiter()
        if self._reader is None:
            self._reader = get_hub().loop.io(self.fd, 1)
            self._reader.start(self._on_readable)
        self.fanout.parked.add(self)
        try:
            woken: _Wake = waiter.get()
        finally:
            self._unpark()
        if woken is not None:
            raise woken

    def _unpark(self) -> None:
        self._waiter = None
        self.fanout.parked.discard(self)

    def wake(self, why: _Wake) -> None:
        """Hand the client back to its own greenlet (from the hub or the fanout)."""
        waiter = self._waiter
        if waiter is not None:
            self._unpark()
            get_hub().loop.run_callback(waiter.switch, why)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, DISCARD)
        except BlockingIOError:
            return
        except OSError as error:
            self._stop_reading()
            self.wake(error)
            return
        if not data:  # half-closed (``echo 0 | nc``), or gone: keep sending
            self._stop_reading()
            self.fanout.hangups.add(self)

    def _stop_reading(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader.close()
            self._reader = None
