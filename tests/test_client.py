"""The client library: pure helpers in memory, then `follow` against a real
tailsrv process and against a scripted unix-socket peer that records headers."""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from typing import Callable, Iterator, List, Union

import pytest
from conftest import IO_TIMEOUT, append
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailsrv import keepalive
from tailsrv.client import follower as client
from tailsrv.client.follower import (MAX_RECONNECT_DELAY, RECONNECT_DELAY, BadAddress,
                                     ProtocolError, follow, follow_lines, header, parse_address,
                                     parse_announcement, reconnect_delay, split_lines)
from tailsrv.protocol import REFUSAL, announcement, byte_position, digest, make_proof, parse_header

# follow() blocks for as long as the file is idle, by design: bound each test.
pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("text, expected", [
    ("localhost:4321", ("localhost", 4321)),
    ("127.0.0.1:1", ("127.0.0.1", 1)),
    ("[::1]:65535", ("::1", 65535)),
    ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
    ("unix:/run/tailsrv.sock", "/run/tailsrv.sock"),
    ("unix:relative.sock", "relative.sock"),
])
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text, reason", [
    ("localhost", "expected HOST:PORT"),
    ("::1:4321", "brackets"),
    (":4321", "no host"),
    ("[]:4321", "no host"),
    ("[::1:4321", "brackets"),
    ("host:0", "port"),
    ("host:65536", "port"),
    ("host:http", "port"),
    ("host:", "port"),
    ("host:٣", "port"),
    ("unix:", "no path"),
])
def test_parse_address_rejects(text, reason):
    with pytest.raises(BadAddress, match=reason):
        parse_address(text)


@pytest.mark.parametrize("args, expected", [
    ((0,), b"0\n"),
    ((1000,), b"1000\n"),
    ((-1000, None, True), b"-1000?\n"),
    ((0, -10), b"-10l\n"),
    ((0, 25, True), b"25l?\n"),
])
def test_header(args, expected):
    assert header(*args) == expected


def test_parse_announcement():
    assert parse_announcement(b"") is None
    assert parse_announcement(b"123") is None
    assert parse_announcement(b"123\n") == (123, b"")
    assert parse_announcement(b"0\nfile data\n") == (0, b"file data\n")
    assert parse_announcement(REFUSAL) == (None, b"")
    for bad in (b"-5\n", b"12x\n", b"\n", b"1" * 30):
        with pytest.raises(ProtocolError):
            parse_announcement(bad)


def test_reconnect_delay_doubles_up_to_the_cap():
    delays = [reconnect_delay(n) for n in range(12)]
    assert delays[:3] == [RECONNECT_DELAY, 2 * RECONNECT_DELAY, 4 * RECONNECT_DELAY]
    assert delays[-1] == MAX_RECONNECT_DELAY == max(delays)
    assert delays == sorted(delays)
    assert reconnect_delay(10**6) == MAX_RECONNECT_DELAY


@given(st.lists(st.binary(max_size=20)))
def test_split_lines_regroups_any_chunking(chunks):
    data = b"".join(chunks)
    lines = list(split_lines(chunks))
    assert b"".join(lines) == data[:data.rfind(b"\n") + 1]
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)


def take(chunks: Iterator[bytes], n: int) -> bytes:
    """Exactly n bytes from a chunk iterator (which must not yield more)."""
    got = b""
    while len(got) < n:
        got += next(chunks)
    assert len(got) == n, "yielded past the bytes expected"
    return got


def address(server) -> str:
    return f"127.0.0.1:{server.port}"


def test_follow_from_byte_offsets(logfile, start_server):
    server = start_server(logfile)
    assert take(follow(address(server)), 12) == b"hello\nworld\n"
    assert take(follow(f"[::1]:{server.port}", 6), 6) == b"world\n"
    chunks = follow(address(server), -3)
    assert take(chunks, 3) == b"ld\n"
    append(logfile, b"more\n")
    assert take(chunks, 5) == b"more\n"


def test_follow_lines_from_the_end(logfile, start_server):
    server = start_server(logfile)
    lines = follow_lines(address(server), lines=-1)
    assert next(lines) == b"world\n"
    with open(logfile, "ab") as f:
        f.write(b"one\ntw")
        f.flush()
        assert next(lines) == b"one\n"
        f.write(b"o\n")
    assert next(lines) == b"two\n"


def test_follow_without_reconnect_ends_or_raises(tmp_path):
    with socket.socket() as sock:  # a port that is surely closed: ours, not listening
        sock.bind(("127.0.0.1", 0))
        addr = "127.0.0.1:%d" % sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError) as raised:
            next(follow(addr, reconnect=False))
    assert raised.value.filename == addr


def test_resume_after_the_server_is_killed_mid_stream(tmp_path, start_server):
    original = os.urandom(8 << 20)
    path = tmp_path / "big.bin"
    path.write_bytes(original)
    server = start_server(path)
    chunks = follow(address(server))
    received = next(chunks)
    while len(received) < 1 << 20:
        received += next(chunks)
    server.restart()  # SIGKILL: the stream breaks wherever it is
    while len(received) < len(original):
        received += next(chunks)
    assert received == original
    server.wait_log("?#")  # lines go out as the loop's turn ends
    resumed_at, proof = headers(server)[-1].split("?")
    assert 0 < int(resumed_at) < len(original)  # it did resume in the middle
    assert proof == make_proof(original[:int(resumed_at)]).encode().decode()


def test_resume_from_the_announced_position_not_the_first_header(logfile, start_server):
    server = start_server(logfile)
    chunks = follow(address(server), lines=-1)
    assert take(chunks, 6) == b"world\n"
    server.wait_log("connected: header -1l?")  # lines go out as the loop's turn ends
    server.kill()
    append(logfile, b"a\nb\n")  # asking for '-1l' again would skip "a\n"
    server.restart()
    assert take(chunks, 4) == b"a\nb\n"
    server.wait_log("connected: header 12")
    assert headers(server) == ["-1l?", "12?#6:" + digest(b"world\n").decode()]


def headers(server) -> List[str]:
    """The headers the server logged, in order (its log survives restarts)."""
    return re.findall(r"connected: header (\S+),", server.log)


def test_keepalive_is_on(start_server, logfile):
    server = start_server(logfile)
    with client._connect(("127.0.0.1", server.port)) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == keepalive.KEEPALIVE_IDLE
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == keepalive.KEEPALIVE_COUNT
        assert sock.gettimeout() is None


class ScriptedPeer:
    """A unix-socket server that answers connection i with replies[i] (bytes,
    or a function of the header received) and closes it, recording each header."""

    def __init__(self, path: Path, replies: List[Union[bytes, Callable[[bytes], bytes]]]) -> None:
        self.headers: List[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.bind(str(path))
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, args=(replies,), daemon=True)
        self.thread.start()

    def _serve(self, replies) -> None:
        with self.sock:
            for reply in replies:
                try:
                    conn, _ = self.sock.accept()
                except socket.timeout:  # the test is over: it needed fewer connections
                    return
                with conn:
                    conn.settimeout(IO_TIMEOUT)
                    received = b""
                    while not received.endswith(b"\n"):
                        received += conn.recv(64)
                    self.headers.append(received)
                    conn.sendall(reply(received) if callable(reply) else reply)


def test_unix_socket_and_the_headers_sent(tmp_path, monkeypatch):
    monkeypatch.setattr(client, "RECONNECT_DELAY", 0.01)
    peer = ScriptedPeer(tmp_path / "s.sock", [b"7\nabc", b"10\nde", b"12\nf"])
    chunks = follow(f"unix:{tmp_path / 's.sock'}", offset=-3)
    assert take(chunks, 6) == b"abcdef"
    chunks.close()
    assert peer.headers == [b"-3?\n", b"10#3:%s\n" % digest(b"abc"),
                            b"12#5:%s\n" % digest(b"abcde")]


def test_a_refused_resume_follows_the_new_file_from_its_start(tmp_path, monkeypatch, caplog):
    """The server's file was replaced between two connections: the client is
    told, drops the old file's unfinished line, and reads the new one from 0."""
    monkeypatch.setattr(client, "RECONNECT_DELAY", 0.01)
    peer = ScriptedPeer(tmp_path / "s.sock", [b"old\nunfin", REFUSAL + b"new\n", b"4\nmore\n"])
    notices: List[client.Replaced] = []
    addr = f"unix:{tmp_path / 's.sock'}"
    lines = follow_lines(addr, on_replaced=notices.append)
    assert next(lines) == b"old\n"
    assert next(lines) == b"new\n"  # not b"unfinnew\n"
    assert next(lines) == b"more\n"
    lines.close()
    assert notices == [client.Replaced(addr, 9)]
    assert peer.headers == [b"0\n", b"9#9:%s\n" % digest(b"old\nunfin"),
                            b"4#4:%s\n" % digest(b"new\n")]
    assert "file replaced; following the new file" in caplog.text


def test_a_mirror_proves_its_first_resume(tmp_path):
    """``before`` (what the caller has before ``offset``) makes the first
    header a proof; after the refusal comes the new file."""
    peer = ScriptedPeer(tmp_path / "s.sock", [REFUSAL + b"fresh"])
    notices: List[client.Replaced] = []
    chunks = follow(f"unix:{tmp_path / 's.sock'}", 5, before=b"xxhello", reconnect=False,
                    on_replaced=notices.append)
    assert list(chunks) == [b"fresh"]
    assert [n.position for n in notices] == [5]
    assert peer.headers == [b"5#7:%s\n" % digest(b"xxhello")]


def test_a_server_without_proofs_is_followed_as_before(tmp_path, monkeypatch, caplog):
    """An original tailsrv closes a header with a proof at once: after
    PROOF_ATTEMPTS of those the client resumes with plain headers."""
    monkeypatch.setattr(client, "RECONNECT_DELAY", 0.01)
    original = lambda received: b"" if b"#" in received else b"def"  # noqa: E731
    peer = ScriptedPeer(tmp_path / "s.sock", [b"abc"] + [original] * (client.PROOF_ATTEMPTS + 1))
    chunks = follow(f"unix:{tmp_path / 's.sock'}")
    assert take(chunks, 6) == b"abcdef"
    chunks.close()
    proof = b"3#3:%s\n" % digest(b"abc")
    assert peer.headers == [b"0\n"] + [proof] * client.PROOF_ATTEMPTS + [b"3\n"]
    assert "resuming without a proof" in caplog.text
    caplog.clear()
    peer = ScriptedPeer(tmp_path / "t.sock", [b"", b"tail"])  # the same, not reconnecting
    chunks = follow(f"unix:{tmp_path / 't.sock'}", 3, before=b"abc", reconnect=False)
    assert list(chunks) == [b"tail"]
    assert peer.headers == [proof, b"3\n"]


def test_no_announcement_asked_when_not_needed(tmp_path):
    peer = ScriptedPeer(tmp_path / "s.sock", [b"xyz", b"abc"])
    addr = f"unix:{tmp_path / 's.sock'}"
    assert list(follow(addr, offset=-3, reconnect=False)) == [b"xyz"]
    chunks = follow(addr, offset=5)  # reconnecting, but the start is absolute
    assert next(chunks) == b"abc"
    chunks.close()
    assert peer.headers == [b"-3\n", b"5\n"]


def test_a_malformed_announcement_is_an_error(tmp_path):
    ScriptedPeer(tmp_path / "s.sock", [b"oops\n"])
    with pytest.raises(ProtocolError):
        next(follow(f"unix:{tmp_path / 's.sock'}", lines=-10))


def test_a_bad_address_raises_when_calling_not_when_iterating():
    with pytest.raises(BadAddress):
        follow("no-port")
    with pytest.raises(ValueError):
        follow("localhost:4321", offset=5, lines=-1)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(min_size=1, max_size=200), start=st.integers(-250, 0),
       cuts=st.lists(st.integers(0, 60), max_size=8))
def test_each_byte_once_in_order_whatever_the_drops(tmp_path_factory, monkeypatch,
                                                    content, start, cuts):
    """A peer that speaks the real protocol but drops the connection after
    ``cuts[i]`` bytes on connection i, then sends everything left."""
    monkeypatch.setattr(client, "RECONNECT_DELAY", 0)

    def serve(cut):
        def reply(received: bytes) -> bytes:
            request = parse_header(received[:-1])
            position = byte_position(request.offset, len(content))
            data = content[position:] if cut is None else content[position:position + cut]
            return (announcement(position) if request.announce else b"") + data
        return reply

    path = tmp_path_factory.mktemp("peer") / "s.sock"
    ScriptedPeer(path, [serve(cut) for cut in cuts] + [serve(None)])
    expected = content[byte_position(start, len(content)):]
    chunks = follow(f"unix:{path}", offset=start)
    assert take(chunks, len(expected)) == expected
    chunks.close()
