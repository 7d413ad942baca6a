"""--http of a server of several files: ``GET /files`` and ``/stream?file=NAME``,
over real sockets with a real tailsrv process."""

from __future__ import annotations

import json
import os

import pytest
from conftest import append, free_port, wait_for
from test_http import Client, header


@pytest.fixture
def mixed(logdir):
    """``logdir`` with a name that needs encoding, a FIFO and a hidden file."""
    (logdir / "a b%.log").write_bytes(b"spaced\n")
    os.mkfifo(logdir / "pipe")
    (logdir / ".hidden").write_bytes(b"secret\n")
    return logdir


def serve(start_server, path, *args):
    port = free_port()
    return start_server(path, "--http", f"127.0.0.1:{port}", *args), port


def files(port):
    client = Client(port)
    response = client.get("/files")
    assert response.status_code == 200
    assert header(response, "content-type") == "application/json"
    listed = json.loads(client.whole_body())
    client.close()
    return listed


def test_files_lists_the_set_sorted_with_size_and_time(start_server, mixed):
    _, port = serve(start_server, mixed)
    listed = files(port)
    assert [entry["name"] for entry in listed] == ["a b%.log", "a.log", "b.log"]
    assert [entry["size"] for entry in listed] == [7, 8, 4]
    mtime = os.stat(mixed / "a.log").st_mtime
    assert abs(listed[1]["modified"] - mtime) < 1e-3
    (mixed / "c.log").write_bytes(b"new\n")
    wait_for(lambda: "c.log" in [entry["name"] for entry in files(port)])


def test_stream_of_a_named_file_then_growth(start_server, mixed):
    _, port = serve(start_server, mixed)
    client = Client(port)
    response = client.get("/stream?file=a.log&start=-1l")
    assert response.status_code == 200
    assert header(response, "tailsrv-start") == "4"
    assert header(response, "tailsrv-name") == "a.log"
    assert client.body(4) == b"two\n"
    append(mixed / "a.log", b"three\n")
    append(mixed / "b.log", b"not this\n")
    assert client.body(6) == b"three\n"
    spaced = Client(port)
    assert spaced.get("/stream?file=a%20b%25.log&start=0").status_code == 200
    assert spaced.body(7) == b"spaced\n"


@pytest.mark.parametrize("target", [
    "/stream?file=nope.log", "/stream?file=..", "/stream?file=../logs/a.log",
    "/stream?file=%2Fetc%2Fpasswd", "/stream?file=", "/stream?file=a.log%00",
    "/stream?file=pipe", "/stream?file=.hidden", "/stream",
])
def test_anything_but_a_served_name_is_404(start_server, mixed, target):
    server, port = serve(start_server, mixed)
    client = Client(port)
    response = client.get(target)
    assert response.status_code == 404
    body = client.whole_body()
    assert body.count(b"\n") == 1 and body.startswith(b"not found")
    assert b"secret" not in body
    server.wait_log("404")


def test_one_file_needs_no_name_and_lists_itself(start_server, logfile):
    _, port = serve(start_server, logfile)
    assert [(e["name"], e["size"]) for e in files(port)] == [("app.log", 12)]
    for target in ("/stream?start=0", "/stream?file=app.log&start=0"):
        client = Client(port)
        assert client.get(target).status_code == 200
        assert client.body(12) == b"hello\nworld\n"
        client.close()
    client = Client(port)
    assert client.get("/stream?file=other.log").status_code == 404
