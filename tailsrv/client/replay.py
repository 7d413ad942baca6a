"""Reading a file back out of a JetStream stream: the rule, with no I/O.

tspub stores each message with its place in the file (`jetstream_format`): a
generation and the byte offset of its first byte. `Replay` takes the messages
in stream order and gives back the file's bytes, each exactly once: a message
that starts where the last one ended goes on; one that holds bytes already given
(a reader that started inside a message, or a duplicate) gives only the new
ones; a new generation starts a new file at byte 0. Anything else is a hole in
the stream, which is said, never skipped: a copy with a hole is not the file.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple
from urllib.parse import unquote, urlsplit

from .follower import BadAddress, ProtocolError
from .jetstream_format import GENERATION, OFFSET, position, valid_subject


#: The schemes of a NATS address (``tls``: NATS over TLS), which the client
#: scripts read from a stream rather than from a tailsrv server.
SCHEMES = ("nats://", "tls://")


class Gap(ProtocolError):
    """The stream lacks bytes between two messages."""


class Part(NamedTuple):
    """One stored message: where its bytes stand, and the bytes."""

    generation: int
    offset: int
    data: bytes


def part(headers: Optional[dict], data: bytes, sequence: int) -> Part:
    """A stored message as a `Part`; `Gap` when its headers do not say where
    it stands (not published by tspub)."""
    found = position(headers)
    if found is None:
        raise Gap(f"message {sequence} of the stream lacks a valid {GENERATION} or {OFFSET} "
                  "header: not published by tspub")
    return Part(*found, data)


class Replay:
    """The file's bytes from the stream's messages, from ``position`` of file
    ``generation`` on."""

    def __init__(self, generation: int, position: int) -> None:
        self.generation = generation
        self.position = position

    def feed(self, message: Part) -> Tuple[bool, bytes]:
        """(whether the message starts a new file, the bytes to add)."""
        if message.generation < self.generation:
            return False, b""
        replaced = message.generation > self.generation
        if replaced:
            if message.offset != 0:
                raise Gap(f"the stream lacks the start of file {message.generation}: its "
                          f"first message is at byte {message.offset}")
            self.generation, self.position = message.generation, 0
        end = message.offset + len(message.data)
        if message.offset > self.position:
            raise Gap(f"the stream lacks bytes {self.position} to {message.offset} of file "
                      f"{self.generation}")
        data = message.data[self.position - message.offset:] if end > self.position else b""
        self.position = max(self.position, end)
        return replaced, data


def parse_stream_address(text: str) -> Tuple[str, str]:
    """``nats://HOST:PORT/SUBJECT`` -> (``nats://HOST:PORT``, SUBJECT); `BadAddress`
    with the reason when it is not that."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    subject = unquote(parts.path[1:])
    if parts.scheme not in ("nats", "tls") or not parts.hostname or not port or \
            parts.query or parts.fragment:
        raise BadAddress(f"{text!r}: expected nats://HOST:PORT/SUBJECT")
    if parts.username or parts.password:
        raise BadAddress(f"{text!r}: NATS credentials do not go in the address")
    if "/" in subject or not valid_subject(subject):
        raise BadAddress(f"{text!r}: expected a subject without wildcards after the port "
                         "(nats://HOST:PORT/SUBJECT)")
    return f"{parts.scheme}://{parts.netloc}", subject
