"""TailServer: a gevent `StreamServer` that streams one file to every client.

A connection is served in the event loop's callbacks, without a greenlet: its
header is usually there with the connection and read in the accept callback,
else it is read when it comes (`tailsrv.headers`); then the client is placed and
handed to the file's `Fanout`. Only a client that must wait before it starts
(for a line count to be reached) gets a greenlet, from a `gevent.pool.Pool` so
that ``stop()`` can end it. The server never reads the client again after the header's
newline; the `Fanout` owns the client from there until it ends, and tells the
server (`TailServer.client_ended`, the one place a client's end is logged and
counted).

Embeddable: it never monkey-patches, and several can run in one process next to
other gevent servers::

    server = TailServer(tcp_listener(4321), "/var/log/app.log")
    server.serve_forever()

One server may listen on several sockets (``TailServer([tcp_listener(4321),
unix_listener("/run/app.sock")], path)``): they share the file's one
descriptor, its watcher, the client pool and ``max_clients``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from typing import List, Optional, Tuple

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer
from gevent.socket import wait_write

from .. import logs
from ..keepalive import enable_keepalive
from ..protocol import REFUSAL, BadHeader, HeaderReader, Request, announcement, byte_position
from ..wrongport import http_answer, http_request, stream_port_text
from .accept import AcceptBackoff
from .headers import Headers, Pending
from .placement import Placement
from .rotation import Retired, RotatingWatch, Rotation
from .stream import Client, Fanout, Truncated
from .watch import FileWatch

log = logging.getLogger(__name__)

#: Most bytes a client's socket holds that TCP has not sent yet. Without a
#: bound one ``sendfile`` queues megabytes, which on loopback the receiver's
#: ACKs then push out on the receiver's CPU; with it a fan-out of a thousand
#: clients ran 2.5 to 3 times faster (the yardstick's README; here see
#: docs/performance.md).
NOTSENT_LOWAT = 64 * 1024

#: Why a connection may be closed without file data: the keys of
#: `TailServer.rejected`.
REJECT_REASONS = ("bad_header", "max_clients")


class RawAccept(StreamServer):
    """A `StreamServer` that hands ``do_handle`` the accepted descriptor,
    non-blocking, rather than a gevent socket object: a client is a descriptor
    for all the server does with it (read, sendfile, close), and the object
    was a tenth of a short connection's cost."""

    def do_read(self) -> Optional[tuple]:
        try:
            fd, address = self.socket._accept()
        except BlockingIOError:
            return None
        os.set_blocking(fd, False)
        return fd, address


class TailServer(AcceptBackoff, RawAccept, Placement):
    """Streams the file at ``path`` to every client of ``listener``.

    ``listener`` is a bound, listening socket (see `tailsrv.listeners`), an
    address as `gevent.server.StreamServer` takes it, or a list of listening
    sockets served together; an empty list for a server that only the fronts
    `attach`ed to it serve (the HTTP front). The server stops by itself when the file is
    deleted or moved, unless ``linger`` is true, or ``follow_name``: then new
    connections get the new file at ``path`` while the clients of the old one
    finish it (see `tailsrv.rotation`; ``rotation_grace`` is its grace period).

    For monitoring (see `tailsrv.metrics`): ``accepted`` counts connections
    accepted, ``rejected`` those turned away by reason, ``connections`` those
    open now (still sending their header, or streaming).
    """

    #: Seconds a client has to send a complete header. Long enough for a person
    #: typing into ``nc``; short enough that a half-open connection is dropped.
    header_timeout = 30.0

    #: Seconds ``stop()`` gives clients before they are disconnected. Clients
    #: never finish by themselves, so there is nothing to drain: this only
    #: bounds the time spent closing them.
    stop_timeout = 1.0

    #: Most connections served at once; more are accepted and closed at once
    #: rather than left in the backlog. None: no limit but the descriptors.
    max_clients: Optional[int] = None

    def __init__(
        self,
        listener,
        path: str,
        *,
        linger: bool = False,
        header_timeout: Optional[float] = None,
        max_clients: Optional[int] = None,
        follow_name: bool = False,
        rotation_grace: Optional[float] = None,
    ) -> None:
        listeners = listener if isinstance(listener, list) else [listener]
        #: False for a server with no listener of its own, served only by the
        #: fronts `attach`ed to it (``tailsrv --http ADDR:PORT`` without -p).
        self.listening = bool(listeners)
        # Without one, an address that is never bound, as gevent needs one.
        super().__init__(listeners[0] if listeners else ("127.0.0.1", 0), spawn=Pool())
        if header_timeout is not None:
            self.header_timeout = header_timeout
        if max_clients is not None:
            self.max_clients = max_clients
        self.serve_files(path, linger, follow_name, rotation_grace)
        self.headers = Headers(self.header_timeout, self._arrived, self._refused)
        self.siblings = [_Sibling(extra, self) for extra in listeners[1:]]
        #: Where the HTTP front is, in words ("the viewer is at http://...")
        #: when there is one: an HTTP request on the stream port is told.
        self.viewer: Optional[str] = None
        self.accepted = 0
        self.rejected: Counter = Counter()
        self.connections = 0
        self._sent_by_gone = 0

    def serve_files(self, path: str, linger: bool, follow_name: bool,
                    rotation_grace: Optional[float]) -> None:
        """Set up what is served: here the one file at ``path`` (a server of
        several files sets up its catalog instead)."""
        self.watch = RotatingWatch(path) if follow_name else FileWatch(path, linger=linger)
        self.fanout = Fanout(self.watch, self.client_ended)
        self.rotation = Rotation(self, rotation_grace) if follow_name else None

    def init_socket(self) -> None:
        if self.listening:
            super().init_socket()

    def start_accepting(self) -> None:
        if self.listening:
            super().start_accepting()

    def start(self) -> None:
        """Start following the file and accepting clients.

        Raises OSError when the file cannot be followed (see `FileWatch.start`).
        """
        self.start_files()
        super().start()
        for sibling in self.siblings:
            sibling.start()
        for server in (self, *self.siblings) if self.listening else self.siblings:
            tune(server.socket)

    def new_watch(self, path: str) -> FileWatch:
        """The watch of the file that replaced the one served (`Rotation`)."""
        return RotatingWatch(path)

    def retired(self) -> None:
        """An old file of ``follow_name`` was closed, its clients done (`Rotation`)."""

    def release(self, placement: Placement) -> None:
        """A request `lookup` gave ``placement`` for has joined its file or
        failed (a server of several files closes a file nobody reads)."""

    def start_files(self) -> None:
        """Start following what is served (see `serve_files`)."""
        self.watch.start()
        self.watch.gone.rawlink(self._file_gone)
        if self.rotation is not None:
            self.rotation.start()

    def stop_files(self) -> None:
        """Stop following what is served; end its clients."""
        if self.rotation is not None:
            self.rotation.stop()
        self.fanout.close()
        self.watch.close()

    @property
    def error(self) -> Optional[OSError]:
        """Why following the file failed, if it did (the exit status is then 1)."""
        return self.watch.error

    def lookup(self, name: Optional[str]) -> Optional[Placement]:
        """Where a request for the file ``name`` is placed; None when no file
        of that name is served. None names the one file."""
        if name is None or name == os.path.basename(self.watch.path):
            return self
        return None

    def listing(self) -> List[Tuple[str, os.stat_result]]:
        """The files served now, by name, with their status (a missing file
        is not listed)."""
        try:
            return [(os.path.basename(self.watch.path), os.stat(self.watch.path))]
        except OSError:
            return []

    def close(self) -> None:
        """Stop accepting on every listener and close them."""
        for sibling in self.siblings:
            sibling.close()
        super().close()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop accepting, disconnect every client, stop following the file."""
        self.close()
        for pending in self.headers.close():
            self._closed(pending.fd)
        self.pool.kill(block=True, timeout=self.stop_timeout if timeout is None else timeout)
        self.stop_files()

    def _file_gone(self, _event) -> None:
        gevent.spawn(self.stop)

    def do_handle(self, fd: int, address) -> None:
        """A new connection, in the accept callback: its header is read at once
        when it came with the connection, else when it comes (`Headers`).
        Closed at once when ``max_clients`` are already being served."""
        peer = self.admit(fd, address)
        if peer is None:
            return
        self.headers.take(Pending(fd, peer, time.monotonic(), self.reader()))

    #: Reads a connection's header: a single-file header (see `tailsrv.protocol`).
    reader = HeaderReader

    def admit(self, fd: int, address) -> Optional[str]:
        """Count a new connection (on any listener, HTTP ones included) in
        ``connections`` and return its peer for the log; one over
        ``max_clients`` is closed here (None)."""
        self.accepted += 1
        peer = format_peer(address)
        if self.max_clients is not None and self.connections >= self.max_clients:
            self.rejected["max_clients"] += 1
            log.warning("%s refused: already serving %d clients (--max-clients)",
                        peer, self.max_clients)
            # Through a socket object: in a monkey-patched process that is
            # gevent's close, which a greenlet of the same process waiting on
            # the other end needs to see the reset (tests/test_monkey_patched.py).
            socket.socket(fileno=fd).close()
            return None
        self.connections += 1
        return peer

    def attach(self, front: StreamServer) -> None:
        """Another server of this file sharing its pool and ``connections``
        (the HTTP front, `tailsrv.httpfront`): started, closed and stopped
        with this one."""
        self.siblings.append(front)

    def _arrived(self, pending: Pending, request: Request) -> None:
        """A whole header: the client starts now, or once its start is known."""
        if request.lines or request.announce:
            self.pool.spawn(self.handle, pending, request)
        else:
            self._follow(pending, request, byte_position(request.offset, self.watch.size))

    def handle(self, pending: Pending, request: Request,
               placement: Optional[Placement] = None) -> None:
        """A client that must wait before it starts: for a line count to be
        reached, or for its socket to take the announced position (or the
        refusal of its resume proof: then it gets the new file from byte 0).
        ``placement`` is the file asked for (None: the one file)."""
        try:
            fanout, start, refused = (placement or self).place(request)
            if request.announce:
                _write_all(pending.fd, REFUSAL if refused else announcement(start))
        except OSError as error:
            self._refused(pending, error)
            return
        except BaseException:  # stopped (GreenletExit), or a bug gevent reports
            self._closed(pending.fd)
            raise
        self._follow(pending, request, start, fanout, refused)

    def _follow(self, pending: Pending, request: Request, start: int,
                fanout: Optional[Fanout] = None, refused: bool = False) -> None:
        logs.info(log, "%s connected: header %s, %sstarting at byte %d", pending.peer, request,
                  "refused (file replaced or truncated), " if refused else "", start)
        (fanout or self.fanout).join(Client(pending.fd, pending.peer, pending.began, start))

    def _refused(self, pending: Pending, error: Exception) -> None:
        """A connection closed before it was a client: a bad header, or gone.
        An HTTP request is told in HTTP that this is the stream port."""
        if isinstance(error, BadHeader):
            self.rejected["bad_header"] += 1
            request = http_request(pending.reader.received)
            if request is not None:
                log.warning("%s rejected: an HTTP request (%s) on the stream port; answered "
                            "400", pending.peer, request)
                _answer_http(pending.fd, http_answer(pending.reader.received, 400,
                                                     stream_port_text(self.viewer)))
            else:
                log.warning("%s rejected: %s", pending.peer, error)
        else:
            log.info("%s gone before sending a header: %s", pending.peer,
                     getattr(error, "strerror", None) or error)
        self._closed(pending.fd)

    def _closed(self, fd: int) -> None:
        os.close(fd)
        self.connections -= 1

    def client_ended(self, client: Client, why: Optional[BaseException]) -> None:
        """Every client's end, whoever ended it (see `Fanout.end`): counted
        and logged here, and only here."""
        self.connections -= 1
        self._sent_by_gone += client.sent
        peer = client.peer
        if why is None:
            reason = "server stopping"
        elif isinstance(why, Truncated):
            reason = str(why)
            log.warning("%s disconnected: %s, client was at byte %d", peer, reason,
                        client.offset)
        elif isinstance(why, OSError):
            reason = f"client gone ({why.strerror or why})"
        elif isinstance(why, Retired):
            reason = str(why)
        else:  # a bug: say so in one line, details at debug level
            reason = f"internal error: {why!r}"
            log.error("%s disconnected: %s", peer, reason)
            log.debug("internal error details", exc_info=why)
        logs.info(log, "%s disconnected (%s): sent %d bytes from byte %d in %.3f s",
                  peer, reason, client.sent, client.start, time.monotonic() - client.began)

    def bytes_sent(self) -> int:
        """File bytes sent to every client since the start."""
        return self._sent_by_gone + sum(fanout.bytes_sent() for fanout in self.fanouts())

    def slowest_lag(self) -> int:
        """How many bytes the furthest-behind client has yet to receive (0
        when every client is caught up or waiting for bytes yet to come)."""
        return max(fanout.slowest_lag() for fanout in self.fanouts())

class _Sibling(AcceptBackoff, RawAccept):
    """One more listener of a `TailServer`: its connections go to the owner,
    which counts and serves them in its own pool."""

    def __init__(self, listener, owner: TailServer) -> None:
        super().__init__(listener, owner.handle, spawn=owner.pool)
        self.owner = owner

    def do_handle(self, sock, address) -> None:
        self.owner.do_handle(sock, address)


def tune(sock) -> None:
    """A TCP listener, for the sockets it accepts (Linux copies these options
    from the listener to every socket it accepts, so they are set once here,
    not per connection): no Nagle delay on small appends, keepalive so that a
    peer that vanished while the file was idle is noticed, and `NOTSENT_LOWAT`."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lowat = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if lowat is not None:
        sock.setsockopt(socket.IPPROTO_TCP, lowat, NOTSENT_LOWAT)
    enable_keepalive(sock)


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to a non-blocking socket, waiting while it is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            wait_write(fd)


def _answer_http(fd: int, response: bytes) -> None:
    """Send a short HTTP response to a connection about to be closed: first
    read what the request still holds, then shut the sending side, so that
    the close does not reset the connection (which can destroy the response
    before the client has read it)."""
    try:
        _drain(fd)
        os.write(fd, response)  # a few hundred bytes into an empty socket buffer
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_WR)
        _drain(fd)
    except OSError:
        pass


def _drain(fd: int) -> None:
    """Read and drop what a non-blocking socket holds now (a bounded amount)."""
    for _ in range(16):
        try:
            if not os.read(fd, 65536):
                return
        except BlockingIOError:
            return


def format_peer(address) -> str:
    """``host:port`` (``[v6]:port``) for logs; unix peers have no address."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        if host.startswith("::ffff:"):
            host = host[7:]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return "unix-client"
