"""Naming one file of many: the rules a server of several files and its
clients share, free of I/O (like `tailsrv.protocol`, whose headers they extend).

A file's name is its base name. On the wire it is percent-encoded as a URL
path segment is: every byte but ``A-Z a-z 0-9 - . _ ~`` becomes ``%XX``, so
any name the file system allows (spaces, newlines, bytes that are not UTF-8)
can be asked for, and a header stays one line of ASCII. Two requests name a
file::

    named   = NAME SP header       ; "access.log -10l", "app.log 12#6:ea4ec125b82d5527"
    list    = "*"                  ; one line per file: NAME SP SIZE LF, then close

where ``header`` is any header of the single-file protocol. A header without a
name means the one file of a server that has one (a server of several rejects
it). A decoded name that could lead anywhere but to a file of the served set
(empty, ``.``, ``..``, holding ``/`` or NUL) is rejected here, before any
lookup.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

from .protocol import BadHeader, HeaderReader, Request, parse_header

#: Longest named header, in bytes before the newline: room for a file name of
#: 255 bytes, percent-encoded (765), and any single-file header after it.
MAX_NAMED_HEADER_BYTES = 1024

#: The header asking for the list of files.
LIST = b"*"

#: Bytes a name keeps as they are on the wire (RFC 3986's unreserved set).
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_WHITESPACE = b" \t\r\x0b\x0c"


class Ask(NamedTuple):
    """What a header of a server of several files asks for: ``request`` from
    the file ``name`` (None: the header named no file), or the list of files
    (``request`` None)."""

    name: Optional[str]
    request: Optional[Request]

    @property
    def listing(self) -> bool:
        return self.request is None


def encode_name(name: str) -> str:
    """A file name (a ``str`` as `os.listdir` gives it) as the wire carries it."""
    return "".join(chr(byte) if byte in _UNRESERVED else "%%%02X" % byte
                   for byte in os.fsencode(name))


def decode_name(text: bytes) -> str:
    """A name from the wire, as `os.fsdecode` gives file names; `BadHeader`
    when it is malformed or could name anything but a file of one directory."""
    raw = bytearray()
    index = 0
    while index < len(text):
        byte = text[index]
        if byte == 0x25:  # "%"
            pair = text[index + 1:index + 3]
            if len(pair) != 2 or not _HEX.issuperset(pair):
                raise BadHeader("bad file name: '%' must be followed by two hex digits")
            raw.append(int(pair, 16))
            index += 3
        else:
            raw.append(byte)
            index += 1
    check_name(bytes(raw))
    return os.fsdecode(bytes(raw))


def check_name(raw: bytes) -> None:
    """`BadHeader` when ``raw`` cannot be the base name of a served file."""
    if not raw:
        raise BadHeader("bad file name: empty")
    if raw in (b".", b".."):
        raise BadHeader(f"bad file name: {raw.decode()!r} is not a file")
    if b"/" in raw:
        raise BadHeader("bad file name: it contains '/' (a name is a base name)")
    if b"\0" in raw:
        raise BadHeader("bad file name: it contains a NUL byte")


def parse_named(line: bytes) -> Ask:
    """Parse one header of a server of several files, without its newline."""
    text = line.strip(_WHITESPACE)
    if text == LIST:
        return Ask(None, None)
    name, space, rest = text.partition(b" ")
    if not space:
        return Ask(None, parse_header(line))
    return Ask(decode_name(name), parse_header(rest))


def named_header(name: Optional[str], header: bytes) -> bytes:
    """``header`` (a single-file header, newline included) asking for the file
    ``name``; ``header`` itself when ``name`` is None."""
    return header if name is None else encode_name(name).encode() + b" " + header


def list_line(name: str, size: int) -> bytes:
    """One line of the answer to `LIST`."""
    return b"%s %d\n" % (encode_name(name).encode(), size)


def parse_list_line(line: bytes) -> "tuple[str, int]":
    """``(name, size)`` from one line of the answer to `LIST` (without its
    newline); ValueError when it is not one."""
    name, space, size = line.partition(b" ")
    if not space or not size.isdigit():
        raise ValueError(f"not a file list line: {line[:80]!r}")
    try:
        return decode_name(name), int(size)
    except BadHeader as error:
        raise ValueError(str(error)) from None


class NamedHeaderReader(HeaderReader):
    """`tailsrv.protocol.HeaderReader` for a server of several files: the
    same feeding, an `Ask` once the newline is in, and headers up to
    `MAX_NAMED_HEADER_BYTES`."""

    __slots__ = ()

    limit = MAX_NAMED_HEADER_BYTES
    parse = staticmethod(parse_named)
