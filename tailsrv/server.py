"""TailServer: a gevent `StreamServer` that streams one file to every client.

Each connection gets a greenlet from a `gevent.pool.Pool` (so that ``stop()``
can end them): it reads the header within ``header_timeout``, turns it into a
starting byte, then hands the socket to a `Follower` for good. The server never
reads the client again after the header's newline.

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
from typing import Optional, Set

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer

from .accept import AcceptBackoff
from .keepalive import enable_keepalive
from .lines import end_of_first_lines, start_of_last_lines
from .protocol import (REFUSAL, BadHeader, HeaderReader, Request, announcement, byte_position,
                       proof_holds, proof_span)
from .rotation import Retired, Rotation, RotatingWatch
from .stream import Fanout, Follower, Truncated
from .watch import FileWatch

log = logging.getLogger(__name__)

#: Bytes asked of the socket per read while waiting for a header: more than a
#: header can be, so a well-behaved client is read in one call.
HEADER_READ = 128

#: Why a connection may be closed without file data: the keys of
#: `TailServer.rejected`.
REJECT_REASONS = ("bad_header", "max_clients")


class TailServer(AcceptBackoff, StreamServer):
    """Streams the file at ``path`` to every client of ``listener``.

    ``listener`` is a bound, listening socket (see `tailsrv.listeners`), an
    address as `gevent.server.StreamServer` takes it, or a list of listening
    sockets served together. The server stops by itself when the file is
    deleted or moved, unless ``linger`` is true, or ``follow_name``: then new
    connections get the new file at ``path`` while the clients of the old one
    finish it (see `tailsrv.rotation`; ``rotation_grace`` is its grace period).

    For monitoring (see `tailsrv.metrics`): ``accepted`` counts connections
    accepted, ``rejected`` those turned away by reason, ``followers`` are the
    clients streaming now.
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
        spawn=None,
    ) -> None:
        listeners = listener if isinstance(listener, list) else [listener]
        if not listeners:
            raise ValueError("TailServer needs at least one listener")
        super().__init__(listeners[0], spawn=spawn if spawn is not None else Pool())
        if header_timeout is not None:
            self.header_timeout = header_timeout
        if max_clients is not None:
            self.max_clients = max_clients
        self.watch = RotatingWatch(path) if follow_name else FileWatch(path, linger=linger)
        self.fanout = Fanout(self.watch)
        self.rotation = Rotation(self, rotation_grace) if follow_name else None
        self.siblings = [_Sibling(extra, self) for extra in listeners[1:]]
        self.accepted = 0
        self.rejected: Counter = Counter()
        self.followers: Set[Follower] = set()
        self._sent_by_gone = 0

    def start(self) -> None:
        """Start following the file and accepting clients.

        Raises OSError when the file cannot be followed (see `FileWatch.start`).
        """
        self.watch.start()
        self.watch.gone.rawlink(self._file_gone)
        if self.rotation is not None:
            self.rotation.start()
        super().start()
        for sibling in self.siblings:
            sibling.start()

    def close(self) -> None:
        """Stop accepting on every listener and close them."""
        for sibling in self.siblings:
            sibling.close()
        super().close()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop accepting, disconnect every client, stop following the file."""
        self.close()
        self.pool.kill(block=True, timeout=self.stop_timeout if timeout is None else timeout)
        if self.rotation is not None:
            self.rotation.stop()
        self.fanout.close()
        self.watch.close()

    def _file_gone(self, _event) -> None:
        gevent.spawn(self.stop)

    def do_handle(self, sock, address) -> None:
        """Serve a new connection, or close it at once when ``max_clients``
        are already being served."""
        self.accepted += 1
        if self.max_clients is not None and len(self.pool) >= self.max_clients:
            self.rejected["max_clients"] += 1
            log.warning("%s refused: already serving %d clients (--max-clients)",
                        format_peer(address), self.max_clients)
            sock.close()
            return
        super().do_handle(sock, address)

    def handle(self, sock, address) -> None:
        peer = format_peer(address)
        began = time.monotonic()
        try:
            request = self.read_header(sock)
        except BadHeader as reason:
            self.rejected["bad_header"] += 1
            log.warning("%s rejected: %s", peer, reason)
            return
        except OSError as error:
            log.info("%s gone before sending a header: %s", peer, error.strerror or error)
            return
        watch, fanout = self.watch, self.fanout  # the file this client gets, whatever comes
        refused = request.proof is not None and not self.resume_holds(request, watch)
        if refused and self.rotation is not None:
            watch, fanout, refused = self.rotation.resume(request)
        tune(sock)
        start = 0 if refused else self.start_position(request, watch)
        log.info("%s connected: header %s, %sstarting at byte %d", peer, request,
                 "refused (file replaced or truncated), " if refused else "", start)
        follower = Follower(fanout, sock, start)
        self.followers.add(follower)
        why = "server stopping"
        try:
            if refused or request.announce:
                sock.sendall(REFUSAL if refused else announcement(start))
            follower.run()
        except Truncated as error:
            why = str(error)
            log.warning("%s disconnected: %s, client was at byte %d", peer, why, follower.offset)
        except Retired as error:
            why = str(error)
        except OSError as error:
            why = f"client gone ({error.strerror or error})"
        except Exception as error:  # a bug: say so in one line, details at debug level
            why = f"internal error: {error!r}"
            log.error("%s disconnected: %s", peer, why)
            log.debug("internal error details", exc_info=True)
        finally:
            self.followers.discard(follower)
            self._sent_by_gone += follower.sent
            log.info(
                "%s disconnected (%s): sent %d bytes from byte %d in %.3f s",
                peer, why, follower.sent, start, time.monotonic() - began,
            )

    def read_header(self, sock) -> Request:
        """Read until the header's newline; raise BadHeader if it is bad or late.

        A client usually sends its header with the connection, so it is often
        there already: one non-blocking read first, and the timer for late
        headers only when that was not all. The timer was an eighth of the
        server's CPU per short connection (bench churn: 61 -> 53 us).
        """
        reader = HeaderReader()
        try:
            request = reader.feed(os.read(sock.fileno(), HEADER_READ))
        except BlockingIOError:
            request = None
        if request is not None:
            return request
        late = BadHeader(f"no complete header within {self.header_timeout:g} s")
        with gevent.Timeout(self.header_timeout, late):
            while True:
                request = reader.feed(sock.recv(HEADER_READ))
                if request is not None:
                    return request

    def resume_holds(self, request: Request, watch: FileWatch) -> bool:
        """Whether the file holds the bytes a resume proof says the client has."""
        if watch.fd is None:
            return False  # a proof covers at least a byte: the file was longer
        start, length = proof_span(request)
        return proof_holds(request, os.pread(watch.fd, length, start))

    def start_position(self, request: Request, watch: FileWatch) -> int:
        """The byte a request starts at; waits while a line count is not there yet."""
        if not request.lines:
            return byte_position(request.offset, watch.size)

        def read(offset: int, length: int) -> bytes:
            return os.pread(watch.fd, length, offset)

        if request.offset < 0:
            if watch.fd is None:
                return 0
            return start_of_last_lines(read, watch.size, -request.offset, gevent.sleep)
        position, remaining = 0, request.offset
        while remaining:
            size = watch.size
            if size < position:  # truncated while we waited: count from the start again
                position, remaining = 0, request.offset
            if watch.fd is not None and position < size:
                found, remaining = end_of_first_lines(
                    read, position, size, remaining, gevent.sleep)
                if found is not None:
                    return found
                position = size
            else:
                watch.wait_for_change(size)
        return position

    def bytes_sent(self) -> int:
        """File bytes sent to every client since the start."""
        return self._sent_by_gone + sum(f.sent for f in self.followers)

    def slowest_lag(self) -> int:
        """How many bytes the furthest-behind client has yet to receive (0
        when every client is caught up or waiting for bytes yet to come)."""
        return max([0, *(f.fanout.watch.size - f.offset for f in self.followers)])


class _Sibling(AcceptBackoff, StreamServer):
    """One more listener of a `TailServer`: its connections go to the owner,
    which counts and serves them in its own pool."""

    def __init__(self, listener, owner: TailServer) -> None:
        super().__init__(listener, owner.handle, spawn=owner.pool)
        self.owner = owner

    def do_handle(self, sock, address) -> None:
        self.owner.do_handle(sock, address)


def tune(sock) -> None:
    """A TCP client's socket: no Nagle delay on small appends, and keepalive so
    that a peer that vanished while the file was idle is noticed."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    enable_keepalive(sock)


def format_peer(address) -> str:
    """``host:port`` (``[v6]:port``) for logs; unix peers have no address."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        if host.startswith("::ffff:"):
            host = host[7:]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return "unix-client"
