"""The command line, run as the installed console script."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from conftest import IO_TIMEOUT, connect, read_exactly, script


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([script("tailsrv"), *args], capture_output=True, text=True,
                          timeout=IO_TIMEOUT, stdin=subprocess.DEVNULL, **kwargs)


@pytest.mark.parametrize("args, message", [
    ([], "Usage:"),
    (["-p", "4321"], "Usage:"),
    (["/tmp/x.log"], "Usage:"),
    (["-p", "4321", "--frobnicate", "/tmp/x.log"], "Usage:"),
    (["-p", "http", "/tmp/x.log"], "invalid port 'http'"),
    (["-p", "0", "/tmp/x.log"], "invalid port '0'"),
    (["-p", "70000", "/tmp/x.log"], "invalid port '70000'"),
    (["-p", "4321", "--header-timeout", "-1", "/tmp/x.log"], "invalid --header-timeout"),
    (["-p", "4321", "--header-timeout", "nan", "/tmp/x.log"], "invalid --header-timeout"),
    (["-p", "4321", "--log-level", "loud", "/tmp/x.log"], "invalid --log-level"),
    (["-p", "4321", "--rotation-grace", "0", "/tmp/x.log"], "invalid --rotation-grace"),
    (["-p", "4321", "--follow-name", "--linger-after-file-is-gone", "/tmp/x.log"],
     "cannot be combined"),
])
def test_bad_usage_exits_2_without_traceback(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Usage:" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_help():
    result = run("--help")
    assert result.returncode == 0
    for option in ("--port", "--linger-after-file-is-gone", "--journald", "--log-level",
                   "--header-timeout", "--follow-name", "--rotation-grace", "--version",
                   "Exit status"):
        assert option in result.stdout


def test_version():
    from tailsrv import __version__
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"tailsrv {__version__}"
    assert __version__ != "0+unknown"


def test_python_dash_m(logfile):
    result = subprocess.run([sys.executable, "-m", "tailsrv", "--version"],
                            capture_output=True, text=True, timeout=IO_TIMEOUT)
    assert result.returncode == 0 and result.stdout.startswith("tailsrv ")


def test_port_in_use_exits_1(logfile):
    with socket.socket(socket.AF_INET6) as busy:
        busy.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        busy.bind(("::", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("-p", str(port), str(logfile))
    assert result.returncode == 1
    assert f"cannot listen on port {port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_directory_exits_1(tmp_path):
    result = run("-p", "4321", str(tmp_path / "nope" / "x.log"))
    assert result.returncode == 1
    assert "cannot follow" in result.stderr and "No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_fifo_as_path_exits_1(tmp_path):
    # A directory as PATH is served now (docs/many-files.md); one PATH that is
    # no regular file still ends the server at once, in one line.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = run("-p", "4321", str(fifo))
    assert result.returncode == 1
    assert "not a regular file" in result.stderr
    assert "Traceback" not in result.stderr


def test_log_level_warning_hides_client_lines(logfile, start_server):
    server = start_server(logfile, "--log-level", "WARNING")
    with connect(server.port) as sock:
        read_exactly(sock, 12)
    with connect(server.port, b"oops\n") as sock:
        sock.recv(1)
    server.wait_log("rejected")
    assert "connected" not in server.log and "INFO" not in server.log
