"""Truncation end to end: clients past the new end are disconnected with a log
line; clients at or before it go on streaming."""

import socket

from conftest import IO_TIMEOUT, append, connect, read_exactly, read_until_closed

MIB = 1 << 20


def test_clients_past_the_new_end_are_disconnected(tmp_path, start_server):
    path = tmp_path / "big"
    content = bytes(range(256)) * (16 * MIB // 256)
    path.write_bytes(content)
    server = start_server(path)

    # A slow reader: small receive buffer, reads nothing yet, so it is stuck
    # a few MiB into the file, well before the 8 MiB the file will shrink to.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    slow.settimeout(IO_TIMEOUT)
    slow.connect(("127.0.0.1", server.port))
    slow.sendall(b"0\n")
    caught_up = connect(server.port, b"-10\n")
    assert read_exactly(caught_up, 10) == content[-10:]
    waiting = connect(server.port, b"%d\n" % (20 * MIB))
    server.wait_log(f"starting at byte {20 * MIB}")

    with open(path, "r+b") as f:
        f.truncate(8 * MIB)
    assert read_until_closed(caught_up) == b""
    assert read_until_closed(waiting) == b""
    log = server.wait_log("client was at byte %d" % (20 * MIB))
    assert "client was at byte %d" % (16 * MIB) in log
    assert log.count("disconnected: file truncated to %d bytes" % (8 * MIB)) == 2
    assert "was truncated from %d to %d bytes" % (16 * MIB, 8 * MIB) in log

    append(path, b"AFTER")
    assert read_exactly(slow, 8 * MIB + 5) == content[:8 * MIB] + b"AFTER"
    slow.close()


def test_truncated_to_zero_then_rewritten(tmp_path, start_server):
    """``copytruncate`` log rotation: followers at the old end are dropped and
    reconnect, and a new client gets the new content."""
    path = tmp_path / "app.log"
    path.write_bytes(b"old line\n")
    server = start_server(path)
    old = connect(server.port, b"0\n")
    assert read_exactly(old, 9) == b"old line\n"
    path.write_bytes(b"")  # truncates in place (same inode)
    assert read_until_closed(old) == b""
    server.wait_log("disconnected: file truncated to 0 bytes, client was at byte 9")
    with connect(server.port, b"0\n") as new:
        append(path, b"new line\n")
        assert read_exactly(new, 9) == b"new line\n"


def test_line_count_restarts_when_the_file_is_truncated(tmp_path, start_server):
    """A client waiting for its 3rd line counts lines of the new content after
    a truncation, not a mix of old and new."""
    path = tmp_path / "app.log"
    path.write_bytes(b"a\n")
    server = start_server(path)
    with connect(server.port, b"3l\n") as client:
        path.write_bytes(b"")
        server.wait_log("truncated from 2 to 0 bytes")
        append(path, b"xx\nyy\nzz\nww\n")
        assert read_exactly(client, 3) == b"ww\n"
