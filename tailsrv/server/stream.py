"""Sending the file to clients, each at its own pace: kernel ``sendfile`` from
the shared descriptor, or, for a small append, one copy of it written to every
caught-up client.

A client past its header is a `Client`: a small object (its descriptor, where it
is, what it was sent) owned by the `Fanout` of the file until it ends, with no
greenlet of its own. A client that has caught up is *parked*: when the file
grows the fanout makes one pass over the parked clients, in the event loop's
own callback for the file's news, with one non-blocking send each: a ``write``
of the appended bytes when the watch read them (an append shorter than
`tailsrv.watch.TAIL` bytes: one ``pread`` for all clients, and a ``write`` costs
the kernel less than a ``sendfile`` of a few bytes), else a ``sendfile``. A
client whose socket is full is *blocked*: one epoll set watches the sockets of
all clients, and a blocked client is sent its next chunk when its socket has
room, until it has caught up and parks again. A chunk not in the page cache
is first read by a thread (`tailsrv.server.coldread`): meanwhile the client is
*warming*, and the loop, with every follower's append, never waits for a disk.

The same epoll set reads and throws away what clients send after their header,
and sees resets and hang-ups, so a gone client ends even while the file is idle.

A client that frames what it sends (an HTTP chunked body, `tailsrv.chunked`)
is parked in a set of its own, whose pass calls its `Client.send`: the plain
clients' pass stays one bare system call each.

Every client ends in one place, `Fanout.end`: its last words are written
(`Client.closing`), its descriptor is closed and the owner's ``ended`` callback
hears why (to log it and count what it was sent).
"""

from __future__ import annotations

import errno
import os
from typing import Callable, Dict, Optional, Set

from gevent.hub import get_hub
from gevent.monkey import get_original

from . import coldread
from .watch import FileWatch

#: Most bytes one ``sendfile`` call may send to a blocked client before the
#: others get a turn. A few MiB keeps syscalls rare on a fast reader and each
#: turn short.
CHUNK = 4 * 1024 * 1024

#: Bytes discarded per read when a client sends us something after its header.
#: The protocol ignores such bytes; reading them only lets us notice a reset
#: connection while the file is idle.
DISCARD = 64 * 1024

_epoll = get_original("select", "epoll")
_EPOLLIN = 0x001
_EPOLLOUT = 0x004
_EPOLLERR = 0x008
_EPOLLHUP = 0x010


class Truncated(Exception):
    """The file shrank below this client's position: its offsets mean nothing now."""


class Client:
    """One connected client past its header: its socket's descriptor, where it
    is in the file, and what it was sent. ``peer`` and ``began`` are for the
    log line at its end; ``events`` are what the fanout's epoll set watches
    its socket for."""

    __slots__ = ("fd", "peer", "began", "start", "offset", "events")

    #: Whether `send` frames the file bytes: then the pass calls it, rather
    #: than doing a bare ``sendfile`` inline.
    framed = False

    def __init__(self, fd: int, peer: str, began: float, offset: int) -> None:
        self.fd = fd
        self.peer = peer
        self.began = began
        self.start = offset
        self.offset = offset
        self.events = _EPOLLIN

    @property
    def sent(self) -> int:
        """Bytes sent so far: the offset only ever moves by what was sent."""
        return self.offset - self.start

    def send(self, file_fd: int, offset: int, count: int) -> int:
        """Send up to ``count`` file bytes from ``offset``; how many went.
        The place for a client that frames what it sends (a subclass); the
        fanout's pass does the same inline for plain clients."""
        return os.sendfile(self.fd, file_fd, offset, count)

    def closing(self, why: Optional[BaseException]) -> None:
        """Told by `Fanout.end`, before the socket is closed, why the client
        ends (see `Ended`): the place for a subclass's last bytes."""


#: Told of a client's end, with why: None when the server stopped, an OSError
#: when the client went, `Truncated`, or any other exception (a bug).
Ended = Callable[[Client, Optional[BaseException]], None]


class Fanout:
    """The clients of one file: the parked ones and the pass that feeds them
    when the file grows, the blocked ones fed as their sockets drain, and
    their ends. ``ended`` is called once for every client that ends."""

    def __init__(self, watch: FileWatch, ended: Ended) -> None:
        self.watch = watch
        self.clients: Dict[int, Client] = {}
        self.parked: Set[Client] = set()
        self.parked_framed: Set[Client] = set()
        self.blocked: Set[Client] = set()
        self.warming: Set[Client] = set()
        self._warmer: Optional[coldread.Warmer] = None
        self._ended = ended
        # Made at once, not when first needed: that may be when descriptors
        # have run out. The watcher holds no reference on the loop, like a daemon.
        self._sockets = _epoll()
        self._watcher = get_hub().loop.io(self._sockets.fileno(), 1, ref=False)
        self._watcher.start(self._on_sockets)
        watch.subscribe(self._on_change)

    def join(self, client: Client) -> None:
        """Take a client over: send it what there is, then park or block it."""
        self.clients[client.fd] = client
        self._sockets.register(client.fd, client.events)
        self._feed(client)

    def end(self, client: Client, why: Optional[BaseException]) -> None:
        """The one way a client ends: forgotten, its socket closed, the owner told."""
        if self.clients.pop(client.fd, None) is None:
            return
        self._parked(client).discard(client)
        self.blocked.discard(client)
        self.warming.discard(client)
        try:
            self._sockets.unregister(client.fd)
        except OSError:
            pass
        client.closing(why)
        os.close(client.fd)
        self._ended(client, why)

    def close(self) -> None:
        """End every client ("server stopping") and release the socket watch."""
        for client in list(self.clients.values()):
            self.end(client, None)
        self._watcher.stop()
        self._watcher.close()
        self._sockets.close()
        if self._warmer is not None:
            self._warmer.close()

    def bytes_sent(self) -> int:
        """File bytes sent so far to the clients connected now."""
        return sum(client.sent for client in self.clients.values())

    def slowest_lag(self) -> int:
        """Bytes the furthest-behind client has yet to receive (0 when none is behind)."""
        size = self.watch.size
        return max([0, *(size - client.offset for client in self.clients.values())])

    def _feed(self, client: Client, warmed: bool = False) -> None:
        """Send a client its next chunk; park it once it has caught up (or the
        file turned out shorter than we knew: the watcher will say), else
        watch its socket for room. Only what is in the page cache is sent
        from the loop: a chunk that starts cold is warmed first (`_warm`),
        and then sent whatever the cache says (``warmed``), so that it moves."""
        watch = self.watch
        size = watch.size
        offset = client.offset
        full = False
        if offset < size:
            count = min(CHUNK, size - offset)
            if not warmed:
                count = coldread.cached(watch.fd, offset, count)
                if not count:
                    self._warm(client, offset, min(CHUNK, size - offset))
                    return
            try:
                n = client.send(watch.fd, offset, count)
            except BlockingIOError:
                full = True
            except OSError as error:
                self.end(client, error)
                return
            else:
                client.offset = offset = offset + n
                full = 0 < n and offset < size
        if full:
            self._block(client)
        else:
            self.blocked.discard(client)
            self._parked(client).add(client)
            self._watch(client, client.events & ~_EPOLLOUT)

    def _parked(self, client: Client) -> Set[Client]:
        """The set the client is parked in when it has caught up."""
        return self.parked_framed if client.framed else self.parked

    def _block(self, client: Client) -> None:
        self._parked(client).discard(client)
        self.blocked.add(client)
        self._watch(client, client.events | _EPOLLOUT)

    def _warm(self, client: Client, offset: int, count: int) -> None:
        """Set a client aside while a thread reads its next chunk into the
        page cache; `_warmed` feeds it then."""
        self._parked(client).discard(client)
        self.blocked.discard(client)
        self.warming.add(client)
        self._watch(client, client.events & ~_EPOLLOUT)
        if self._warmer is None:
            self._warmer = coldread.Warmer()
        self._warmer.warm(self.watch.fd, offset, count, lambda: self._warmed(client))

    def _warmed(self, client: Client) -> None:
        if client in self.warming:  # else it ended meanwhile
            self.warming.discard(client)
            self._feed(client, warmed=True)

    def _watch(self, client: Client, events: int) -> None:
        if events != client.events:
            client.events = events
            self._sockets.modify(client.fd, events)

    def _on_change(self, size: int, shrank: bool, tail: Optional[memoryview]) -> None:
        """The file changed: a pass over the plain parked clients, then one over
        the framed ones, and the end of the blocked ones it shrank below."""
        self._pass(self.parked, size, shrank, tail, False)
        if self.parked_framed:
            self._pass(self.parked_framed, size, shrank, None, True)
        if shrank:
            for client in (*self.blocked, *self.warming):
                if client.offset > size:
                    self.end(client, Truncated(f"file truncated to {size} bytes"))

    def _pass(self, parked: Set[Client], size: int, shrank: bool,
              tail: Optional[memoryview], framed: bool) -> None:
        """The pass: one non-blocking send per parked client, in the event
        loop's callback for the file. It is the whole cost of an append (the
        profile at a thousand clients is 85% the system call itself), so it is
        written flat: no call per plain client but the syscall. A client at
        the start of ``tail`` (the bytes just appended, when the watch read
        them) is written that copy; any other, ``sendfile`` (what `Client.send`
        does, inline); only ``framed`` clients' ``send`` is called."""
        fd = self.watch.fd
        sendfile = os.sendfile
        write = os.write
        at = size - len(tail) if tail is not None else -1
        for client in tuple(parked):
            offset = client.offset
            if offset < size:
                try:
                    if offset == at:
                        n = write(client.fd, tail)
                    elif framed:
                        n = client.send(fd, offset, size - offset)
                    else:
                        n = sendfile(client.fd, fd, offset, size - offset)
                except BlockingIOError:
                    n = 0
                except OSError as error:
                    self.end(client, error)
                    continue
                client.offset = offset = offset + n
                if offset < size:  # the socket is full
                    self._block(client)
            elif shrank and offset > size:
                self.end(client, Truncated(f"file truncated to {size} bytes"))

    def _on_sockets(self) -> None:
        """Room in blocked clients' sockets; what clients sent after their
        header; their resets and hang-ups."""
        clients = self.clients
        for fd, events in self._sockets.poll(0):
            client = clients.get(fd)
            if client is None:
                continue
            if events & _EPOLLIN:
                self._discard_input(client)
                if fd not in clients:
                    continue
            if events & _EPOLLOUT:
                self._feed(client)
            elif events & (_EPOLLERR | _EPOLLHUP) and not client.events & _EPOLLIN:
                self.end(client, ConnectionResetError(errno.ECONNRESET,
                                                      os.strerror(errno.ECONNRESET)))

    def _discard_input(self, client: Client) -> None:
        try:
            if os.read(client.fd, DISCARD):
                return
        except BlockingIOError:
            return
        except OSError as error:
            self.end(client, error)
            return
        # End of file: half-closed (``echo 0 | nc``, still reading) or gone,
        # TCP cannot tell. Keep sending; an epoll set that asks for no input
        # still reports the reset a gone peer answers the next append with,
        # or a keepalive probe's failure.
        self._watch(client, client.events & ~_EPOLLIN)
