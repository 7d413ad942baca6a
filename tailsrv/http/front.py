"""`HttpFront`: the ``--http`` listener, in the `TailServer`'s process, loop and pool.

Each connection is read with h11 (request parsing and response framing come
from it; the routing is `tailsrv.http`) in a greenlet of the server's pool,
under the TCP port's limits: it counts in the server's ``connections`` and
``max_clients``, a request head has at most `MAX_REQUEST_HEAD` bytes and
``header_timeout`` seconds to arrive. The viewer's files are answered on a
kept-alive connection; a stream takes the connection for good: its response
head goes out once the start is resolved, then the greenlet hands the socket's
descriptor to the file's `Fanout` and is done, and the file goes to it like to
any TCP client, as a chunked body (`tailsrv.chunked`) or, to an HTTP/1.0
client, as the raw bytes until the connection closes. From there its end is
any client's end (`TailServer.client_ended`).
"""

from __future__ import annotations

import logging
import time
from http import HTTPStatus
from typing import Optional
from urllib.parse import quote

import gevent
import h11
from gevent import socket

from ..protocol import BadHeader
from ..server.accept import AcceptBackoff
from ..server.stream import Client
from ..server.tailserver import RawAccept, TailServer
from ..wrongport import not_a_request, viewer_at
from .chunked import ChunkedClient
from .rules import (SECURITY_HEADERS, TEXT, Listing, Reply, Stream, answer, error, files_reply,
                    load_pages, no_file)

log = logging.getLogger(__name__)

#: Largest request head accepted (request line and headers). Browsers send
#: well under 2 KiB; a proxy adds a few headers; h11's default is 16 KiB.
MAX_REQUEST_HEAD = 8 * 1024

#: Most characters of a request target a log line shows: a resuming viewer's
#: ``before=`` carries up to 4096 bytes of the file, in base64.
LOGGED_TARGET = 120

#: Bytes asked of the socket per read of a request: most requests in one read,
#: and small next to MAX_REQUEST_HEAD, which h11 checks between reads.
REQUEST_READ = 1024


class HttpFront(AcceptBackoff, RawAccept):
    """Serves ``GET /stream`` and the viewer page for ``owner``'s file on
    ``listener``. ``credentials`` (``user:password``) turns basic
    authentication on (see `tailsrv.http.load_credentials`)."""

    def __init__(self, listener, owner: TailServer,
                 credentials: Optional[bytes] = None) -> None:
        super().__init__(listener, spawn=owner.pool)
        self.owner = owner
        self.credentials = credentials
        self.pages = load_pages()
        owner.attach(self)
        owner.viewer = viewer_at(*self.socket.getsockname()[:2])

    def do_handle(self, fd: int, address) -> None:
        peer = self.owner.admit(fd, address)
        if peer is not None:
            super().do_handle(socket.socket(fileno=fd), peer)

    def handle(self, sock: socket.socket, peer: str) -> None:
        """Answer the connection's requests until it closes or streams."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        streaming = False
        try:
            while True:
                began = time.monotonic()
                request = self._read_request(conn, sock, peer)
                if request is None:
                    return
                reply = answer(request.method, request.target, request.headers,
                               self.pages, self.credentials)
                what = f"{peer} {request.method.decode()} {_shown(request.target)}"
                if isinstance(reply, Listing):
                    reply = files_reply(self.owner.listing())
                elif isinstance(reply, Stream):
                    placement = self.owner.lookup(reply.name)
                    if placement is not None:
                        try:
                            self._stream(conn, sock, what, began, reply, placement)
                        finally:
                            self.owner.release(placement)
                        streaming = True
                        return
                    reply = no_file(reply.name)
                log.log(logging.DEBUG if reply.status == 200 else logging.INFO,
                        "%s: %d", what, reply.status)
                if not self._reply(conn, sock, reply):
                    return
        except OSError as error_:
            log.debug("%s gone: %s", peer, error_.strerror or error_)
        finally:
            if not streaming:  # else the fanout owns it now
                sock.close()
                self.owner.connections -= 1

    def _read_request(self, conn: h11.Connection, sock, peer: str) -> Optional[h11.Request]:
        """The next request, or None when there is none (closed, late, or bad:
        then answered with its 4xx and logged)."""
        late = BadHeader(f"no complete request within {self.owner.header_timeout:g} s")
        try:
            with gevent.Timeout(self.owner.header_timeout, late):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(sock.recv(REQUEST_READ))
                        wrong = not_a_request(bytes(conn.trailing_data[0])) \
                            if conn.their_state is h11.IDLE else None
                        if wrong is not None:  # at once, not after the head's timeout
                            return self._refuse(conn, sock, peer, wrong)
                    elif isinstance(event, h11.Request):
                        return event
                    else:  # ConnectionClosed, or a client that sent a body we don't read
                        return None
        except h11.RemoteProtocolError as bad:
            self.owner.rejected["bad_header"] += 1
            log.info("%s bad request: %s", peer, plain(bad))
            self._reply(conn, sock, error(bad.error_status_hint, f"bad request: {plain(bad)}"))
        except BadHeader as reason:
            self.owner.rejected["bad_header"] += 1
            log.info("%s %s", peer, reason)
        return None

    def _refuse(self, conn: h11.Connection, sock, peer: str, reason: str) -> None:
        """Answer 400 with ``reason`` to what cannot become a request; None."""
        self.owner.rejected["bad_header"] += 1
        log.info("%s bad request (answered 400): %s", peer, reason)
        conn.receive_data(b"")  # nothing more is read: h11 sees an unfinished request
        try:
            conn.next_event()
        except h11.RemoteProtocolError:  # what lets a server answer without a request
            pass
        self._reply(conn, sock, error(400, reason))
        return None

    def _reply(self, conn: h11.Connection, sock, reply: Reply) -> bool:
        """Send a complete response; whether the connection may take another."""
        headers = [*reply.headers, *SECURITY_HEADERS,
                   ("Content-Length", str(len(reply.body)))]
        if reply.status != 200:
            headers.append(("Connection", "close"))
        try:
            sock.sendall(conn.send(h11.Response(status_code=reply.status, headers=headers,
                                                reason=HTTPStatus(reply.status).phrase))
                         + conn.send(h11.Data(data=reply.body))
                         + conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:  # e.g. the request line itself was unreadable
            return False
        if conn.our_state is not h11.DONE:
            return False
        while conn.their_state is h11.SEND_BODY:
            if conn.next_event() is h11.NEED_DATA:
                return False  # a request body, which we do not read: no reuse
        if conn.their_state is not h11.DONE:
            return False
        conn.start_next_cycle()
        return True

    def _stream(self, conn: h11.Connection, sock, what: str, began: float,
                stream: Stream, placement) -> None:
        """Resolve the start in the file of ``placement``, send the response
        head, then hand the socket to the fanout for good."""
        fanout, start, refused = placement.place(stream.request)
        watch = fanout.watch
        head = conn.send(h11.Response(status_code=200, reason="OK", headers=[
            ("Content-Type", TEXT),
            ("Cache-Control", "no-store"),
            ("Tailsrv-Start", str(start)),
            ("Tailsrv-Size", str(watch.size)),
            ("Tailsrv-Name", quote(watch.path.rpartition("/")[2])),
            *([("Tailsrv-Replaced", "1")] if refused else []),
            *SECURITY_HEADERS,
        ]))
        log.info("%s: 200, %sstarting at byte %d", what,
                 "resume refused (file replaced or truncated), " if refused else "", start)
        sock.sendall(head)
        chunked = b"transfer-encoding: chunked" in head.lower()
        fd = sock.detach()
        fanout.join(ChunkedClient(fd, what, began, start, conn) if chunked
                    else Client(fd, what, began, start))


def plain(problem: h11.RemoteProtocolError) -> str:
    """h11's complaint without the bytes it quotes in Python's notation
    (``illegal request line: bytearray(b'hello there')``): a sentence."""
    text = str(problem).split(": bytearray(", 1)[0].split(": b'", 1)[0]
    return "not an HTTP request line" if text == "illegal request line" else text


def _shown(target: bytes) -> str:
    """A request target as a log line shows it: cut at `LOGGED_TARGET`."""
    text = target.decode("ascii", "replace")
    if len(text) > LOGGED_TARGET:
        return f"{text[:LOGGED_TARGET]}... ({len(text)} characters)"
    return text
