"""Start positions end to end: the ``l`` (lines) and ``?`` (announce) header
extensions, against the real console script."""

import os
import tempfile
from pathlib import Path

import pytest

from conftest import append, connect, read_exactly


def read_line(sock) -> bytes:
    """One ``\\n``-terminated line, byte by byte (the announcement)."""
    line = b""
    while not line.endswith(b"\n"):
        byte = sock.recv(1)
        if not byte:
            raise EOFError(f"connection closed after {line!r}")
        line += byte
    return line


def stream_from(port: int, header: bytes, expected: bytes) -> None:
    """Connect with ``header`` and check the first bytes are ``expected``."""
    with connect(port, header) as sock:
        assert read_exactly(sock, len(expected)) == expected


@pytest.mark.parametrize("content, header, expected", [
    (b"", b"-10l\n", b""),
    (b"one\n", b"-1l\n", b"one\n"),
    (b"one", b"-1l\n", b"one"),
    (b"one\n", b"-5l\n", b"one\n"),
    (b"a\nb\nc\n", b"-2l\n", b"b\nc\n"),
    (b"a\nb\nc", b"-2L\n", b"b\nc"),
    (b"a\r\nb\r\nc\r\n", b"-1l\r\n", b"c\r\n"),
    (b"a\nb\nc\n", b"0l\n", b"a\nb\nc\n"),
    (b"a\nb\nc\n", b"2l\n", b"c\n"),
    (b"a\r\nb\r\n", b"+1l\n", b"b\r\n"),
])
def test_lines(tmp_path, start_server, content, header, expected):
    path = tmp_path / "f"
    path.write_bytes(content)
    server = start_server(path)
    # A marker appended afterwards shows where the stream starts even when
    # the expected part is empty, and that the stream goes on after it.
    with connect(server.port, header) as sock:
        server.wait_log("connected: header")  # the start is resolved: now append
        append(path, b"MARK\n")
        assert read_exactly(sock, len(expected) + 5) == expected + b"MARK\n"


def test_positive_line_count_waits_for_the_lines(tmp_path, start_server):
    path = tmp_path / "f"
    path.write_bytes(b"1\n2")
    server = start_server(path)
    with connect(server.port, b"3l\n") as sock:
        for part in (b"\n", b"3", b"\n4\n"):  # line 3 ends in the last write
            append(path, part)
        assert read_exactly(sock, 2) == b"4\n"
    server.wait_log("header 3l, starting at byte 6")


def test_lines_when_the_file_does_not_exist_yet(tmp_path, start_server):
    path = tmp_path / "later"
    server = start_server(path)
    with connect(server.port, b"1l\n") as sock:
        path.write_bytes(b"first\nsecond\n")
        assert read_exactly(sock, 7) == b"second\n"


@pytest.mark.parametrize("header, position", [
    (b"0?\n", 0), (b"3?\n", 3), (b"-2?\n", 10), (b"-100?\n", 0), (b"-1l?\n", 6),
    (b"1L?\r\n", 6), (b"50?\n", 50),
])
def test_announce(tmp_path, start_server, header, position):
    path = tmp_path / "f"
    path.write_bytes(b"hello\nworld\n")
    server = start_server(path)
    with connect(server.port, header) as sock:
        assert read_line(sock) == b"%d\n" % position
        if position < 12:
            assert read_exactly(sock, 12 - position) == b"hello\nworld\n"[position:]


def test_plain_header_gets_no_announcement(logfile, start_server):
    server = start_server(logfile)
    stream_from(server.port, b"-6\n", b"world\n")


#: Size of the big file: 1 GiB, as the issue asks.
GIB = 1 << 30


@pytest.fixture(scope="module")
def big_file():
    """1 GiB of real 64-byte lines, in memory (/dev/shm) when possible so that
    writing it takes well under a second; removed afterwards."""
    directory = "/dev/shm" if os.path.isdir("/dev/shm") else None
    line = b"%063d\n"
    block = b"".join(line % i for i in range(16384))  # 1 MiB
    assert len(block) == 1 << 20
    fd, name = tempfile.mkstemp(prefix="tailsrv-big-", dir=directory)
    try:
        for _ in range(GIB // len(block)):
            os.write(fd, block)
        os.close(fd)
        yield Path(name)
    finally:
        os.unlink(name)


@pytest.mark.timeout(90)
def test_lines_in_a_1_gib_file(big_file, start_server):
    """Scanning the whole file for a line (both ways) gives the right byte, and
    the tail is found without reading the whole file."""
    server = start_server(big_file)
    lines = GIB // 64
    cases = [
        (b"-1l?\n", GIB - 64),
        (b"-16384l?\n", GIB - (1 << 20)),
        (b"-%dl?\n" % (lines - 1), 64),   # scans back through the whole file
        (b"-%dl?\n" % (lines + 5), 0),    # more lines than the file has
        (b"%dl?\n" % (lines - 1), GIB - 64),  # scans forward through it
        (b"100l?\n", 6400),
    ]
    for header, position in cases:
        with connect(server.port, header, timeout=60) as sock:
            assert read_line(sock) == b"%d\n" % position, header
            expected = b"%063d\n" % ((position // 64) % 16384)
            assert read_exactly(sock, 64) == expected
