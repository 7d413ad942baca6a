"""systemd socket activation: parsing $LISTEN_FDS, and the real console script
started with a listening socket passed the way systemd passes it."""

import contextlib
import os
import socket
import subprocess
import sys
from typing import Iterator

import pytest
from conftest import IO_TIMEOUT, read_exactly, script, wait_for

from tailsrv.ops.systemd import parse_listen_fds

PID = 4242


@pytest.mark.parametrize("environ, fds", [
    ({}, []),
    ({"LISTEN_FDS": "1", "LISTEN_PID": str(PID)}, [(3, "unknown")]),
    ({"LISTEN_FDS": "2", "LISTEN_PID": str(PID), "LISTEN_FDNAMES": "web:admin"},
     [(3, "web"), (4, "admin")]),
    ({"LISTEN_FDS": "2", "LISTEN_PID": str(PID), "LISTEN_FDNAMES": "web"},
     [(3, "web"), (4, "unknown")]),
    ({"LISTEN_FDS": "1", "LISTEN_PID": "1"}, []),  # meant for another process
    ({"LISTEN_FDS": "1"}, []),
    ({"LISTEN_FDS": "0", "LISTEN_PID": str(PID)}, []),
])
def test_parse_listen_fds(environ, fds):
    assert parse_listen_fds(environ, PID) == fds


def test_parse_listen_fds_rejects_garbage():
    with pytest.raises(ValueError):
        parse_listen_fds({"LISTEN_FDS": "x", "LISTEN_PID": str(PID)}, PID)


#: Runs argv[2:] as systemd would: the socket (argv[1]) moved to fd 3, and
#: LISTEN_PID set to the pid that execs the server (exec keeps the pid).
ACTIVATE = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


@contextlib.contextmanager
def activated_server(listener: socket.socket, *args: str, log_path) -> Iterator[subprocess.Popen]:
    """`activated`, its stderr to ``log_path``, killed at the end if still running;
    ``listener`` is closed here (the server holds the only copy)."""
    with open(log_path, "wb") as log:
        proc = activated(listener, *args, log=log)
    listener.close()
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(IO_TIMEOUT)


def activated(listener: socket.socket, *args: str, log) -> subprocess.Popen:
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="tailsrv.socket")
    return subprocess.Popen(
        [sys.executable, "-c", ACTIVATE, str(listener.fileno()), script("tailsrv"), *args],
        env=env, pass_fds=[listener.fileno()], stdin=subprocess.DEVNULL, stderr=log)


@pytest.mark.parametrize("options", [[], ["-p", "9", "--bind", "127.0.0.2"]])
def test_serves_on_the_passed_socket(tmp_path, logfile, options):
    """No -p needed; if given (a unit shared with a plain start), ignored."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    log_path = tmp_path / "tailsrv.log"
    with activated_server(listener, *options, str(logfile), log_path=log_path) as proc:
        wait_for(lambda: "listening on" in log_path.read_text())
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as client:
            client.sendall(b"0\n")
            assert read_exactly(client, 12) == b"hello\nworld\n"
        text = log_path.read_text()
        assert f"listening on 127.0.0.1:{port}\n" in text
        assert ("ignoring -p and --bind" in text) == bool(options)
        assert f"systemd passed fd 3 (tailsrv.socket): 127.0.0.1:{port}" in text
        proc.terminate()
        assert proc.wait(IO_TIMEOUT) == 0
