"""The wire protocol: a header is an ASCII integer ending in a newline.

This module owns that one rule and does no I/O (in the spirit of h11): the server
feeds it the bytes a client sent and gets back a `Request`, "not yet" (None), or a
`BadHeader` naming the reason in words an operator can act on. Turning a request
into a byte position is pure too, except for line positions, which need the file
and live in `tailsrv.lines`.

The grammar, compatible with the original tailsrv (which parses an i64 after
trimming whitespace)::

    header  = *ws [ "+" / "-" ] 1*DIGIT [ "l" / "L" ] [ "?" ] *ws "\\n"
    ws      = SP / HTAB / CR / VT / FF

Plain integers are byte offsets: ``0`` is the start of the file, ``1000`` byte
1000, ``-1000`` the last 1000 bytes. Two extensions, which the original rejects
and so no original client sends: the ``l`` suffix counts lines instead, like
``tail -n``; the ``?`` suffix asks the server to announce the byte position it
resolved the request to, as one decimal line before the file data, so that a
client that started at ``-10l`` knows the absolute offset to resume from after
a dropped connection.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

#: Longest header accepted, in bytes before the newline. The longest valid header
#: is a sign, 19 digits and a unit, so 64 leaves room for whitespace and line
#: ends while keeping a garbage-spewing client from making us hold much.
MAX_HEADER_BYTES = 64

#: Offsets are signed 64-bit integers, as in the original.
MIN_OFFSET = -(2**63)
MAX_OFFSET = 2**63 - 1

_WHITESPACE = b" \t\r\x0b\x0c"
_DIGITS = frozenset(b"0123456789")


class BadHeader(ValueError):
    """A header the protocol does not accept; ``str()`` is the reason."""


class Request(NamedTuple):
    """Where a client asked to start.

    ``offset`` is signed: negative counts back from the end of the file. With
    ``lines`` true it counts lines rather than bytes. With ``announce`` true
    the client wants the resolved byte position sent first (`announcement`).
    """

    offset: int
    lines: bool = False
    announce: bool = False

    def __str__(self) -> str:
        return f"{self.offset}{'l' if self.lines else ''}{'?' if self.announce else ''}"


def parse_header(line: bytes) -> Request:
    """Parse one header, without its newline, into a `Request`.

    Raises `BadHeader` for anything but optional whitespace around an optional
    sign, ASCII digits, an optional ``l``/``L`` and an optional ``?``. Python's ``int()`` would also
    take underscores and non-ASCII digits; the protocol does not.
    """
    text = line.strip(_WHITESPACE)
    if not text:
        raise BadHeader("empty header")
    announce = text[-1:] == b"?"
    if announce:
        text = text[:-1]
    lines = text[-1:] in (b"l", b"L")
    if lines:
        text = text[:-1]
    negative = text[:1] == b"-"
    digits = text[1:] if text[:1] in (b"-", b"+") else text
    if not digits or not _DIGITS.issuperset(digits):
        raise BadHeader(f"not a number: {line[:MAX_HEADER_BYTES]!r}")
    value = -int(digits) if negative else int(digits)
    if not MIN_OFFSET <= value <= MAX_OFFSET:
        raise BadHeader("offset out of range (signed 64-bit)")
    return Request(value, lines, announce)


class HeaderReader:
    """Accumulates what a client sends until a whole header has arrived.

    Feed it every chunk received; it answers None while the header is
    incomplete, the `Request` once the newline is in, and raises `BadHeader`
    as soon as the bytes can no longer become a valid header. Anything after the
    newline is ignored, as the protocol says.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> Optional[Request]:
        if not data:
            raise BadHeader("connection closed before the header's newline")
        self._buffer += data
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise BadHeader(f"header longer than {MAX_HEADER_BYTES} bytes")
            return None
        if end > MAX_HEADER_BYTES:
            raise BadHeader(f"header longer than {MAX_HEADER_BYTES} bytes")
        return parse_header(self._buffer[:end])


def byte_position(offset: int, size: int) -> int:
    """The byte a byte-offset request starts at, given the file's current size.

    Negative offsets count back from the end and clamp at 0; positive ones may
    lie past the end, meaning "wait until the file is that long".
    """
    return offset if offset >= 0 else max(0, size + offset)


def announcement(position: int) -> bytes:
    """What a ``?`` header gets before the file data: the start position."""
    return b"%d\n" % position
