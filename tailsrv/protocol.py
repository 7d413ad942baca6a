"""The wire protocol: a header is an ASCII integer ending in a newline.

This module owns that one rule and does no I/O (in the spirit of h11): the server
feeds it the bytes a client sent and gets back a `Request`, "not yet" (None), or a
`BadHeader` naming the reason in words an operator can act on. Turning a request
into a byte position is pure too, except for line positions, which need the file
and live in `tailsrv.lines`.

The grammar, compatible with the original tailsrv (which parses an i64 after
trimming whitespace)::

    header  = *ws [ "+" / "-" ] 1*DIGIT [ "l" / "L" ] [ "?" ] [ proof ] *ws "\\n"
    proof   = "#" 1*4DIGIT ":" 16HEXDIG    ; the count from 1 to 4096
    ws      = SP / HTAB / CR / VT / FF

Plain integers are byte offsets: ``0`` is the start of the file, ``1000`` byte
1000, ``-1000`` the last 1000 bytes. Two extensions, which the original rejects
and so no original client sends: the ``l`` suffix counts lines instead, like
``tail -n``; the ``?`` suffix asks the server to announce the byte position it
resolved the request to, as one decimal line before the file data, so that a
client that started at ``-10l`` knows the absolute offset to resume from after
a dropped connection.

The third extension, the *resume proof* ``#K:DIGEST``, lets a client that
resumes at byte N prove that it continues the same file: DIGEST is `digest`
of the K bytes it received just before N (K from 1 to `PROOF_BYTES`, and at
most N; fewer when it has fewer). The server compares them with the file's
bytes ``[N-K, N)`` before sending anything, and answers with one line: the
announcement ``N\\n``, as for ``?``, when they are the same, or `REFUSAL` when
the file is shorter than N or the bytes differ (the file was replaced or
truncated). After the refusal come the bytes of the file that replaced the
client's, from byte 0, as if it had asked for ``0`` (a server following the
name across rotations picks the file that came right after the client's). A
proof needs a plain byte offset of 0 or more. For a file that starts ``hello\\nworld\\n``,
``12#6:ea4ec125b82d5527\\n`` resumes at byte 12 after ``world\\n``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

# hashlib.blake2b itself, from the module hashlib takes it from: importing
# hashlib would load OpenSSL, 3.7 MiB more of every server's memory, for nothing.
# _blake2 is CPython's own module; another Python gets it through hashlib.
try:
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - not CPython
    from hashlib import blake2b

#: Longest header accepted, in bytes before the newline. The longest valid header
#: is 19 digits, a ``?`` and a proof (42 bytes; without a proof, a sign, 19 digits
#: and two suffixes), so 64 leaves room for whitespace and line ends while keeping
#: a garbage-spewing client from making us hold much.
MAX_HEADER_BYTES = 64

#: Most bytes a resume proof covers: a few lines of a typical log, so that two
#: different files all but never agree, while the server reads one page per check.
PROOF_BYTES = 4096

#: Bytes in a proof's digest (BLAKE2b's ``digest_size``): 64 bits, so two files
#: that differ in those bytes are taken for the same one once in 2**64.
DIGEST_BYTES = 8

#: What the server answers a resume proof that does not hold, before the new
#: file's bytes from 0. Not a digit: it cannot be taken for an announcement.
REFUSAL = b"!replaced\n"

#: Offsets are signed 64-bit integers, as in the original.
MIN_OFFSET = -(2**63)
MAX_OFFSET = 2**63 - 1

_WHITESPACE = b" \t\r\x0b\x0c"
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")


class Proof(NamedTuple):
    """A client's claim: the ``length`` bytes before its resume position have
    this ``digest`` (lower-case hex, see `digest`)."""

    length: int
    digest: bytes

    def encode(self) -> bytes:
        """The proof as it ends a header: ``#K:DIGEST``."""
        return b"#%d:%s" % (self.length, self.digest)


def digest(data: bytes) -> bytes:
    """The digest of a resume proof: BLAKE2b with an 8-byte digest and no key,
    salt or personalisation, as 16 lower-case hex digits."""
    return blake2b(data, digest_size=DIGEST_BYTES).hexdigest().encode()


def make_proof(before: bytes) -> Optional[Proof]:
    """The proof for resuming after ``before``, the bytes received last (only
    the final `PROOF_BYTES` of them count); None when there are none."""
    tail = before[-PROOF_BYTES:]
    return Proof(len(tail), digest(tail)) if tail else None


def proof_span(request: "Request") -> Tuple[int, int]:
    """Where the bytes a request's proof covers lie: ``(start, length)``."""
    return request.offset - request.proof.length, request.proof.length


def proof_holds(request: "Request", data: bytes) -> bool:
    """Whether ``data``, what the file holds at `proof_span`, is what the
    client had: a short read means the file is shorter than the client's
    position, which it read up to, so it was truncated or replaced."""
    return len(data) == request.proof.length and digest(data) == request.proof.digest


class BadHeader(ValueError):
    """A header the protocol does not accept; ``str()`` is the reason."""


class Request(NamedTuple):
    """Where a client asked to start.

    ``offset`` is signed: negative counts back from the end of the file. With
    ``lines`` true it counts lines rather than bytes. With ``announce`` true
    the client wants the resolved byte position sent first (`announcement`);
    a ``proof`` (see `Proof`) implies it.
    """

    offset: int
    lines: bool = False
    announce: bool = False
    proof: Optional[Proof] = None

    def __str__(self) -> str:
        return (f"{self.offset}{'l' if self.lines else ''}{'?' if self.announce else ''}"
                f"{self.proof.encode().decode() if self.proof else ''}")


def parse_header(line: bytes) -> Request:
    """Parse one header, without its newline, into a `Request`.

    Raises `BadHeader` for anything but optional whitespace around an optional
    sign, ASCII digits, an optional ``l``/``L``, an optional ``?`` and an
    optional proof. Python's ``int()`` would also take underscores and
    non-ASCII digits; the protocol does not.
    """
    text = line.strip(_WHITESPACE)
    if not text:
        raise BadHeader("empty header")
    proof = None
    if b"#" in text:
        text, _, proof_text = text.partition(b"#")
        proof = _parse_proof(proof_text)
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
    if proof is not None:
        if lines or negative and value or proof.length > value:
            raise BadHeader("a resume proof needs a byte offset at least as large as "
                            "the bytes it covers")
        announce = True
    return Request(value, lines, announce, proof)


def _parse_proof(text: bytes) -> Proof:
    """``K:DIGEST``, what follows a header's ``#``."""
    length, colon, hex_digest = text.partition(b":")
    if not (colon and length and len(length) <= 4 and _DIGITS.issuperset(length)
            and 0 < int(length) <= PROOF_BYTES):
        raise BadHeader(f"resume proof: expected #K:DIGEST with K from 1 to {PROOF_BYTES}")
    if len(hex_digest) != 2 * DIGEST_BYTES or not _HEX.issuperset(hex_digest):
        raise BadHeader(f"resume proof: the digest must be {2 * DIGEST_BYTES} hex digits")
    return Proof(int(length), hex_digest.lower())


class HeaderReader:
    """Accumulates what a client sends until a whole header has arrived.

    Feed it every chunk received; it answers None while the header is
    incomplete, the `Request` once the newline is in, and raises `BadHeader`
    as soon as the bytes can no longer become a valid header. Anything after the
    newline is ignored, as the protocol says.
    """

    __slots__ = ("_buffer",)

    #: Longest header accepted (a subclass for another header form sets its own).
    limit = MAX_HEADER_BYTES

    def __init__(self) -> None:
        self._buffer = b""

    @property
    def received(self) -> bytes:
        """What has come so far (for a rejected header: what it was)."""
        return self._buffer

    def feed(self, data: bytes) -> Optional[Request]:
        if not data:
            raise BadHeader("connection closed before the header's newline")
        self._buffer += data
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > self.limit:
                raise BadHeader(f"header longer than {self.limit} bytes")
            return None
        if end > self.limit:
            raise BadHeader(f"header longer than {self.limit} bytes")
        return self.parse(self._buffer[:end])

    @staticmethod
    def parse(line: bytes):
        """The header's meaning (a subclass for another header form parses its own)."""
        return parse_header(line)


def byte_position(offset: int, size: int) -> int:
    """The byte a byte-offset request starts at, given the file's current size.

    Negative offsets count back from the end and clamp at 0; positive ones may
    lie past the end, meaning "wait until the file is that long".
    """
    return offset if offset >= 0 else max(0, size + offset)


def announcement(position: int) -> bytes:
    """What a ``?`` header gets before the file data: the start position."""
    return b"%d\n" % position
