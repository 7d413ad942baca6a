"""Sending the file to clients: kernel ``sendfile`` from the shared descriptor,
never a byte copied through Python, each client at its own pace.

A client past its header is a `Client`: a small object (its descriptor, where it
is, what it was sent) owned by the `Fanout` of the file until it ends. A client
that has caught up is *parked*: it holds no greenlet at all. When the file grows
the fanout makes one pass over the parked clients, in the event loop's own
callback for the file's news, with one non-blocking ``sendfile`` each. A client
gets a greenlet only while it must wait for its socket (it is behind and the
socket is full), and gives it back once it has caught up.

The sockets of every client are watched by one epoll set, not a watcher each:
what a client sends after its header is read and thrown away, and a reset or a
hang-up ends it even while the file is idle.

Every client ends in one place, `Fanout.end`: its descriptor is closed and the
owner's ``ended`` callback hears why (to log it and count what it was sent).
"""

from __future__ import annotations

import errno
import os
from typing import Callable, Dict, Optional, Set

import gevent
from gevent.monkey import get_original
from gevent.hub import get_hub
from gevent.socket import wait_write

from .watch import FileWatch

#: Most bytes one ``sendfile`` call may send before the client yields to the
#: others. A few MiB keeps syscalls rare on a fast reader and each turn short.
CHUNK = 4 * 1024 * 1024

#: Bytes discarded per read when a client sends us something after its header.
#: The protocol ignores such bytes; reading them only lets us notice a reset
#: connection while the file is idle.
DISCARD = 64 * 1024

_epoll = get_original("select", "epoll")
_EPOLLIN = 0x001
_EPOLLERR = 0x008
_EPOLLHUP = 0x010


class Truncated(Exception):
    """The file shrank below this client's position: its offsets mean nothing now."""


class Client:
    """One connected client past its header: its socket's descriptor, where it
    is in the file, and what it was sent. ``peer`` and ``began`` are for the
    log line at its end. ``greenlet`` is set while it waits for its socket."""

    __slots__ = ("fd", "peer", "began", "start", "offset", "truncations", "greenlet")

    def __init__(self, fd: int, peer: str, began: float, offset: int) -> None:
        self.fd = fd
        self.peer = peer
        self.began = began
        self.start = offset
        self.offset = offset
        self.truncations = 0
        self.greenlet: Optional[gevent.Greenlet] = None

    @property
    def sent(self) -> int:
        """Bytes sent so far: the offset only ever moves by what was sent."""
        return self.offset - self.start

    def send(self, file_fd: int, offset: int, count: int) -> int:
        """Send up to ``count`` file bytes from ``offset``; how many went.
        The place for a client that frames what it sends (a subclass); the
        fanout's pass does the same inline for plain clients."""
        return os.sendfile(self.fd, file_fd, offset, count)


#: Told of a client's end, with why: None when the server stopped, an OSError
#: when the client went, `Truncated`, or any other exception (a bug).
Ended = Callable[[Client, Optional[BaseException]], None]


class Fanout:
    """The clients of one file: who is parked, the pass that feeds them when
    the file grows, the greenlets of those that are behind, and their ends.

    ``spawn`` starts a greenlet (a pool's, so that the owner can end them all);
    ``ended`` is called once for every client that ends.
    """

    def __init__(self, watch: FileWatch, spawn: Callable[..., gevent.Greenlet],
                 ended: Ended) -> None:
        self.watch = watch
        self.clients: Dict[int, Client] = {}
        self.parked: Set[Client] = set()
        self._spawn = spawn
        self._ended = ended
        # Made at once, not when first needed: that may be when descriptors
        # have run out. The watcher holds no reference on the loop, like a daemon.
        self._sockets = _epoll()
        self._watcher = get_hub().loop.io(self._sockets.fileno(), 1, ref=False)
        self._watcher.start(self._on_sockets)
        watch.subscribe(self._on_change)

    def join(self, client: Client) -> None:
        """Take a client over: send it what there is, then park it or give it a
        greenlet until it has caught up. Never blocks."""
        client.truncations = self.watch.truncations
        self.clients[client.fd] = client
        self._sockets.register(client.fd, _EPOLLIN)
        size = self.watch.size
        offset = client.offset
        if offset < size and self.watch.fd is not None:
            try:
                offset += client.send(self.watch.fd, offset, min(CHUNK, size - offset))
            except BlockingIOError:
                pass
            except OSError as error:
                self.end(client, error)
                return
            client.offset = offset
        if offset >= size:
            self.parked.add(client)
        else:
            client.greenlet = self._spawn(self._catch_up, client)

    def end(self, client: Client, why: Optional[BaseException]) -> None:
        """The one way a client ends: forgotten, its socket closed, the owner told."""
        if self.clients.pop(client.fd, None) is None:
            return
        self.parked.discard(client)
        try:
            self._sockets.unregister(client.fd)
        except OSError:
            pass
        os.close(client.fd)
        self._ended(client, why)

    def close(self) -> None:
        """End every client ("server stopping") and release the socket watch."""
        for client in list(self.clients.values()):
            if client.greenlet is not None:
                client.greenlet.kill(block=False)
            self.end(client, None)
        self._watcher.stop()
        self._watcher.close()
        self._sockets.close()

    def bytes_sent(self) -> int:
        """File bytes sent so far to the clients connected now."""
        return sum(client.offset - client.start for client in self.clients.values())

    def slowest_lag(self) -> int:
        """Bytes the furthest-behind client has yet to receive (0 when none is behind)."""
        size = self.watch.size
        return max([0, *(size - client.offset for client in self.clients.values())])

    def _on_change(self, size: int, shrank: bool) -> None:
        """The pass: one non-blocking ``sendfile`` per parked client, in the
        event loop's callback for the file. It is the whole cost of an append
        (the profile at a thousand clients is 85% ``sendfile`` itself), so it
        is written flat: no call per client but the syscall (so it does what
        `Client.send` does, inline: a client that frames its data needs a set
        of its own, whose pass calls its ``send``)."""
        fd = self.watch.fd
        sendfile = os.sendfile
        parked = self.parked
        behind = None
        for client in tuple(parked):
            offset = client.offset
            if offset < size:
                try:
                    n = sendfile(client.fd, fd, offset, size - offset)
                except BlockingIOError:
                    n = 0
                except OSError as error:
                    self.end(client, error)
                    continue
                client.offset = offset = offset + n
                if offset < size:  # the socket is full: a greenlet waits for it
                    parked.discard(client)
                    if behind is None:
                        behind = []
                    behind.append(client)
            elif shrank and offset > size:
                self.end(client, Truncated(f"file truncated to {size} bytes"))
        if behind is not None:
            for client in behind:
                client.greenlet = self._spawn(self._catch_up, client)

    def _catch_up(self, client: Client) -> None:
        """A behind client's greenlet: send until caught up, then park."""
        watch = self.watch
        try:
            while True:
                size = watch.size
                if watch.truncations != client.truncations:
                    client.truncations = watch.truncations
                    if client.offset > size:
                        raise Truncated(f"file truncated to {size} bytes")
                if client.offset >= size:
                    break
                try:
                    n = client.send(watch.fd, client.offset, min(CHUNK, size - client.offset))
                except BlockingIOError:
                    wait_write(client.fd)
                    continue
                if n == 0:  # shorter than we knew: the watcher has yet to see it shrink
                    watch.wait_for_change(size)
                    continue
                client.offset += n
                if client.offset < size:
                    gevent.sleep(0)  # between chunks, let the other clients have a turn
        except gevent.GreenletExit:
            client.greenlet = None
            self.end(client, None)
            return
        except BaseException as error:  # gone (OSError), Truncated, or a bug
            client.greenlet = None
            self.end(client, error)
            return
        client.greenlet = None
        if client.fd in self.clients:
            self.parked.add(client)

    def _on_sockets(self) -> None:
        """What clients sent after their header, and their resets and hang-ups."""
        for fd, events in self._sockets.poll(0):
            client = self.clients.get(fd)
            if client is None:
                continue
            if events & _EPOLLIN:
                try:
                    if os.read(fd, DISCARD):
                        continue
                except BlockingIOError:
                    continue
                except OSError as error:
                    self._gone(client, error)
                    continue
                # End of file: half-closed (``echo 0 | nc``, still reading) or
                # gone, TCP cannot tell. Keep sending; an epoll set that asks
                # for no events still reports the reset a gone peer answers
                # the next append with, or a keepalive probe's failure.
                self._sockets.modify(fd, 0)
            elif events & (_EPOLLERR | _EPOLLHUP):
                self._gone(client, ConnectionResetError(errno.ECONNRESET,
                                                        os.strerror(errno.ECONNRESET)))

    def _gone(self, client: Client, error: OSError) -> None:
        if client.greenlet is not None:
            client.greenlet.kill(error, block=False)  # it ends the client itself
        else:
            self.end(client, error)
