"""Cutting a file's bytes into JetStream messages: the records ``tspub`` publishes.

Pure (sans-io): bytes and positions in, `Record` values out, so that the rule
is tested without a socket. The rule, from the message layout
(`tailsrv.client.jetstream_format`):

- ``lines``: one message per line, its ``\\n`` included. A line that has not
  ended yet is held back until it does, so no message is ever a torn line. A
  line longer than the largest message is cut into parts of that size; every
  part but the last continues the line (``Tailsrv-Continues: 1``).
- ``chunks``: the bytes as they come, in messages of at most `CHUNK_BYTES`
  (or the largest message, if smaller); nothing is held back.

Either way the concatenation of one generation's messages is its file from
the position the splitter started at, exactly. When the file is replaced
(`Records.replaced`) what is held back of the old file is its true end, no
longer a torn line: it is given out as the old generation's last record, and
the new generation starts at byte 0.
"""

from __future__ import annotations

from typing import List, NamedTuple

#: The largest message in ``chunks`` mode: 64 KiB, the issue's figure; big
#: enough that a fast file costs few messages, small enough for any server.
CHUNK_BYTES = 64 * 1024

#: The record modes, as ``--records`` names them.
MODES = ("lines", "chunks")


class Record(NamedTuple):
    """One message: ``data`` is the file's bytes from ``offset`` in file
    ``generation``; ``continues`` when it is a part of a line, not its end."""

    generation: int
    offset: int
    data: bytes
    continues: bool = False

    @property
    def end(self) -> int:
        """The position just after the record's last byte."""
        return self.offset + len(self.data)


class Records:
    """The splitter for one publisher: `feed` it the file's bytes in order.

    ``position`` is where the first byte fed stands in file ``generation``;
    ``largest`` the most data one message may carry (the server's maximum
    payload less room for the headers).
    """

    def __init__(self, mode: str, largest: int, generation: int = 0, position: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown record mode {mode!r}")
        if largest < 1:
            raise ValueError("a message must be able to carry a byte")
        self.lines = mode == "lines"
        self.largest = largest if self.lines else min(largest, CHUNK_BYTES)
        self.generation = generation
        #: The position of the first byte held back (of ``held``).
        self.position = position
        self.held = b""

    def feed(self, data: bytes) -> List[Record]:
        """The records that ``data``, the next bytes of the file, completes."""
        if not self.lines:
            return self._cut(data, len(data), continues=False)
        held = self.held + data if self.held else data
        end = held.rfind(b"\n") + 1
        records = []
        if end:
            if end <= self.largest and held.find(b"\n", 0, end - 1) < 0:
                records = [self._record(held[:end], False)]  # the common case: one line
            else:
                start, largest, append = 0, self.largest, records.append
                while start < end:
                    stop = held.index(b"\n", start) + 1
                    if stop - start <= largest:
                        append(self._record(held[start:stop], False))
                    else:
                        records += self._cut(held[start:stop], stop - start, continues=False)
                    start = stop
        rest = held[end:]
        if len(rest) >= self.largest:  # an unfinished line too long to wait for
            whole = len(rest) - len(rest) % self.largest
            records += self._cut(rest[:whole], whole, continues=True)
            rest = rest[whole:]
        self.held = rest
        return records

    def replaced(self) -> List[Record]:
        """The file was replaced: the old file's last record (what was held
        back: the old file has ended, so it is not torn), then start
        generation + 1 at byte 0."""
        last = self._cut(self.held, len(self.held), continues=False)
        self.held = b""
        self.generation += 1
        self.position = 0
        return last

    def _cut(self, data: bytes, size: int, continues: bool) -> List[Record]:
        """``data`` in records of at most `largest`; all but the last continue
        (the last too when ``continues``)."""
        step = self.largest
        records = []
        for start in range(0, size, step):
            part = data[start:start + step]
            records.append(self._record(part, continues or start + step < size))
        return records

    def _record(self, data: bytes, continues: bool) -> Record:
        record = Record(self.generation, self.position, data, continues and self.lines)
        self.position += len(data)
        return record
