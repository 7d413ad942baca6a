"""Thousands of clients in one thread: an epoll loop of non-blocking sockets.

`Client` connects to 127.0.0.1, sends its header and reads; `Follower` checks
every byte it gets against the file; `Spawner` keeps a number of short-lived
clients going; `open_in_waves` opens many without overflowing the backlog.
"""

from __future__ import annotations

import errno
import heapq
import os
import selectors
import socket
import struct
import time
from typing import Callable, List, Optional

from . import limits
from .files import GrowingFile
from .report import Tally

#: Bytes asked of a socket per read.
RECV = 256 * 1024

#: Connections opened per batch: fewer than the server's backlog, so handshakes
#: are not dropped and retried a second later.
WAVE = 1000

#: ``IP_BIND_ADDRESS_NO_PORT`` (linux/in.h): bind a source address without
#: taking one of its ports until connect, where the 4-tuple must be free.
IP_BIND_ADDRESS_NO_PORT = 24

#: SO_LINGER on with a zero timeout: close() sends a RST instead of a FIN.
LINGER_RST = struct.pack("ii", 1, 0)


class Loop:
    """One epoll loop for all the clients of a case, plus timers."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.clients: set = set()
        self._timers: list = []
        self._sequence = 0

    def set_events(self, client: "Client", events: int) -> None:
        if events == client.events:
            return
        if not client.events:
            self.selector.register(client.sock, events, client)
        elif not events:
            self.selector.unregister(client.sock)
        else:
            self.selector.modify(client.sock, events, client)
        client.events = events

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        self._sequence += 1
        heapq.heappush(self._timers, (time.monotonic() + delay, self._sequence, callback))

    def run(self, done: Callable[[], bool], timeout: float, tick: float = 0.05) -> bool:
        """Serve events until ``done()`` (asked every ``tick`` s) or ``timeout`` s."""
        deadline = time.monotonic() + timeout
        check = 0.0
        while True:
            now = time.monotonic()
            if now >= check:
                if done():
                    return True
                check = now + tick
            if now >= deadline:
                return False
            while self._timers and self._timers[0][0] <= now:
                heapq.heappop(self._timers)[2]()
            wake = min(deadline, check, self._timers[0][0] if self._timers else deadline)
            for key, mask in self.selector.select(max(0.0, wake - time.monotonic())):
                key.data.ready(mask)

    def idle(self, seconds: float) -> None:
        """Keep serving events for ``seconds``."""
        self.run(lambda: False, seconds)

    def close(self) -> None:
        for client in list(self.clients):
            client.close()
        self.selector.close()


class Client:
    """A non-blocking connection to 127.0.0.1:port: connect, send the header, read.

    Subclasses override the ``on_*`` hooks. ``ended`` is called once when the
    connection is over, whoever ended it.
    """

    #: SO_RCVBUF to ask for, or None for the kernel's default.
    rcvbuf: Optional[int] = None
    #: What to wait for once connected: reading, or nothing at all.
    listen = selectors.EVENT_READ
    #: The loopback address to connect from, or None for the kernel's choice
    #: (the `crowd` case: each address has its own ephemeral ports).
    source: Optional[str] = None

    def __init__(self, loop: Loop, port: int, header: bytes,
                 ended: Optional[Callable[["Client"], None]] = None) -> None:
        self.loop, self.port, self.header, self.ended = loop, port, header, ended
        self.sock: Optional[socket.socket] = None
        self.events = 0
        self.opened = 0.0
        self.connected = False

    def open(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        if self.rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        if self.source:  # the port is chosen at connect (IP_BIND_ADDRESS_NO_PORT)
            self.sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            self.sock.bind((self.source, 0))
        self.events, self.connected, self.opened = 0, False, time.monotonic()
        self.loop.clients.add(self)
        error = self.sock.connect_ex(("127.0.0.1", self.port))
        if error not in (0, errno.EINPROGRESS):
            self.lost(os.strerror(error))
        else:
            self.loop.set_events(self, selectors.EVENT_WRITE)

    def ready(self, _mask: int) -> None:
        if not self.connected:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self.lost(os.strerror(error))
                return
            self.connected = True
            self.loop.set_events(self, self.listen)
            if self.header:
                self.send(self.header)
            if self.sock is not None:
                self.on_open()
            return
        try:
            data = self.sock.recv(RECV)
        except BlockingIOError:
            return
        except OSError as error:
            self.lost(error.strerror or str(error))
            return
        if data:
            self.on_data(data)
        else:
            self.lost("closed by the server")

    def send(self, data: bytes) -> None:
        try:
            self.sock.send(data)  # a header fits in an empty socket buffer
        except OSError as error:
            self.lost(error.strerror or str(error))

    def lost(self, why: str) -> None:
        """The connection failed or the server ended it."""
        self.close()
        self.on_lost(why)

    def close(self, reset: bool = False) -> None:
        if self.sock is None:
            return
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        self.loop.set_events(self, 0)
        self.sock.close()
        self.sock = None
        self.loop.clients.discard(self)
        if self.ended is not None:
            self.ended(self)

    def on_open(self) -> None:
        pass

    def on_data(self, data: bytes) -> None:
        pass

    def on_lost(self, why: str) -> None:
        pass


class Progress:
    """How many followers have reached a goal size, and when the last one did."""

    def __init__(self, goal: int) -> None:
        self.goal, self.round, self.reached = goal, 0, 0
        self.set_at = self.last = time.monotonic()

    def next(self, goal: int) -> None:
        self.goal, self.round, self.reached = goal, self.round + 1, 0
        self.set_at = time.monotonic()

    @property
    def latency(self) -> float:
        return self.last - self.set_at


class Follower(Client):
    """Follows the file from its header and checks every byte against it.

    The start is known (``start``), announced by the server (a ``?`` header,
    checked by ``check``), or, for a plain negative offset, found by locating
    the first bytes received between ``window`` and the file's size minus the
    offset. With ``want`` it closes (FIN, or RST with ``reset``) after that many
    bytes. A mismatch is counted in ``tally`` and ends the client.
    """

    #: Bytes used to locate a plain negative offset in random data: unique by far.
    LOCATE = 64

    def __init__(self, loop: Loop, port: int, header: bytes, file: GrowingFile, tally: Tally,
                 start: Optional[int] = None, *, progress: Optional[Progress] = None,
                 want: Optional[int] = None, reset: bool = False, back: int = 0,
                 check: Optional[Callable[[int, int], Optional[str]]] = None,
                 ended: Optional[Callable[[Client], None]] = None) -> None:
        super().__init__(loop, port, header, ended)
        self.file, self.tally, self.progress = file, tally, progress
        self.offset, self.want, self.reset, self.back, self.check = start, want, reset, back, check
        self.received = 0
        self.pending = b""
        self.floor = 0
        self.seen_round = -1

    def on_open(self) -> None:
        self.floor = self.file.served  # the least size the server can resolve against
        if self.want == 0:
            self.close(self.reset)
        else:
            self._advance()

    def on_data(self, data: bytes) -> None:
        if self.offset is None:
            data = self._find_start(data)
            if data is None:
                return
        expected = self.file.read(self.offset, len(data))
        if expected != data:
            at = next((i for i, (a, b) in enumerate(zip(data, expected)) if a != b),
                      len(expected))
            self.fail(f"{self.header!r}: byte {self.offset + at} differs from the file")
            return
        self.offset += len(data)
        self.file.served = max(self.file.served, self.offset)
        self.received += len(data)
        self.tally["bytes verified"] += len(data)
        self._advance()
        if self.want is not None and self.received >= self.want:
            self.close(self.reset)

    def _find_start(self, data: bytes) -> Optional[bytes]:
        """Buffer the first bytes until the start is known; return the file data."""
        self.pending += data
        if self.check is not None:
            line, newline, rest = self.pending.partition(b"\n")
            if not newline:
                if len(self.pending) > 24:
                    self.fail(f"{self.header!r}: no position announced")
                return None
            self.offset = int(line)
            with self.file.lock:
                problem = self.check(self.offset, self.floor)
            if problem:
                self.fail(f"{self.header!r}: announced {self.offset}: {problem}")
                return None
        else:
            if len(self.pending) < self.LOCATE:
                return None
            with self.file.lock:
                low = max(0, self.floor - self.back)
                high = max(0, self.file.size - self.back)
                self.offset = self.file.locate(self.pending[:self.LOCATE], low, high)
            if self.offset is None:
                self.fail(f"{self.header!r}: first bytes not in the file in [{low}, {high}]")
                return None
            rest = self.pending
        self.pending = b""
        return rest

    def _advance(self) -> None:
        progress = self.progress
        if (progress is not None and self.offset is not None and self.offset >= progress.goal
                and self.seen_round != progress.round):
            self.seen_round = progress.round
            progress.reached += 1
            progress.last = time.monotonic()

    def fail(self, note: str) -> None:
        self.tally["mismatches"] += 1
        self.tally.note(note)
        self.close()

    def on_lost(self, why: str) -> None:
        self.tally["ended by the server"] += 1
        self.tally.note(f"{self.header!r} at {self.offset}: {why}")


def open_in_waves(loop: Loop, clients: List[Client], tally: Tally) -> float:
    """Open clients WAVE at a time, each wave connected before the next; seconds taken."""
    began = time.monotonic()
    connected = lambda: sum(1 for c in clients if c.connected or c.sock is None)
    for i in range(0, len(clients), WAVE):
        for client in clients[i:i + WAVE]:
            client.open()
        if not loop.run(lambda: connected() >= min(len(clients), i + WAVE), limits.WAIT, tick=0.1):
            tally.note(f"connections {i}..{i + WAVE} not all established in {limits.WAIT:g} s")
            break
    return time.monotonic() - began


class Spawner:
    """Keeps ``concurrency`` clients made by ``make`` open, until ``total`` were
    started or ``duration`` seconds passed; then `done` once all have ended."""

    def __init__(self, loop: Loop, make: Callable[["Spawner"], Client], total: int,
                 concurrency: int, duration: float) -> None:
        self.loop, self.make, self.total, self.concurrency = loop, make, total, concurrency
        self.deadline = time.monotonic() + duration
        self.started = self.running = 0
        self._filling = False

    def fill(self) -> None:
        self._filling = False
        while (self.running < self.concurrency and self.started < self.total
               and time.monotonic() < self.deadline):
            self.started += 1
            self.running += 1
            self.make(self).open()

    def ended(self, _client: Client) -> None:
        self.running -= 1
        if not self._filling:
            self._filling = True
            self.loop.later(0, self.fill)

    @property
    def exhausted(self) -> bool:
        return self.started >= self.total or time.monotonic() >= self.deadline

    def done(self) -> bool:
        return self.exhausted and self.running == 0
