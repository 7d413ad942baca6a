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
room, until it has caught up and parks again. A chunk not wholly in
the page cache (`tailsrv.server.coldread`), or any chunk of a file on a slow
filesystem (FUSE), is sent by ``sendfile`` in a thread: meanwhile the client
is set aside (*warming*), and the loop, with every follower's append, never
waits for a disk. An HTTP client's framing is not for threads: its chunk is
read by a thread (warmed) first, then sent from the loop.

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

from . import coldread, uring
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
        self._sender: Optional[uring.Sender] = None
        self._try_uring = True
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
        if self._sender is not None:
            self._sender.close()

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
        watch its socket for room. Only a chunk wholly in the page cache is
        sent from the loop: a plain client's other chunks are sent by a thread
        (`_send_in_thread`); a framed client's warm prefix is sent, and a
        chunk that starts cold is warmed first (`_warm`), then sent whatever
        the cache says (``warmed``), so that it moves."""
        watch = self.watch
        size = watch.size
        offset = client.offset
        if offset >= size:
            self._after_send(client, False)
            return
        count = min(CHUNK, size - offset)
        if not warmed:
            warm = 0 if watch.slow else coldread.cached(watch.fd, offset, count)
            if warm < count and not client.framed:
                self._send_in_thread(client, offset, count)
                return
            if not warm:
                self._warm(client, offset, count)
                return
            count = warm
        try:
            result = client.send(watch.fd, offset, count)
        except OSError as error:
            result = error
        self._sent(client, offset, result)

    def _sent(self, client: Client, offset: int, result) -> None:
        """What a send from ``offset`` did (bytes sent, or the error met),
        in the loop or in a thread: the client moves on, then is blocked
        (its socket full, still behind), parked, or ended."""
        if isinstance(result, BlockingIOError):
            self._after_send(client, True)
        elif isinstance(result, OSError):
            self.end(client, result)
        else:
            client.offset = offset + result
            self._after_send(client, 0 < result and client.offset < self.watch.size)

    def _after_send(self, client: Client, full: bool) -> None:
        """Watch a client's socket for room when it is ``full`` (still behind),
        else park it."""
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
        self._set_aside(client)
        self._offload().warm(self.watch.fd, offset, count, lambda: self._warmed(client))

    def _set_aside(self, client: Client) -> None:
        """Neither parked nor blocked: a thread works for the client."""
        self._parked(client).discard(client)
        self.blocked.discard(client)
        self.warming.add(client)
        self._watch(client, client.events & ~_EPOLLOUT)

    def _offload(self) -> coldread.Warmer:
        if self._warmer is None:
            self._warmer = coldread.Warmer()
        return self._warmer

    def _warmed(self, client: Client) -> None:
        if client in self.warming:  # else it ended meanwhile
            self.warming.discard(client)
            self._feed(client, warmed=True)

    def _send_in_thread(self, client: Client, offset: int, count: int) -> None:
        """A plain client's ``sendfile`` in a thread, which may wait for the
        disk, the client set aside meanwhile. The
        thread has descriptors of its own (duplicates), so that a client or
        file that ends meanwhile cannot have its descriptor's number given to
        another, whose bytes would go out in its place."""
        self._set_aside(client)
        socket_fd, file_fd = os.dup(client.fd), os.dup(self.watch.fd)

        def send() -> int:
            try:
                return os.sendfile(socket_fd, file_fd, offset, count)
            finally:
                os.close(socket_fd)
                os.close(file_fd)

        self._offload().run(send, lambda result: self._sent_in_thread(client, offset, result))

    def _sent_in_thread(self, client: Client, offset: int, result) -> None:
        if client in self.warming:  # else it ended meanwhile
            self.warming.discard(client)
            self._sent(client, offset, result)

    def _watch(self, client: Client, events: int) -> None:
        if events != client.events:
            client.events = events
            self._sockets.modify(client.fd, events)

    def _on_change(self, size: int, shrank: bool, tail: Optional[memoryview]) -> None:
        """The file changed: a pass over the plain parked clients (for a slow
        file's growth not read by the watch, a thread's send to each), then
        one over the framed ones, and the end of the blocked ones it shrank
        below."""
        if tail is None and self.watch.slow:  # sendfile would read the file: threads do
            for client in tuple(self.parked):
                if client.offset > size:
                    self.end(client, Truncated(f"file truncated to {size} bytes"))
                elif client.offset < size:
                    self._feed(client)
        else:
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
        does, inline); only ``framed`` clients' ``send`` is called. When the
        pass writes ``tail`` to enough clients, those writes are one io_uring
        batch instead (`_send_batch`)."""
        fd = self.watch.fd
        sendfile = os.sendfile
        write = os.write
        at = size - len(tail) if tail is not None else -1
        batch: Optional[list] = None
        if (tail is not None and not framed and len(parked) >= uring.MIN_BATCH
                and self._batcher() is not None):
            batch = []
        for client in tuple(parked):
            offset = client.offset
            if offset < size:
                try:
                    if offset == at:
                        if batch is not None:  # sent after the loop
                            client.offset = size
                            batch.append(client)
                            continue
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
        if batch:
            self._send_batch(batch, tail, size)

    def _batcher(self) -> Optional[uring.Sender]:
        """The io_uring for batched sends, opened at the first pass that
        wants it; None where there is none (then the pass writes, as always)."""
        if self._sender is None and self._try_uring:
            self._sender = uring.open_sender()
            self._try_uring = self._sender is not None
        return self._sender

    def _send_batch(self, clients: list, tail: memoryview, size: int) -> None:
        """Write ``tail`` to every one of ``clients`` (the pass put them at
        the end, ``size``, already) in one io_uring submission; those that
        took only part of it, or none (``EAGAIN``), are put back and blocked
        as in the pass, and a failed send ends its client. The binding takes
        bytes, not the watch's view: one copy a pass."""
        at = size - len(tail)
        for index, result in self._sender.send([client.fd for client in clients], bytes(tail)):
            client = clients[index]
            if isinstance(result, BlockingIOError):
                result = 0
            elif isinstance(result, OSError):
                client.offset = at
                self.end(client, result)
                continue
            client.offset = at + result
            self._block(client)

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
