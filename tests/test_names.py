"""tailsrv.names without sockets: naming one file of many on the wire."""

from __future__ import annotations

import os

import pytest

from tailsrv.names import (MAX_NAMED_HEADER_BYTES, Ask, NamedHeaderReader, decode_name,
                           encode_name, list_line, named_header, parse_list_line, parse_named)
from tailsrv.protocol import BadHeader, Request, parse_header


@pytest.mark.parametrize("name, wire", [
    ("app.log", "app.log"), ("a b", "a%20b"), ("x%y", "x%25y"), ("~_-.", "~_-."),
    ("new\nline", "new%0Aline"), ("été", "%C3%A9t%C3%A9"),
    (os.fsdecode(b"\xff\xfe"), "%FF%FE"), ("*", "%2A"),
])
def test_names_round_trip(name, wire):
    assert encode_name(name) == wire
    assert decode_name(wire.encode()) == name
    assert decode_name(wire.lower().encode()) == name


@pytest.mark.parametrize("wire", [
    b"", b".", b"..", b"%2E%2E", b"a%2Fb", b"..%2Fetc%2Fpasswd", b"%2F", b"a%00b",
    b"a%", b"a%4", b"a%zz", b"a/b",
])
def test_hostile_names_are_rejected(wire):
    with pytest.raises(BadHeader):
        decode_name(wire)


@pytest.mark.parametrize("header", [
    b"0", b"-10", b"+7", b"-10l", b"25L", b"-3l?", b"12#6:ea4ec125b82d5527", b" 5 ",
])
def test_every_single_file_header_follows_the_name(header):
    assert parse_named(b"app.log " + header) == Ask("app.log", parse_header(header))
    assert parse_named(header) == Ask(None, parse_header(header))


def test_list_request_and_lines():
    assert parse_named(b"*").listing
    assert parse_named(b" *\r").listing
    assert not parse_named(b"a 0").listing
    assert list_line("a b", 12) == b"a%20b 12\n"
    assert parse_list_line(b"a%20b 12") == ("a b", 12)
    for bad in (b"a", b"a x", b"%2F 1"):
        with pytest.raises(ValueError):
            parse_list_line(bad)


@pytest.mark.parametrize("line", [b"app.log", b"app.log ", b"app.log x", b"a b 0", b"%zz 0"])
def test_bad_named_headers(line):
    with pytest.raises(BadHeader):
        parse_named(line)


def test_named_header_built_by_clients():
    assert named_header("a b", b"-10l?\n") == b"a%20b -10l?\n"
    assert named_header(None, b"0\n") == b"0\n"


def test_reader_takes_long_names_up_to_the_limit():
    name = "x" * 255
    header = named_header(name, b"0\n")
    reader = NamedHeaderReader()
    assert reader.feed(header[:100]) is None
    assert reader.feed(header[100:]) == Ask(name, Request(0))
    longest = b"%41" * ((MAX_NAMED_HEADER_BYTES - 2) // 3) + b" 0"
    assert len(longest) <= MAX_NAMED_HEADER_BYTES
    assert NamedHeaderReader().feed(longest + b"\n").name.startswith("AAA")
    with pytest.raises(BadHeader, match="longer than 1024"):
        NamedHeaderReader().feed(b"a" * (MAX_NAMED_HEADER_BYTES + 1))
    with pytest.raises(BadHeader, match="longer than 1024"):
        NamedHeaderReader().feed(b"a" * MAX_NAMED_HEADER_BYTES + b" 0\n")
