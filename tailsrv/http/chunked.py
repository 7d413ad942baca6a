"""An HTTP client in the fan-out: the file as a chunked body, still by ``sendfile``.

This is the whole of HTTP's join to `tailsrv.stream`: a framed `Client` whose
`Client.send` writes a chunk's size line before the file bytes that
``sendfile`` moves, so an HTTP client is fed by the same pass, from the same
descriptor, as the TCP clients. Only the few framing bytes pass through Python.

A chunk's size is declared before its bytes go, so a chunk once opened is
finished before anything else is sent: when the socket fills part-way, the
fanout sends the rest when it has room, like to any blocked client. The CRLF
that closes a chunk is held back and goes out with the next chunk's size line
(or the last chunk): one ``send`` and one ``sendfile`` per append, where a CRLF
of its own would be a third syscall and a third TCP segment. Chunk data reaches
the peer at once all the same; decoders (browsers, curl, nginx) hand it on as
it comes.
"""

from __future__ import annotations

import _socket
import os
import socket
from typing import Optional

import h11

from ..server.rotation import Retired
from ..server.stream import Client, Truncated

#: What closes a chunk's data.
CRLF = b"\r\n"


class ChunkedClient(Client):
    """A `Client` whose body is HTTP/1.1 chunked, ended by h11 where it can be
    (file truncated below the client, server stopping) so that the client
    tells an orderly end from a dropped connection."""

    __slots__ = ("conn", "_raw", "_chunk_end", "_owed")

    framed = True

    def __init__(self, fd: int, peer: str, began: float, offset: int,
                 conn: h11.Connection) -> None:
        super().__init__(fd, peer, began, offset)
        self.conn = conn
        # The same descriptor as a plain socket object, for send() with flags
        # and without gevent's waiting; detached in `closing`, which the
        # fanout calls before it closes the descriptor itself.
        self._raw = _socket.socket(fileno=fd)
        self._raw.setblocking(False)  # whatever default timeout the process set
        self._chunk_end = offset  # where the open chunk ends; == offset: none open
        self._owed = b""  # framing bytes due before the next file byte

    def send(self, file_fd: int, offset: int, count: int) -> int:
        if offset == self._chunk_end:
            self._owed += b"%x\r\n" % count
            self._chunk_end = offset + count
        if self._owed:
            self._flush(socket.MSG_MORE)  # in the same segment as the data
        n = os.sendfile(self.fd, file_fd, offset, self._chunk_end - offset)
        if n and offset + n == self._chunk_end:
            self._owed = CRLF
        return n

    def closing(self, why: Optional[BaseException]) -> None:
        """End the body with h11's last chunk when the server ends it (file
        truncated, server stopping, an old rotated file done) and that can go now: not in the middle of
        a chunk, and not by waiting on a peer that reads no more."""
        try:
            if (why is None or isinstance(why, (Truncated, Retired))) and self.offset == self._chunk_end:
                self._owed += self.conn.send(h11.EndOfMessage())
                self._flush()
        except OSError:
            pass  # the peer sees a dropped connection instead
        finally:
            self._raw.detach()

    def _flush(self, flags: int = 0) -> None:
        """Send what is owed, non-blocking; BlockingIOError keeps the rest."""
        while self._owed:
            self._owed = self._owed[self._raw.send(self._owed, flags):]
