"""What a new user tripped on in the first hour (issue 20), each as it is now:
the tools speak `tail`, a typo fails fast, the wrong port says so, messages are
sentences, the viewer runs alone, exit statuses do not depend on a pipe.
Everything runs as the real console scripts, over real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import h11
import pytest

from conftest import (IO_TIMEOUT, append, descriptors, free_port, read_until_closed, script,
                      wait_for)

SCRIPTS = ("tailsrv", "tscat", "tssync")


def run(*args: str, stderr=subprocess.PIPE, timeout: float = IO_TIMEOUT
        ) -> subprocess.CompletedProcess:
    """A console script (the first arg) run to its end, stdin closed."""
    return subprocess.run([script(args[0]), *args[1:]], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=stderr, timeout=timeout)


# 4. Messages that show the parser's insides.

@pytest.mark.parametrize("args, sentence", [
    (["tailsrv", "-p", "4793"], "tailsrv: missing PATH"),
    (["tailsrv", "--bogus", "app.log"], "tailsrv: unknown option --bogus"),
    (["tailsrv", "-x", "app.log"], "tailsrv: unknown option -x"),
    (["tailsrv", "app.log", "-p"], "tailsrv: option -p needs a value"),
    (["tailsrv", "-p", "1", "-p", "2", "app.log"], "tailsrv: option --port given more than once"),
    (["tscat", "h:1", "extra"], "tscat: unexpected argument 'extra'"),
    (["tailsrv", "--ht", ":1", "app.log"], "tailsrv: ambiguous option --ht: --http or --http-auth"),
    (["tscat"], "tscat: missing ADDR"),
    (["tscat", "--lines"], "tscat: option --lines needs a value"),
    (["tscat", "--frobnicate", "h:1"], "tscat: unknown option --frobnicate"),
    (["tscat", "--offset", "1", "--lines", "2", "h:1"],
     "tscat: options --lines and --offset cannot be combined: give one"),
    (["tssync", "h:1"], "tssync: missing FILE"),
    (["tssync", "h:1", "a", "b"], "tssync: unexpected argument 'b'"),
])
def test_a_usage_error_is_a_sentence_and_the_usage(args, sentence):
    result = run(*args)
    lines = result.stderr.decode().splitlines()
    assert (result.returncode, lines[0]) == (2, sentence)
    assert lines[1] == "Usage:" and lines[2].split()[0] == args[0]
    assert "Option(" not in result.stderr.decode() and "Warning" not in result.stderr.decode()


# 6. Exit statuses that depend on a pipe.

def with_stderr_closed(*args: str) -> int:
    """The exit status of a console script whose stderr (and stdout) is a
    pipe nobody reads (``2>&1 | true``, the reader already gone)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run([script(args[0]), *args[1:]], stdin=subprocess.DEVNULL,
                              stdout=writer, stderr=writer, timeout=IO_TIMEOUT).returncode
    finally:
        os.close(writer)


@pytest.mark.parametrize("args, status", [
    (["tailsrv", "-p", "0", "app.log"], 2),         # a bad value
    (["tailsrv", "--bogus", "app.log"], 2),         # docopt's refusal
    (["tailsrv", "-p", "{port}", "{missing}/app.log"], 1),  # a runtime error, logged
    (["tailsrv", "--journald", "-p", "{port}", "app.log"], 1),  # no journal here
    (["tscat", "nohost"], 2),
    (["tscat", "--bogus", "h:1"], 2),
    (["tscat", "--no-reconnect", "127.0.0.1:{port}"], 1),   # refused
    (["tssync", "h:1"], 2),
    (["tssync", "--no-reconnect", "127.0.0.1:{port}", "{missing}/mirror"], 1),
])
def test_the_exit_status_does_not_depend_on_reading_stderr(tmp_path, args, status):
    values = {"port": str(free_port()), "missing": str(tmp_path / "missing")}
    args = [arg.format(**values) for arg in args]
    if "--journald" in args and os.path.exists("/run/systemd/journal/socket"):
        pytest.skip("a journal is here: --journald is no error")
    assert run(*args).returncode == status  # as it is with stderr read
    assert with_stderr_closed(*args) == status


# 1. Habits from `tail`.

NINE = b"".join(b"%d\n" % n for n in range(1, 10))  # 18 bytes, lines 1 to 9


@pytest.mark.parametrize("args, expected", [
    (["-n", "3"], b"7\n8\n9\n"),
    (["--lines", "3"], b"7\n8\n9\n"),
    (["--lines=3"], b"7\n8\n9\n"),
    (["-n", "-3"], b"7\n8\n9\n"),      # GNU tail takes it too
    (["-n", "+8"], b"8\n9\n"),         # tail -n +8: from line 8
    (["-n", "+1"], NINE),
    (["-c", "4"], b"8\n9\n"),
    (["--bytes", "-4"], b"8\n9\n"),
    (["-c", "+17"], b"9\n"),           # tail -c +17: from byte 17, counting from 1
    ([], NINE),                        # no start: the whole file, as before
])
def test_tscat_counts_as_tail_does(tmp_path, start_server, spawn, args, expected):
    path = tmp_path / "nine.log"
    path.write_bytes(NINE)
    server = start_server(path)
    tscat = spawn(["tscat", *args, f"127.0.0.1:{server.port}"])
    server.wait_log("starting at byte")  # placed before the append
    append(path, b"more\n")
    assert tscat.stdout.read(len(expected) + 5) == expected + b"more\n"


@pytest.mark.parametrize("value", ["0", "-0", "ten", "+-3"])
def test_a_count_tail_would_not_take_is_a_usage_error(value):
    result = run("tscat", "-n", value, "h:1")
    assert result.returncode == 2 and result.stderr.startswith(b"tscat: invalid --lines")


def test_help_says_it(tmp_path):
    for name, words in (("tscat", [b"-n N, --lines N", b"tail -n", b"+N", b"-c N", b"--wait"]),
                        ("tailsrv", [b"netcat-openbsd", b"--http 127.0.0.1:8080 app.log"])):
        out = run(name, "--help").stdout
        assert all(word in out for word in words), name


# 2. A typo fails fast; a server that is not up yet is waited for, once said.

@pytest.mark.parametrize("address, reason", [
    ("nosuchhost.invalid:4792", "nosuchhost.invalid:4792: "),   # the resolver's words
    ("127.0.0.1:{port}", "127.0.0.1:{port}: Connection refused"),
])
def test_tscat_says_at_once_that_it_cannot_reach_the_server(address, reason):
    port = str(free_port())
    address, reason = address.format(port=port), reason.format(port=port)
    result = run("tscat", address)
    lines = result.stderr.decode().splitlines()
    assert (result.returncode, len(lines), result.stdout) == (1, 1, b"")
    assert lines[0].startswith(f"tscat: {reason}")


def start_tailsrv(port: int, path, log, *args: str) -> subprocess.Popen:
    return subprocess.Popen([script("tailsrv"), "-p", str(port), *args, str(path)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)


@pytest.mark.parametrize("tool", ["tscat --wait", "tssync"])
def test_a_server_not_up_yet_is_waited_for_and_that_said_once(tmp_path, logfile, spawn, tool):
    port = free_port()
    mirror = tmp_path / "mirror.log"
    args = [*tool.split(), f"127.0.0.1:{port}", *([str(mirror)] if tool == "tssync" else [])]
    client = spawn(args)
    time.sleep(2.0)  # several attempts: 0.25, 0.5 and 1 s apart
    assert client.poll() is None
    with open(tmp_path / "server.log", "wb") as log:
        server = start_tailsrv(port, logfile, log)
    try:
        if tool == "tssync":
            wait_for(lambda: mirror.exists() and mirror.read_bytes() == b"hello\nworld\n")
        else:
            assert client.stdout.read(12) == b"hello\nworld\n"
        client.send_signal(signal.SIGTERM)
        _, err = client.communicate(timeout=IO_TIMEOUT)
    finally:
        server.terminate()
        server.wait(IO_TIMEOUT)
    lines = err.decode().splitlines()
    assert len(lines) == 2, lines
    assert f"127.0.0.1:{port}: Connection refused; reconnecting in" in lines[0]
    assert lines[1].endswith(f"connected to 127.0.0.1:{port} again; resuming at byte 0")


# 3. The wrong port.

@pytest.fixture
def web(start_server, logfile):
    """A tailsrv with --http: (server, http port)."""
    port = free_port()
    return start_server(logfile, "--http", f"127.0.0.1:{port}"), port


def exchange(port: int, request: bytes) -> bytes:
    """What a server answers ``request`` with, until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(request)
        return read_until_closed(sock)


@pytest.mark.parametrize("request_", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    b"GET /" + b"x" * 100 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",  # longer than a header
])
def test_an_http_request_on_the_stream_port_gets_an_http_answer(web, request_):
    server, http_port = web
    answer = exchange(server.port, request_)
    conn = h11.Connection(h11.CLIENT)  # parsed as a client would
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.receive_data(answer)
    response, body = conn.next_event(), conn.next_event()
    assert response.status_code == 400 and b"hello" not in answer  # no file data
    assert b"stream port" in body.data
    assert f"http://127.0.0.1:{http_port}/".encode() in body.data
    log = server.wait_log("on the stream port; answered 400")
    assert log.count("on the stream port") == 1 and "an HTTP request (GET /" in log


def test_an_http_request_on_the_stream_port_without_http(start_server, logfile):
    server = start_server(logfile)
    answer = exchange(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400 ") or answer.startswith(b"HTTP/1.1 400 ")
    assert b"no HTTP port" in answer


@pytest.mark.parametrize("request_, says", [
    (b"0\n", b"tailsrv's HTTP port"),
    (b"-10l\r\n", b"tailsrv's HTTP port"),
    (b"hello there\r\n", b"not an HTTP request line"),
])
def test_the_http_port_answers_what_is_not_http_at_once(web, request_, says):
    _, http_port = web
    began = time.monotonic()
    answer = exchange(http_port, request_)  # the header timeout is 30 s
    assert time.monotonic() - began < IO_TIMEOUT
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n") and says in answer
    assert b"bytearray" not in answer


def test_an_h11_complaint_is_a_sentence(web):
    _, http_port = web
    answer = exchange(http_port, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b"\r\n\r\nbad request: illegal header line\n")


@pytest.mark.parametrize("args", [[], ["-n", "5"], ["--no-reconnect"], ["-c", "+1"]])
def test_tscat_at_the_http_port_says_so_in_one_line(web, args):
    _, http_port = web
    result = run("tscat", *args, f"127.0.0.1:{http_port}")
    lines = result.stderr.decode().splitlines()
    assert (result.returncode, result.stdout, len(lines)) == (1, b"", 1)
    assert lines[0].startswith(f"tscat: 127.0.0.1:{http_port} is not a tailsrv stream port: "
                               f"it answered in HTTP (400 Bad Request): This is tailsrv's "
                               f"HTTP port")


def test_tssync_at_the_http_port_writes_nothing_and_says_so(web, tmp_path):
    _, http_port = web
    mirror = tmp_path / "mirror.log"
    result = run("tssync", f"127.0.0.1:{http_port}", str(mirror))
    assert (result.returncode, mirror.read_bytes()) == (1, b"")
    assert result.stderr.decode().startswith(
        f"tssync: 127.0.0.1:{http_port} is not a tailsrv stream port: it answered in HTTP")


@pytest.mark.parametrize("args", [[], ["-n", "+1"], ["--offset", "0"], ["-n", "3"]])
def test_a_file_that_looks_like_http_is_just_a_file(tmp_path, start_server, spawn, args):
    path = tmp_path / "dump.log"
    content = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nno\n"
    path.write_bytes(content)
    server = start_server(path)
    tscat = spawn(["tscat", *args, f"127.0.0.1:{server.port}"])
    server.wait_log("starting at byte")
    append(path, b"more\n")
    expected = content if args != ["-n", "3"] else content.split(b"\n", 1)[1]
    assert tscat.stdout.read(len(expected) + 5) == expected + b"more\n"


# 5. The viewer alone.

def test_http_alone_opens_only_its_port(tmp_path, logfile):
    port = free_port()
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([script("tailsrv"), "--http", f"127.0.0.1:{port}",
                                 str(logfile)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log)
    try:
        def streams() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"GET /stream?start=0 HTTP/1.0\r\n\r\n")
                    data = b""
                    while b"world\n" not in data:
                        more = sock.recv(4096)
                        if not more:
                            break
                        data += more
                    return b"\r\n\r\nhello\nworld\n" in data
            except OSError:
                return False
        wait_for(streams)
        sockets = [d for d in descriptors(proc.pid).values() if d.target.startswith("socket:")]
        inodes = {d.target[8:-1] for d in sockets}
        listening = [line for line in open("/proc/net/tcp").read().splitlines()[1:]
                     + open("/proc/net/tcp6").read().splitlines()[1:]
                     if line.split()[3] == "0A" and line.split()[9] in inodes]
        assert len(listening) == 1 and f":{port:04X} " in listening[0]
    finally:
        proc.terminate()
        assert proc.wait(IO_TIMEOUT) == 0
    assert "the HTTP port only" in (tmp_path / "server.log").read_text()


@pytest.mark.parametrize("http", [":{port}", "127.0.0.1:{port}"])
def test_http_on_the_stream_port_says_so(logfile, http):
    port = free_port()
    result = run("tailsrv", "-p", str(port), "--http", http.format(port=port), str(logfile))
    assert result.returncode == 2
    assert result.stderr.decode().startswith(
        f"tailsrv: --http and -p name the same port {port}: each needs a port of its own\n")


# 8. The README's first example needs `nc`.

def test_the_readme_says_where_nc_comes_from_and_shows_a_way_without_it():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    first_nc = readme.index("| nc ")
    assert "netcat-openbsd" in readme[:first_nc].split("\n\n")[-2]  # the paragraph before
    assert "tscat -n 20 localhost:4321" in readme  # the same, with what pip installed
    # and the viewer example opens only what it says
    assert "    tailsrv --http 127.0.0.1:8080 " in readme
