"""tscat, the console script, as a user runs it: output, options, signals,
exit statuses."""

import signal
import subprocess

import pytest

from conftest import IO_TIMEOUT, append, script

pytestmark = pytest.mark.timeout(30)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([script("tscat"), *args], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=IO_TIMEOUT)


def test_help_is_the_manual():
    result = run("--help")
    assert result.returncode == 0
    for words in ("Usage:", "--offset N", "--lines N", "unix:PATH", "Exit status"):
        assert words in result.stdout.decode()


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith(b"tscat ")


@pytest.mark.parametrize("args, message", [
    ([], b"Usage:"),
    (["localhost"], b"expected HOST:PORT"),
    (["--lines", "ten", "localhost:4321"], b"invalid --lines 'ten'"),
    (["--offset", "1", "--lines", "2", "localhost:4321"], b"Usage:"),
    (["--bogus", "localhost:4321"], b"Usage:"),
])
def test_bad_usage_exits_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr and b"Traceback" not in result.stderr


def test_connection_refused_without_reconnect_exits_1(start_server, logfile):
    server = start_server(logfile)
    server.kill()
    result = run("--no-reconnect", f"127.0.0.1:{server.port}")
    assert result.returncode == 1
    assert result.stderr.decode().strip() == f"tscat: 127.0.0.1:{server.port}: Connection refused"


@pytest.mark.parametrize("args, expected", [
    ([], b"hello\nworld\n"),
    (["--offset", "6"], b"world\n"),
    (["--offset", "-3"], b"ld\n"),
    (["--lines", "-1"], b"world\n"),
    (["--lines=1"], b"world\n"),
])
def test_streams_until_the_server_stops(start_server, logfile, spawn, args, expected):
    server = start_server(logfile)
    tscat = spawn(["tscat", *args, "--no-reconnect", f"[::1]:{server.port}"])
    server.wait_log("starting at byte")  # before the file grows: negative starts
    append(logfile, b"more\n")
    assert tscat.stdout.read(len(expected) + 5) == expected + b"more\n"
    assert server.terminate() == 0
    out, err = tscat.communicate(timeout=IO_TIMEOUT)
    assert (tscat.returncode, out, err) == (0, b"", b"")


def test_reconnects_and_resumes_exactly(start_server, logfile, spawn):
    server = start_server(logfile)
    tscat = spawn(["tscat", f"127.0.0.1:{server.port}"])
    assert tscat.stdout.read(12) == b"hello\nworld\n"
    server.kill()
    append(logfile, b"while down\n")
    server.restart()
    assert tscat.stdout.read(11) == b"while down\n"
    server.wait_log("header 12?#12:")  # it asked for exactly the next byte, with a proof
    tscat.send_signal(signal.SIGTERM)
    out, err = tscat.communicate(timeout=IO_TIMEOUT)
    assert (tscat.returncode, out) == (0, b"")
    assert b"reconnecting in" in err and b"Traceback" not in err


def test_a_closed_pipe_ends_it_quietly(tmp_path, start_server, spawn):
    path = tmp_path / "big.log"
    path.write_bytes(b"x" * 999 + b"\n" * 1000)
    server = start_server(path)
    head = spawn(["tscat", f"127.0.0.1:{server.port}"])  # stands for `| head -c 10`
    assert head.stdout.read(10) == b"x" * 10
    head.stdout.close()
    append(path, b"y" * (1 << 20))  # more than any pipe holds
    assert head.wait(IO_TIMEOUT) == 0
    assert head.stderr.read() == b""


def test_ctrl_c_exits_130_without_a_traceback(start_server, logfile, spawn):
    server = start_server(logfile)
    tscat = spawn(["tscat", f"127.0.0.1:{server.port}"])
    assert tscat.stdout.read(12) == b"hello\nworld\n"
    tscat.send_signal(signal.SIGINT)
    assert tscat.wait(IO_TIMEOUT) == 130
    assert tscat.stderr.read() == b""


def test_a_burst_of_sigterms_ends_it_quietly(tmp_path, start_server, spawn):
    """A supervisor may send SIGTERM more than once (timeout, systemd, a
    script in a loop): a second one arriving while tscat ends is no traceback."""
    path = tmp_path / "app.log"
    path.write_bytes(b"hello\n")
    server = start_server(path)
    for _ in range(5):
        tscat = spawn(["tscat", f"127.0.0.1:{server.port}"])
        assert tscat.stdout.read(6) == b"hello\n"
        for _ in range(20):
            tscat.send_signal(signal.SIGTERM)
        out, err = tscat.communicate(timeout=IO_TIMEOUT)
        assert (tscat.returncode, out) == (0, b""), err
        assert b"Traceback" not in err
