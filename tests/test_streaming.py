"""Streaming end to end: the real console script, real sockets, real files."""

from __future__ import annotations

import os
import socket
import time

import pytest

from conftest import (append, assert_silent, connect, read_exactly, read_until_closed,
                      wait_for)

CONTENT = b"hello\nworld\n"


@pytest.mark.parametrize("header, expected", [
    (b"0\n", CONTENT),
    (b"6\n", b"world\n"),
    (b"-6\n", b"world\n"),
    (b"-1000\n", CONTENT),
    (b"+3\r\n", CONTENT[3:]),
    (b"  -2 \n", b"d\n"),
])
def test_offsets(logfile, start_server, header, expected):
    server = start_server(logfile)
    with connect(server.port, header) as sock:
        assert read_exactly(sock, len(expected)) == expected
        append(logfile, b"more\n")
        assert read_exactly(sock, 5) == b"more\n"


def test_offset_at_end_waits_for_growth(logfile, start_server):
    server = start_server(logfile)
    with connect(server.port, b"%d\n" % len(CONTENT)) as sock:
        assert_silent(sock)
        append(logfile, b"next")
        assert read_exactly(sock, 4) == b"next"


def test_offset_past_end_waits_until_file_is_that_long(logfile, start_server):
    server = start_server(logfile)
    with connect(server.port, b"20\n") as sock:
        with open(logfile, "ab") as f:
            f.write(b"0123456")  # 19 bytes: still short of 20
            f.flush()
            assert_silent(sock)
            f.write(b"789")
        assert read_exactly(sock, 2) == b"89"


def test_binary_data(tmp_path, start_server):
    data = bytes(range(256)) * 64 + b"\0\r\n\xff" * 100
    path = tmp_path / "blob"
    path.write_bytes(data)
    server = start_server(path)
    with connect(server.port) as sock:
        assert read_exactly(sock, len(data)) == data


def test_256_mib_byte_exact(tmp_path, start_server):
    size = 256 << 20
    block = os.urandom(1 << 20)
    path = tmp_path / "big"
    with open(path, "wb") as f:
        for i in range(size >> 20):
            f.write(i.to_bytes(4, "big") + block[4:])
    server = start_server(path)
    with connect(server.port) as sock, open(path, "rb") as f:
        got = 0
        while got < size:
            chunk = sock.recv(1 << 20)
            assert chunk, f"closed after {got} bytes"
            assert chunk == f.read(len(chunk)), f"mismatch near byte {got}"
            got += len(chunk)


def test_200_clients_get_the_same_appends(logfile, start_server):
    server = start_server(logfile)
    clients = [connect(server.port, b"-0\n") for _ in range(200)]
    try:
        for sock in clients:
            assert read_exactly(sock, len(CONTENT)) == CONTENT
        appended = b"".join(b"line %d\n" % i for i in range(300))
        with open(logfile, "ab") as f:
            for i in range(0, len(appended), 97):
                f.write(appended[i:i + 97])
                f.flush()
        for sock in clients:
            assert read_exactly(sock, len(appended)) == appended
    finally:
        for sock in clients:
            sock.close()


def test_stalled_client_does_not_hold_up_others(logfile, start_server):
    server = start_server(logfile)
    stalled = connect(server.port)  # never reads
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with stalled, connect(server.port) as reader:
        read_exactly(reader, len(CONTENT))
        block = os.urandom(1 << 20)
        with open(logfile, "ab") as f:
            for _ in range(64):
                f.write(block)
                f.flush()
                assert read_exactly(reader, len(block)) == block
    assert "Traceback" not in server.log


def test_small_appends_to_a_full_socket_arrive_whole_and_in_order(logfile, start_server):
    """Small appends reach caught-up clients as one copy read by the watch
    (watch.TAIL); a client that stops reading gets part of one, then none,
    and then the rest by sendfile once it reads again: nothing lost, nothing
    twice, beside a client that keeps up, and an append too big for the copy."""
    server = start_server(logfile)
    stalled = connect(server.port)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with stalled, connect(server.port) as reader:
        read_exactly(stalled, len(CONTENT))
        read_exactly(reader, len(CONTENT))
        records = [b"%06d %s\n" % (i, b"x" * (i % 300)) for i in range(4000)]
        records.insert(2000, os.urandom(64 * 1024))  # more than watch.TAIL
        with open(logfile, "ab") as f:
            for record in records:
                f.write(record)
                f.flush()
                assert read_exactly(reader, len(record)) == record
        appended = b"".join(records)
        assert read_exactly(stalled, len(appended)) == appended
    assert "Traceback" not in server.log


def test_half_closed_client_keeps_receiving(logfile, start_server):
    server = start_server(logfile)
    with connect(server.port) as sock:
        sock.shutdown(socket.SHUT_WR)  # like `echo 0 | nc`
        assert read_exactly(sock, len(CONTENT)) == CONTENT
        time.sleep(0.2)
        append(logfile, b"after\n")
        assert read_exactly(sock, 6) == b"after\n"


def test_bytes_after_header_are_ignored(logfile, start_server):
    server = start_server(logfile)
    with connect(server.port, b"6\nJUNK" + b"x" * 100000) as sock:
        assert read_exactly(sock, 6) == b"world\n"
        append(logfile, b"z")
        assert read_exactly(sock, 1) == b"z"


def test_connect_disconnect_cycles_leave_no_fds(logfile, start_server):
    server = start_server(logfile)
    with connect(server.port) as sock:
        read_exactly(sock, len(CONTENT))
    time.sleep(0.2)
    baseline = server.open_fds()
    for i in range(500):
        with connect(server.port, (b"0\n", b"-3\n", b"bad\n", b"")[i % 4]) as sock:
            if i % 4 == 0:
                read_exactly(sock, len(CONTENT))  # then a clean close
            elif i % 4 == 1:
                sock.recv(1)  # closed with unread data: a reset
    append_until_noticed(logfile, server)
    wait_for(lambda: server.open_fds() <= baseline, timeout=15)


def append_until_noticed(path, server):
    """A peer that closed cleanly while the file was idle cannot be told from a
    half-closed one; TCP reveals it when data sent to it is answered with a
    reset, so the write after that fails. Append twice, as a log does."""
    for _ in range(2):
        append(path, b"!")
        time.sleep(0.2)


@pytest.mark.parametrize("header, reason", [
    (b"abc\n", "not a number"),
    (b"\n", "empty header"),
    (b"1_000\n", "not a number"),
    ("١٢\n".encode(), "not a number"),
    (b"99999999999999999999\n", "out of range"),
    (b"1" * 100, "longer than 64 bytes"),
    (b" " * 70 + b"1\n", "longer than 64 bytes"),
    (b"12", "closed before"),
])
def test_bad_headers_are_rejected(logfile, start_server, header, reason):
    server = start_server(logfile)
    with connect(server.port, header) as sock:
        if header == b"12":
            sock.shutdown(socket.SHUT_WR)
        assert read_until_closed(sock) == b""
    log = server.wait_log(reason)
    line = next(l for l in log.splitlines() if reason in l)
    assert "rejected" in line and "127.0.0.1:" in line
    # Nothing else is affected.
    with connect(server.port) as sock:
        assert read_exactly(sock, len(CONTENT)) == CONTENT


def test_header_timeout(logfile, start_server):
    server = start_server(logfile, "--header-timeout", "0.5")
    began = time.monotonic()
    with connect(server.port, b"12") as sock:
        assert read_until_closed(sock) == b""
    assert 0.4 < time.monotonic() - began < 5
    server.wait_log("rejected: no complete header within 0.5 s")


def test_file_created_after_start(tmp_path, start_server):
    path = tmp_path / "later.log"
    server = start_server(path)
    with connect(server.port) as early, connect(server.port, b"-2\n") as tail:
        time.sleep(0.2)
        tmp = tmp_path / "tmp"
        tmp.write_bytes(b"first\n")
        os.rename(tmp, path)  # appears by rename, complete
        assert read_exactly(early, 6) == b"first\n"
        append(path, b"second\n")
        assert read_exactly(early, 7) == b"second\n"
        # -2 resolved against the size at header time: 0 bytes, so from the start.
        assert read_exactly(tail, 13) == b"first\nsecond\n"


def test_file_created_by_open(tmp_path, start_server):
    path = tmp_path / "later.log"
    server = start_server(path)
    with connect(server.port) as sock:
        append(path, b"abc")
        assert read_exactly(sock, 3) == b"abc"
    assert "waiting for it to appear" in server.log


@pytest.mark.parametrize("how", ["delete", "move", "replace"])
def test_file_gone_closes_clients_and_exits_0(logfile, start_server, how, tmp_path):
    server = start_server(logfile)
    with connect(server.port) as sock:
        read_exactly(sock, len(CONTENT))
        if how == "delete":
            os.unlink(logfile)
        elif how == "move":
            os.rename(logfile, tmp_path / "moved.log")
        else:  # another file renamed over it: the one being served is deleted
            (tmp_path / "new.log").write_bytes(b"new")
            os.rename(tmp_path / "new.log", logfile)
        assert read_until_closed(sock) == b""
    assert server.proc.wait(10) == 0
    assert ("moved" if how == "move" else "deleted") in server.log


@pytest.mark.parametrize("how", ["delete", "move"])
def test_linger_keeps_serving(logfile, start_server, how, tmp_path):
    server = start_server(logfile, "--linger-after-file-is-gone")
    with connect(server.port) as sock:
        read_exactly(sock, len(CONTENT))
        with open(logfile, "ab") as f:
            if how == "delete":
                os.unlink(logfile)
            else:
                os.rename(logfile, tmp_path / "moved.log")
            server.wait_log("still serving")
            f.write(b"still here\n")
        assert read_exactly(sock, 11) == b"still here\n"
    with connect(server.port) as late:
        assert read_exactly(late, len(CONTENT) + 11) == CONTENT + b"still here\n"
    assert server.proc.poll() is None


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_stops_within_a_second(logfile, start_server, sig):
    import signal
    server = start_server(logfile)
    clients = [connect(server.port) for _ in range(20)]
    for sock in clients:
        read_exactly(sock, len(CONTENT))
    began = time.monotonic()
    assert server.terminate(getattr(signal, sig)) == 0
    assert time.monotonic() - began < 1.0
    for sock in clients:
        assert read_until_closed(sock) == b""
        sock.close()
    assert "Traceback" not in server.log
    assert f"{sig} received" in server.log


def test_connect_and_disconnect_are_logged(logfile, start_server):
    server = start_server(logfile)
    with connect(server.port, b"-6\n") as sock:
        read_exactly(sock, 6)
        server.wait_log("connected: header -6, starting at byte 6")
    append_until_noticed(logfile, server)
    log = server.wait_log("disconnected")
    line = next(l for l in log.splitlines() if "disconnected" in l)
    # 6 bytes read, and the first append, which the kernel took before the reset.
    assert "127.0.0.1:" in line and "sent 7 bytes from byte 6" in line


def test_ipv6_and_ipv4_on_one_port(logfile, start_server):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = start_server(logfile)
    for host in ("127.0.0.1", "::1"):
        with connect(server.port, host=host) as sock:
            assert read_exactly(sock, len(CONTENT)) == CONTENT


def test_file_gone_while_clients_wait_for_lines_and_bytes(logfile, start_server):
    """Clients waiting for a position the file never reaches are closed too."""
    server = start_server(logfile)
    with connect(server.port, b"25l\n") as lines, connect(server.port, b"1000\n") as far:
        server.wait_log("header 1000")
        os.unlink(logfile)
        assert read_until_closed(lines) == b""
        assert read_until_closed(far) == b""
    assert server.proc.wait(10) == 0
