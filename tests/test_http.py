"""--http over real sockets: a real tailsrv process, responses parsed by h11 as
a client (which also checks our framing byte for byte)."""

from __future__ import annotations

import base64
import os
import signal
import socket
import time

import h11
import pytest
from conftest import (IO_TIMEOUT, append, connect, free_port, read_exactly, read_until_closed,
                      wait_for)
from test_server import ServerThread

from tailsrv import tcp_listener
from tailsrv.http.front import HttpFront

CONTENT = b"one\ntwo\nthree\nfour\n"


class Client:
    """One HTTP connection, its responses read with h11."""

    def __init__(self, port: int, http_version: str = "1.1") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.conn = h11.Connection(h11.CLIENT)
        self.http_version = http_version

    def get(self, target: str, headers=(), method: str = "GET") -> h11.Response:
        request = h11.Request(method=method, target=target, http_version=self.http_version,
                              headers=[("Host", "test"), *headers])
        self.sock.sendall(self.conn.send(request) + self.conn.send(h11.EndOfMessage()))
        return self._next((h11.Response,))

    def _next(self, kinds):
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(1 << 16))
                continue
            assert isinstance(event, kinds), event
            return event

    def body(self, n: int) -> bytes:
        """Exactly n more bytes of the body."""
        data = bytearray()
        while len(data) < n:
            event = self._next((h11.Data, h11.EndOfMessage))
            assert isinstance(event, h11.Data), f"body ended after {bytes(data[-100:])!r}"
            data += event.data
        assert len(data) == n, bytes(data[-100:])
        return bytes(data)

    def whole_body(self) -> bytes:
        data = b""
        while True:
            event = self._next((h11.Data, h11.EndOfMessage))
            if isinstance(event, h11.EndOfMessage):
                return data
            data += event.data

    def ended(self) -> bool:
        """Whether the body ends next, in order (the last chunk)."""
        return isinstance(self._next((h11.Data, h11.EndOfMessage)), h11.EndOfMessage)

    def next_cycle(self) -> None:
        self.conn.start_next_cycle()

    def close(self) -> None:
        self.sock.close()


def header(response: h11.Response, name: str) -> str:
    values = [v.decode() for k, v in response.headers if k == name.lower().encode()]
    assert len(values) == 1, (name, response.headers)
    return values[0]


@pytest.fixture
def web(start_server, logfile):
    """start(*args) -> (server, http port): tailsrv with --http on loopback."""
    logfile.write_bytes(CONTENT)

    def start(*args: str):
        port = free_port()
        server = start_server(logfile, "--http", f"127.0.0.1:{port}", *args)
        return server, port
    return start


@pytest.mark.parametrize("start, position", [
    ("0", 0), ("4", 4), ("-5", len(CONTENT) - 5), ("-2l", 8), ("1l", 4), ("-100l", 0),
    (None, 0), ("%2B4", 4), ("19", len(CONTENT)),
])
def test_every_start_form_then_growth(web, logfile, start, position):
    _, port = web()
    client = Client(port)
    response = client.get("/stream" if start is None else f"/stream?start={start}")
    assert response.status_code == 200
    assert header(response, "Tailsrv-Start") == str(position)
    assert header(response, "Tailsrv-Size") == str(len(CONTENT))
    assert client.body(len(CONTENT) - position) == CONTENT[position:]
    append(logfile, b"five\n")
    assert client.body(5) == b"five\n"
    append(logfile, "sechs \u00e9\n".encode())
    assert client.body(9) == "sechs \u00e9\n".encode()


def test_headers_guard_every_response(web):
    _, port = web()
    client = Client(port)
    page = client.get("/")
    assert page.status_code == 200
    assert header(page, "Content-Type") == "text/html; charset=utf-8"
    html = client.whole_body()
    assert b'<script src="viewer.js"' in html and b"<script>" not in html
    for response in (page, Client(port).get("/stream"), Client(port).get("/nope")):
        csp = header(response, "Content-Security-Policy")
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp
        assert header(response, "X-Content-Type-Options") == "nosniff"
    stream = Client(port).get("/stream")
    assert header(stream, "Content-Type") == "text/plain; charset=utf-8"
    assert header(stream, "Cache-Control") == "no-store"
    assert header(stream, "Transfer-Encoding") == "chunked"


def test_page_files_on_one_kept_alive_connection(web):
    _, port = web()
    client = Client(port)
    for target, kind, marker in (("/", "text/html", b"<html"),
                                 ("/viewer.js", "text/javascript", b"TextDecoder"),
                                 ("/viewer.css", "text/css", b"prefers-color-scheme")):
        response = client.get(target)
        assert response.status_code == 200
        assert header(response, "Content-Type").startswith(kind)
        assert marker in client.whole_body()
        client.next_cycle()


@pytest.mark.parametrize("target, method, status, reason", [
    ("/stream?start=x", "GET", 400, b"bad start: not a number"),
    ("/stream?start=-10l%3F", "GET", 400, b"bad start: no '?' here"),
    ("/stream?start=1&start=2", "GET", 400, b"bad start: start given more than once"),
    ("/stream?start=99999999999999999999", "GET", 400, b"bad start: offset out of range"),
    ("/stream?start=4&before=not*base64", "GET", 400, b"bad before: expected 1 to 4096"),
    ("/stream?start=2&before=dHdv", "GET", 400, b"bad before: a resume needs a byte start"),
    ("/nope", "GET", 404, b"not found"),
    ("/stream", "POST", 405, b"method not allowed"),
    ("/", "DELETE", 405, b"method not allowed"),
])
def test_errors(web, target, method, status, reason):
    _, port = web()
    client = Client(port)
    response = client.get(target, method=method)
    assert response.status_code == status
    body = client.whole_body()
    assert body.startswith(reason) and body.endswith(b"\n") and body.count(b"\n") == 1
    if status == 405:
        assert header(response, "Allow") == "GET"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize("position, proof_bytes", [(len(CONTENT), 7), (8, 8), (19, 19)])
def test_resume_with_the_bytes_before_continues(web, logfile, position, proof_bytes):
    _, port = web()
    client = Client(port)
    before = CONTENT[position - proof_bytes:position]
    response = client.get(f"/stream?start={position}&before={b64url(before)}")
    assert response.status_code == 200
    assert header(response, "Tailsrv-Start") == str(position)
    assert not [k for k, _ in response.headers if k == b"tailsrv-replaced"]
    assert client.body(len(CONTENT) - position) == CONTENT[position:]
    append(logfile, b"five\n")
    assert client.body(5) == b"five\n"


@pytest.mark.parametrize("follow_name", [False, True], ids=["restarted", "follow-name"])
def test_resume_into_a_replaced_file_gets_the_new_file_from_0(web, logfile, follow_name):
    """The client had the whole old file; the file is replaced by a new, longer
    one (the server restarted on it, or following the name and done with the
    old file): bytes from N on are the new file's, so it gets that from 0."""
    server, port = web(*(["--follow-name", "--rotation-grace", "0.2"] if follow_name else []))
    client = Client(port)
    assert client.get("/stream?start=0").status_code == 200
    assert client.body(len(CONTENT)) == CONTENT
    logfile.rename(logfile.with_name("app.log.1"))
    new = b"".join(b"new line %d\n" % i for i in range(10))
    logfile.write_bytes(new)
    if follow_name:
        server.wait_log(f"sent all {len(CONTENT)} bytes of the old one")  # retired
        assert client.ended()  # done with the old file: the body ends in order
    else:
        server.restart()
    again = Client(port)
    response = again.get(f"/stream?start={len(CONTENT)}&before={b64url(CONTENT)}")
    assert response.status_code == 200
    assert header(response, "Tailsrv-Replaced") == "1"
    assert header(response, "Tailsrv-Start") == "0"
    assert header(response, "Tailsrv-Size") == str(len(new))
    assert again.body(len(new)) == new
    server.wait_log("resume refused (file replaced or truncated), starting at byte 0")


def test_http10_client_gets_the_raw_bytes_until_close(web, logfile):
    _, port = web()
    sock = connect(port, b"GET /stream?start=0 HTTP/1.0\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200 ") and b"chunked" not in head.lower()
    assert read_exactly(sock, len(CONTENT)) == CONTENT
    append(logfile, b"five\n")
    assert read_exactly(sock, 5) == b"five\n"


def test_large_file_exactly_across_chunks(web, logfile):
    data = os.urandom(9 * 1024 * 1024 + 7)  # more than two of the server's 4 MiB sends
    logfile.write_bytes(data)
    _, port = web()
    client = Client(port)
    assert client.get("/stream?start=0").status_code == 200
    assert client.body(len(data)) == data


def test_tcp_and_http_clients_get_the_same_append(web, logfile):
    server, port = web()
    tcp = connect(server.port, b"19\n")
    client = Client(port)
    client.get("/stream?start=19")
    wait_for(lambda: server.log.count("starting at byte") >= 2)
    append(logfile, b"both\n")
    assert client.body(5) == b"both\n"
    assert read_exactly(tcp, 5) == b"both\n"


class HttpServerThread(ServerThread):
    """An embedded TailServer with an HttpFront, to look at its state."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.http_listener = tcp_listener(0, "127.0.0.1")
        self.http_port = self.http_listener.getsockname()[1]

    def made(self, server) -> None:
        HttpFront(self.http_listener, server)


def test_a_streaming_http_client_is_a_framed_client_without_a_greenlet(logfile):
    """Once its head is sent, an HTTP client is a `ChunkedClient` in the same
    fanout as the TCP clients (parked in the framed set), counted in
    ``connections``, with no greenlet left in the pool; the server stopping
    ends its body in order."""
    logfile.write_bytes(CONTENT)
    thread = HttpServerThread(logfile)
    thread.start()
    assert thread.started.wait(IO_TIMEOUT)
    server = thread.server
    tcp = connect(thread.port, b"0\n")
    assert read_exactly(tcp, len(CONTENT)) == CONTENT
    client = Client(thread.http_port)
    assert client.get("/stream?start=0").status_code == 200
    assert client.body(len(CONTENT)) == CONTENT
    wait_for(lambda: len(server.fanout.parked_framed) == 1 and len(server.pool) == 0)
    page = Client(thread.http_port)
    assert page.get("/").status_code == 200
    page.close()  # a connection that did not stream is counted out when it closes
    wait_for(lambda: server.connections == 2)
    assert [type(c).__name__ for c in server.fanout.parked_framed] == ["ChunkedClient"]
    assert len(server.fanout.parked) == 1
    thread.stop()
    assert client.ended()
    assert read_until_closed(tcp) == b""
    assert server.connections == 0


def test_truncated_below_the_client_ends_the_body_in_order(web, logfile):
    server, port = web()
    client = Client(port)
    client.get("/stream?start=0")
    assert client.body(len(CONTENT)) == CONTENT
    with open(logfile, "r+b") as f:
        f.truncate(3)
    assert client.ended()
    server.wait_log("disconnected: file truncated to 3 bytes")


def test_server_stopping_ends_the_body_in_order(web):
    server, port = web()
    client = Client(port)
    client.get("/stream?start=0")
    assert client.body(len(CONTENT)) == CONTENT
    assert server.terminate(signal.SIGTERM) == 0
    assert client.ended()


def test_basic_auth(web, tmp_path):
    secrets = tmp_path / "users"
    secrets.write_text("alice:s3cret pass\n")
    _, port = web("--http-auth", str(secrets))
    for target in ("/", "/stream"):
        denied = Client(port).get(target)
        assert denied.status_code == 401
        assert header(denied, "WWW-Authenticate").startswith('Basic realm="tailsrv"')
    for wrong in (b"alice:wrong", b"bob:s3cret pass", b"alice:s3cret pas", b"garbage"):
        token = base64.b64encode(wrong).decode()
        assert Client(port).get("/", [("Authorization", f"Basic {token}")]).status_code == 401
    token = base64.b64encode(b"alice:s3cret pass").decode()
    client = Client(port)
    response = client.get("/stream?start=0", [("Authorization", f"Basic {token}")])
    assert response.status_code == 200
    assert client.body(len(CONTENT)) == CONTENT


@pytest.mark.parametrize("content, message", [
    (None, "No such file"), ("no colon\n", "expected one line user:password"),
])
def test_bad_auth_file_is_a_usage_error(spawn, logfile, tmp_path, content, message):
    secrets = tmp_path / "users"
    if content is not None:
        secrets.write_text(content)
    proc = spawn(["tailsrv", "-p", str(free_port()), "--http", f"127.0.0.1:{free_port()}",
                  "--http-auth", str(secrets), str(logfile)])
    _, err = proc.communicate(timeout=IO_TIMEOUT)
    assert proc.returncode == 2
    assert message in err.decode() and "Traceback" not in err.decode()


def test_auth_without_http_is_a_usage_error(spawn, logfile, tmp_path):
    proc = spawn(["tailsrv", "-p", "4321", "--http-auth", str(tmp_path), str(logfile)])
    _, err = proc.communicate(timeout=IO_TIMEOUT)
    assert proc.returncode == 2 and "--http-auth needs --http" in err.decode()


def test_max_clients_counts_tcp_and_http_together(web):
    server, port = web("--max-clients", "2")
    tcp = connect(server.port, b"0\n")
    assert read_exactly(tcp, len(CONTENT)) == CONTENT
    client = Client(port)
    assert client.get("/stream?start=0").status_code == 200
    refused = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    assert refused.recv(1) == b""
    server.wait_log("refused: already serving 2 clients")


def test_request_head_size_limit(web):
    _, port = web()
    client = Client(port)
    response = client.get("/stream", [("X-Big", "x" * 20000)])
    assert response.status_code == 431


def test_request_head_timeout(web):
    server, port = web("--header-timeout", "0.5")
    sock = connect(port, b"GET /stream HTTP/1.1\r\n")  # never finished
    began = time.monotonic()
    assert sock.recv(1) == b""
    assert time.monotonic() - began < IO_TIMEOUT
    server.wait_log("no complete request within 0.5 s")


def test_garbage_request_gets_400(web):
    _, port = web()
    sock = connect(port, b"HELLO\r\n\r\n")
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_a_long_request_target_is_cut_in_the_log():
    """A resuming viewer's target carries up to 4096 file bytes in base64: the
    log line shows its start and its length, not the file's bytes."""
    from tailsrv.http.front import LOGGED_TARGET, _shown
    target = b"/stream?start=9000&before=" + b"QUFB" * 1365
    shown = _shown(target)
    assert shown.startswith("/stream?start=9000&before=QUFB")
    assert shown.endswith(f"... ({len(target)} characters)")
    assert len(shown) < LOGGED_TARGET + 30
    assert _shown(b"/stream?start=-10l") == "/stream?start=-10l"
