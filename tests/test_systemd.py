"""systemd integration against real unix datagram sockets standing in for
systemd's (the one mock-like thing here: there is no systemd in the sandbox)."""

from __future__ import annotations

import logging
import os
import socket
import struct

import pytest
from conftest import connect, read_exactly

from tailsrv.ops.systemd import JournalHandler, encode_fields, notify, priority


@pytest.fixture
def datagram_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(10)
    yield sock, path
    sock.close()


def test_ready_and_stopping(logfile, start_server, datagram_socket):
    sock, path = datagram_socket
    server = start_server(logfile, env={**os.environ, "NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"READY=1"
    with connect(server.port) as client:  # READY came once clients could connect
        read_exactly(client, 12)
    assert server.terminate() == 0
    assert sock.recv(4096) == b"STOPPING=1"


def test_notify_abstract_socket(monkeypatch):
    name = f"tailsrv-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("READY=1")
        assert sock.recv(100) == b"READY=1"


def test_notify_without_systemd_does_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_notify_to_a_dead_socket_is_logged_not_raised(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert notify("READY=1") is False
    assert "cannot notify systemd" in caplog.text


def test_priorities():
    assert [priority(level) for level in (logging.DEBUG, logging.INFO, logging.WARNING,
                                          logging.ERROR, logging.CRITICAL, 25)] == [7, 6, 4, 3, 2, 6]


def parse_journal(data: bytes) -> dict:
    fields, rest = {}, data
    while rest:
        line, _, tail = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = tail
        else:
            (length,) = struct.unpack("<Q", tail[:8])
            fields[line.decode()] = tail[8:8 + length].decode()
            rest = tail[8 + length + 1:]
    return fields


def test_encode_fields_multiline():
    data = encode_fields({"A": "one", "MESSAGE": "two\nlines"})
    assert parse_journal(data) == {"A": "one", "MESSAGE": "two\nlines"}


def test_journal_handler_sends_native_records(datagram_socket):
    sock, path = datagram_socket
    logger = logging.getLogger("tailsrv.test-journal")
    handler = JournalHandler(path)
    logger.addHandler(handler)
    try:
        logger.warning("client %s rejected:\nbad", "1.2.3.4:5")
    finally:
        logger.removeHandler(handler)
        handler.close()
    fields = parse_journal(sock.recv(65536))
    assert fields["MESSAGE"] == "client 1.2.3.4:5 rejected:\nbad"
    assert fields["PRIORITY"] == "4"
    assert fields["SYSLOG_IDENTIFIER"] == "tailsrv"
    assert fields["LOGGER"] == "tailsrv.test-journal"


def test_journald_on_a_journal_stream_uses_priority_prefixes(logfile, start_server, tmp_path):
    """Under systemd, stderr may be the journal ($JOURNAL_STREAM names it):
    then each line carries its priority as a <N> prefix."""
    # start_server sends stderr to tailsrv-0.log, which is created before the start.
    log = tmp_path / "tailsrv-0.log"
    log.touch()
    st = os.stat(log)
    env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    server = start_server(logfile, "--journald", env=env)
    with connect(server.port, b"nope\n") as client:
        client.recv(1)
    text = server.wait_log("rejected")
    assert "<6>listening on port" in text
    assert any(line.startswith("<4>") and "rejected" in line for line in text.splitlines())


def test_journald_without_a_journal_exits_1(logfile):
    import subprocess

    from conftest import script
    if os.path.exists("/run/systemd/journal/socket"):
        pytest.skip("this machine has a journal")
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    result = subprocess.run([script("tailsrv"), "-p", "4321", "--journald", str(logfile)],
                            capture_output=True, text=True, timeout=10, env=env)
    assert result.returncode == 1
    assert "--journald: no systemd journal here" in result.stderr
