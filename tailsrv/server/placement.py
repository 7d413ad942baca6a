"""Where a client starts in one served file: `Placement`, what a server of one
file and each file of a server of several (`tailsrv.server.catalog`) share.

A request names a position (a byte, a line count, a resume proof); placing it
gives the file's `Fanout` to join (with ``--follow-name`` a resume may belong
to an old file), the byte to start at, and whether a resume was refused. Only
a line count not reached yet waits, in the caller's greenlet.
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

import gevent

from ..lines import end_of_first_lines, start_of_last_lines
from ..protocol import Request, byte_position, proof_holds, proof_span
from .rotation import Rotation
from .stream import Fanout
from .watch import FileWatch


class Placement:
    """Mixin: placing requests in the file of ``self.watch`` and
    ``self.fanout``, and in the old files of ``self.rotation`` (None without
    ``--follow-name``)."""

    watch: FileWatch
    fanout: Fanout
    rotation: Optional[Rotation]

    def resume(self, request: Request) -> Tuple[Fanout, bool]:
        """The file a resume proof continues, and False; or, refused (the
        file was replaced or truncated), the file to start from byte 0, and
        True. With ``follow_name`` that may be an old file (see `Rotation.resume`)."""
        if self.resume_holds(request, self.watch):
            return self.fanout, False
        if self.rotation is None:
            return self.fanout, True
        return self.rotation.resume(request)

    def place(self, request: Request) -> Tuple[Fanout, int, bool]:
        """Where a client starts: the file, the byte, and whether its resume
        proof was refused (then the byte is 0 of the file that replaced its own).
        Waits while a line count is not there yet."""
        if request.proof is None:
            return self.fanout, self.start_position(request), False
        fanout, refused = self.resume(request)
        return fanout, 0 if refused else self.start_position(request), refused

    def resume_holds(self, request: Request, watch: FileWatch) -> bool:
        """Whether the file holds the bytes a resume proof says the client has."""
        if watch.fd is None:
            return False  # a proof covers at least a byte: the file was longer
        start, length = proof_span(request)
        return proof_holds(request, os.pread(watch.fd, length, start))

    def start_position(self, request: Request) -> int:
        """The byte a request starts at; waits while a line count is not there yet."""
        watch = self.watch
        if not request.lines:
            return byte_position(request.offset, watch.size)
        if request.offset < 0:
            if watch.fd is None:
                return 0
            return start_of_last_lines(self._read, watch.size, -request.offset, gevent.sleep)
        position, remaining = 0, request.offset
        while remaining:
            size = watch.size
            if size < position:  # truncated while we waited: count from the start again
                position, remaining = 0, request.offset
            if watch.fd is not None and position < size:
                found, remaining = end_of_first_lines(
                    self._read, position, size, remaining, gevent.sleep)
                if found is not None:
                    return found
                position = size
            else:
                watch.wait_for_change(size)
        return position

    def _read(self, offset: int, length: int) -> bytes:
        return os.pread(self.watch.fd, length, offset)

    def fanouts(self) -> List[Fanout]:
        """The files being served: the current one, and the old ones that
        ``follow_name`` keeps for their clients."""
        return [self.fanout, *(self.rotation.retiring if self.rotation is not None else ())]
