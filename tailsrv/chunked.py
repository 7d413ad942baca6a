"""An HTTP client in the fan-out: the file as a chunked body, still by ``sendfile``.

This is the whole of HTTP's join to `tailsrv.stream`: a `Follower` whose one
send step (`Follower.send_from`) writes a chunk's size line before the file
bytes that ``sendfile`` moves, so an HTTP client is fed by the same pass, from
the same descriptor, as the TCP clients. Only the few framing bytes pass
through Python.

A chunk's size is declared before its bytes go, so a chunk once opened is
finished before anything else is sent: when the socket fills part-way, the
client's greenlet sends the rest. The CRLF that closes a chunk is held back and
goes out with the next chunk's size line (or the final zero chunk): one
``send`` and one ``sendfile`` per append, where a CRLF of its own would be a
third syscall and a third TCP segment. Chunk data reaches the peer at once all
the same; decoders (browsers, curl, nginx) hand it on as it comes.
"""

from __future__ import annotations

import _socket
import os
import socket

import h11
from gevent import GreenletExit

from .stream import Fanout, Follower, Truncated

#: What closes a chunk's data.
CRLF = b"\r\n"


class ChunkedFollower(Follower):
    """A `Follower` whose body is HTTP/1.1 chunked, ended by h11 where it can
    be (file truncated below the client, server stopping) so that the client
    tells an orderly end from a dropped connection."""

    __slots__ = ("conn", "_raw", "_chunk_end", "_owed")

    def __init__(self, fanout: Fanout, sock, offset: int, conn: h11.Connection) -> None:
        super().__init__(fanout, sock, offset)
        self.conn = conn
        self._raw = None
        self._chunk_end = offset  # where the open chunk ends; == offset: none open
        self._owed = b""  # framing bytes due before the next file byte

    def send_from(self, file_fd: int, offset: int, count: int) -> int:
        if offset == self._chunk_end:
            self._owed += b"%x\r\n" % count
            self._chunk_end = offset + count
        if self._owed:
            self._flush(socket.MSG_MORE)  # in the same segment as the data
        n = os.sendfile(self.fd, file_fd, offset, self._chunk_end - offset)
        if n and offset + n == self._chunk_end:
            self._owed = CRLF
        return n

    def run(self) -> None:
        # The same descriptor as a plain socket object, for send() with flags
        # and without gevent's waiting; made here, where it is sure to be
        # detached again (closing it would close the client's descriptor).
        self._raw = _socket.socket(self.sock.family, self.sock.type, 0, self.fd)
        try:
            super().run()
        except (Truncated, GreenletExit):
            self._finish()
            raise
        finally:
            self._raw.detach()

    def _flush(self, flags: int = 0) -> None:
        """Send what is owed, non-blocking; BlockingIOError keeps the rest."""
        while self._owed:
            self._owed = self._owed[self._raw.send(self._owed, flags):]

    def _finish(self) -> None:
        """End the body with h11's last chunk, if that can go now: not in the
        middle of a chunk, and not by waiting on a peer that reads no more."""
        if self.offset != self._chunk_end:
            return
        self._owed += self.conn.send(h11.EndOfMessage())
        try:
            self._flush()
        except OSError:
            pass  # the peer sees a dropped connection instead
